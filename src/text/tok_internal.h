/*
 * tok_internal.h - hooks into tokenizer.c for tests and benchmarks only.
 */
#ifndef DSV4_TOK_INTERNAL_H
#define DSV4_TOK_INTERNAL_H

#include "dsv4_tokenizer.h"

/* Words up to this many bytes use the array-scan BPE, longer ones the heap
 * (measured: the scan's quadratic cost overtakes the heap's bookkeeping at
 * about 16-32 bytes). */
#define TOK_SMALL_WORD 24

/* BPE of one pre-token with a chosen algorithm (0 = array scan, which
 * needs len <= TOK_SMALL_WORD; 1 = heap), so tests can compare the two. */
int tok_debug_bpe(const dsv4_tokenizer *t, const char *s, size_t len, int use_heap,
                  int32_t **ids, size_t *n_ids);

#endif
