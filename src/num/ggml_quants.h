/*
 * ggml_quants.h - the GGUF (ggml) block formats that dsv4 reads: F16, Q8_0,
 * MXFP4, Q2_K..Q6_K, IQ2_XXS, IQ3_XXS.  Row sizes, exact dequantisation,
 * quantisation for the GGUF writer (F16, Q8_0, MXFP4), and dot-product
 * kernels chosen at run time for the CPU (AVX-512, AVX2+FMA, portable).
 *
 * Block layouts (bytes, values per block), as ggml defines them:
 *   F16      2 / 1      IEEE half
 *   Q8_0     34 / 32    f16 d, int8 q[32]                  v = d*q
 *   MXFP4    17 / 32    e8m0 e, 16 bytes of E2M1 codes;    byte j: low nibble
 *                       value j, high nibble value j+16;   v = k[c]*2^(e-128)
 *                       with k the doubled E2M1 table {0,1,2,3,4,6,8,12,...}
 *   Q2_K     84 / 256   scales[16] (4-bit scale | 4-bit min), q[64] 2-bit, f16 d, dmin
 *   Q3_K     110 / 256  hmask[32], q[64], packed 6-bit scales[12], f16 d
 *   Q4_K     144 / 256  f16 d, dmin, packed 6-bit scales/mins[12], q[128]
 *   Q5_K     176 / 256  f16 d, dmin, scales[12], qh[32], q[128]
 *   Q6_K     210 / 256  ql[128], qh[64], int8 scales[16], f16 d
 *   IQ2_XXS  66 / 256   f16 d, 8 x (4 grid bytes + 32-bit signs/scale)
 *   IQ3_XXS  98 / 256   f16 d, q[64] grid indices, 8 x 32-bit signs/scale
 *
 * The IQ formats index fixed codebooks (ggml's iq2xxs_grid / iq3xxs_grid);
 * they are part of the file format and are kept here in a compact form
 * (per-coordinate level indices) and expanded once on first use.
 */
#ifndef DSV4_GGML_QUANTS_H
#define DSV4_GGML_QUANTS_H
#include <stddef.h>
#include <stdint.h>
#include "num/linear.h"

/* Values per block (1 for F16/F32/BF16), bytes per block; 0 for types
 * that have no ggml block layout here. */
int ggml_block_values(wtype t);
size_t ggml_block_bytes(wtype t);

/* Bytes of one row of `cols` values of a GGUF type (cols a multiple of the
 * block size), 0 for non-GGUF types or a cols that is not a multiple. */
size_t ggml_row_size(wtype t, int cols);
/* Exact dequantisation of one row. */
void ggml_dequant_row(wtype t, const void *row, float *out, int cols);

/* Quantise one row (cols a multiple of the block) the way ggml's reference
 * quantisers do: F16 (round to nearest even), Q8_0 (d = amax/127 as f16,
 * q = round(x/d)), MXFP4 (e = floor(log2 amax) - 2 + 127, nearest code).
 * Returns bytes written, 0 if the type has no quantiser here. */
size_t ggml_quantize_row(wtype t, const float *x, void *out, int cols);
/* 1 if ggml_quantize_row supports t. */
int ggml_can_quantize(wtype t);

/* IEEE half <-> float (exact / round to nearest even). */
float ggml_f16_to_f32(uint16_t h);
uint16_t ggml_f32_to_f16(float f);

/* ---- dot products ------------------------------------------------------ */

/* y[r] = sum_c W[r][c] * x[c] for r < nrows, float activations.  Row r
 * starts at (const char *)rows + r * row_stride; cols a multiple of the
 * block size.  Accumulates in FP32 (block partials added in order). */
void ggml_vec_dot_rows(wtype t, const void *rows, size_t row_stride, int nrows,
                       const float *x, int cols, float *y);

/* int8 activations: x quantised once per token in blocks of 32 values
 * (scale d, int8 q, and the sums of q over each half-block of 16 so that
 * formats with per-sub-block minimums need no extra pass). */
typedef struct ggml_q8x {
    float d;
    int16_t sum16[2];
    int8_t q[32];
} ggml_q8x;

/* Blocks needed for cols values: cols / 32 (cols a multiple of 32). */
static inline int ggml_q8x_blocks(int cols) { return cols / 32; }
/* Quantise activations: d = amax/127, q = round(x/d). */
void ggml_quantize_x_q8(const float *x, int cols, ggml_q8x *xq);
/* y[r] = dot(W row r, dequant(xq)), int8 x int8 where the format allows,
 * otherwise the weight block dequantised to float. */
void ggml_vec_dot_rows_q8(wtype t, const void *rows, size_t row_stride, int nrows,
                          const ggml_q8x *xq, int cols, float *y);

/* The whole product for GGUF block weights, threaded over row blocks:
 * y[t][r] = sum_c W[r][c] x[t][c] (t < T), like linear() in num/linear.h.
 * int8_act: activations quantised per token with ggml_quantize_x_q8 and
 * int8 dot products (llama.cpp's CPU numerics, ~1e-2 relative); else float
 * activations (FP32 accumulation).  pool may be NULL.  Only for the types
 * ggml_linear_supports() accepts (F16 and the ggml block types). */
struct dsv4_pool;
int ggml_linear_supports(const dsv4_weight *w);
void ggml_linear(const dsv4_weight *w, const float *x, int T, float *y, int int8_act,
                 struct dsv4_pool *pool);

/* Which kernel family the dispatcher picked: "avx512", "avx2", "portable".
 * ggml_force_isa("portable"|"avx2"|"avx512"|NULL) overrides it (tests);
 * returns -1 if the CPU lacks it. */
const char *ggml_isa(void);
int ggml_force_isa(const char *name);

#endif
