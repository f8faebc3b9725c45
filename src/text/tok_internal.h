/*
 * tok_internal.h - hooks into tokenizer.c for tests and benchmarks only.
 */
#ifndef DSV4_TOK_INTERNAL_H
#define DSV4_TOK_INTERNAL_H

#include "dsv4_tokenizer.h"

/* BPE of one pre-token with a chosen algorithm (0 = array scan, which
 * needs len <= 64; 1 = heap), so tests can compare the two. */
int tok_debug_bpe(const dsv4_tokenizer *t, const char *s, size_t len, int use_heap,
                  int32_t **ids, size_t *n_ids);

#endif
