/*
 * bench_fill.h - put a sequence at a long context position in seconds, for
 * `dsv4 bench --fill random`: every cache and compressor state a real
 * prefill would leave is filled with random values of the right shapes.
 * The logits that follow are meaningless; the work per decoded token (KV
 * rings, compressed caches, indexer keys read) is that of a real context
 * of that length.
 */
#ifndef DSV4_BENCH_FILL_H
#define DSV4_BENCH_FILL_H
#include <stddef.h>
#include <stdint.h>
#include "dsv4.h"

/* Reset s and fill it as if `pos` tokens had been consumed.  Returns 0, or
 * -1 (pos beyond capacity) with a reason in err. */
int bench_fill_random(dsv4_seq *s, int pos, uint64_t seed, char *err, size_t errlen);

/* Bytes of cache state that one decode step reads at context ctx, from the
 * model's configuration: the window ring, the compressed entries attended
 * (all of them in HCA layers, the indexer's top-k in CSA layers) and the
 * indexer keys scored.  F32 cache entries. */
double bench_kv_bytes_read(const dsv4_model *m, int ctx);
#endif
