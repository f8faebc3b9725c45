/*
 * linear.h - the one interface through which the model multiplies by a
 * weight matrix.  Every weight stays in its stored format inside the mmap;
 * kernels read it directly.
 *
 *   y[t][r] = sum_c W[r][c] * x[t][c]        t < T, r < rows, c < cols
 *
 * Numerics depend on the mode (include/dsv4.h):
 *   FP32   weights dequantised exactly, FP32 activations, FP32 accumulate.
 *   EXACT  the reference's recipe: FP8/FP4 weights see per-token FP8
 *          (E4M3, pow2 scale, block 128) activations, exact per-K-block
 *          partial products rounded once to FP32, FP32 accumulation in K
 *          order, BF16 output; BF16/F32 weights: exact dot rounded once
 *          (to BF16 when out_bf16).
 *   FAST   whatever is fastest within the accuracy contract of issue 4.
 */
#ifndef DSV4_LINEAR_H
#define DSV4_LINEAR_H
#include <stddef.h>
#include <stdio.h>
#include <stdint.h>
#include "dsv4.h"

typedef enum {
    W_F32,     /* float32 [rows][cols] */
    W_BF16,    /* bf16 [rows][cols] */
    W_FP8,     /* e4m3 [rows][cols] + e8m0 scale [ceil(rows/128)][ceil(cols/128)] */
    W_MXFP4,   /* e2m1 packed [rows][cols/2] (low nibble = even col) + e8m0 [rows][cols/32] */
    /* GGUF (llama.cpp) block formats, rows stored back to back, each row
     * ggml_row_size(type, cols) bytes; see num/ggml_quants.h */
    W_F16, W_Q8_0, W_GG_MXFP4, W_Q2_K, W_Q3_K, W_Q4_K, W_Q5_K, W_Q6_K,
    W_IQ2_XXS, W_IQ3_XXS,
    W_NTYPES
} wtype;

typedef struct dsv4_weight {
    wtype type;
    int rows, cols;            /* logical shape [out][in] */
    const void *data;
    const uint8_t *scale;      /* FP8 / MXFP4 only */
    int scale_cols;            /* row stride of the scale tensor */
    const char *name;          /* tensor name, for messages */
} dsv4_weight;

typedef struct dsv4_pool dsv4_pool;   /* thread pool, see num/pool.h */

/* Flags. LIN_OUT_BF16: in EXACT mode round the result once to BF16 (the
 * reference's BF16 linears/einsums: weights_proj, wo_a).  FP8/FP4 weights
 * always produce BF16 in EXACT mode. */
enum {
    LIN_OUT_BF16 = 1,
    /* The reference dequantises this weight to BF16 at load (wo_a): in EXACT
     * mode treat it as a dense BF16 matrix (no activation quantisation). */
    LIN_DEQUANT = 2,
    /* The F32 "weight" is itself activations (the indexer's cached keys):
     * FAST mode may round it to BF16 and use the BF16 kernels, as it does
     * with activations; F32 weights are otherwise kept in FP32. */
    LIN_ROUND_F32 = 4
};

/* y: T x rows floats.  x: T x cols floats (not modified). */
void linear(const dsv4_weight *w, const float *x, int T, float *y,
            dsv4_mode mode, int flags, dsv4_pool *pool);

/* Several independent products y_i = W_i x_i, each with the numerics
 * linear() gives it; where the kernels allow (int8 products in FAST mode,
 * few-token products on the fused path) they run as one parallel job:
 * one wake-up and barrier, overlapping memory streams. */
typedef struct {
    const dsv4_weight *w;
    const float *x;
    int T;
    float *y;
    int flags;         /* LIN_*: EXACT mode only */
} linear_item;
void linear_multi(const linear_item *items, int n, dsv4_mode mode, dsv4_pool *pool);

/* The straightforward reference implementations (num/linear_ref.c): the
 * FP32 and EXACT definitions above, written for clarity.  Fast kernels are
 * tested against them. */
void linear_ref(const dsv4_weight *w, const float *x, int T, float *y,
                dsv4_mode mode, int flags, dsv4_pool *pool);

/* Dequantise row r of W into out[cols] (exact values). */
void weight_row_f32(const dsv4_weight *w, int r, float *out);

/* DSV4_PROFILE=1: per tensor name (layer/expert numbers folded) the calls,
 * wall time, weight bytes and GB/s of every product since the last reset. */
void linear_profile_reset(void);
void linear_profile_report(FILE *f, const char *title);

/* Bytes of W that a product reads (data + scales). */
size_t weight_bytes(const dsv4_weight *w);

#endif
