/*
 * vecops.h - the vector primitives of the attention inner loops (dot
 * product, y += a*x, y *= a), with AVX-512, AVX2 and portable paths chosen
 * once from cpu_isa().  FP32 throughout; results may differ from a
 * sequential loop in the last bits (summation order).
 */
#ifndef DSV4_VECOPS_H
#define DSV4_VECOPS_H

#include <stddef.h>
#include <stdint.h>

float vec_dot(const float *a, const float *b, int n);
void vec_axpy(float *y, float a, const float *x, int n);   /* y += a x */
void vec_scale(float *y, float a, int n);                  /* y *= a */
/* Four of the above sharing x (four attention heads against one key or
 * value vector): each result is bit-identical to the single-vector call,
 * x is read once. */
void vec_dot4(const float *const a[4], const float *b, int n, float out[4]);
void vec_axpy4(float *const y[4], const float a[4], const float *x, int n);
/* The attention's blocks: out[h*2 + k] = vec_dot(a[h], b[k], n), each
 * bit-identical to the single call; and for j = 0 .. nx-1 in order,
 * vec_axpy4(y, {a[j], a[lda + j], a[2 lda + j], a[3 lda + j]}, x[j], n),
 * bit-identical to those calls.  Fewer loads and stores per multiply-add
 * than the calls they stand for (vecops.c). */
void vec_dot4x2(const float *const a[4], const float *const b[2], int n, float out[8]);
void vec_axpy4_xs(float *const y[4], const float *a, int lda, const float *const *x, int nx, int n);
/* y[j] += sum over h in order of (x[h*ld + j] > 0 ? x[h*ld + j] * a[h] : 0),
 * each product rounded, then added (as the scalar loop does): the
 * indexer's ReLU-weighted head sum. */
void vec_relu_weighted_sum(float *y, const float *x, int ld, int nh, const float *a, int n);

/* SwiGLU over one row: g[i] = w * (silu(g') * u') with g' = min(g, lim),
 * u' = clamp(u, -lim, lim) (no clamping when lim <= 0), silu(x) = x / (1 +
 * exp(-x)).  own_exp (FAST mode): the AVX-512 path evaluates exp with its
 * own polynomial (within 2 ulp of expf; the same function for every row
 * length and position, so results do not depend on the batch); otherwise,
 * and on the other paths, libm's expf as the reference computes it. */
void vec_swiglu(float *g, const float *u, int n, float lim, float w, int own_exp);
/* mHC's post-mix of one token, in place: for each column d and stream k,
 * h[k][d] = post[k] * f[d] + (sum over i in order of comb[i][k] * old
 * h[i][d]), every product and sum rounded to FP32 as written (no fused
 * multiply-add), so every path gives the scalar loop's bits.  h: hc rows
 * of D (hc <= 16). */
void vec_hc_post(float *h, const float *f, const float *post, const float *comb, int hc, int D);
/* out[i] = f32_to_bf16(x[i]) (numfmt.h: round to nearest even, NaN kept
 * quiet), bit for bit, n at a time. */
void vec_f32_to_bf16(const float *x, uint16_t *out, size_t n);

#endif
