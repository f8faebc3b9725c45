/*
 * vecops.h - the vector primitives of the attention inner loops (dot
 * product, y += a*x, y *= a), with AVX-512, AVX2 and portable paths chosen
 * once from cpu_isa().  FP32 throughout; results may differ from a
 * sequential loop in the last bits (summation order).
 */
#ifndef DSV4_VECOPS_H
#define DSV4_VECOPS_H

float vec_dot(const float *a, const float *b, int n);
void vec_axpy(float *y, float a, const float *x, int n);   /* y += a x */
void vec_scale(float *y, float a, int n);                  /* y *= a */
/* Four of the above sharing x (four attention heads against one key or
 * value vector): each result is bit-identical to the single-vector call,
 * x is read once. */
void vec_dot4(const float *const a[4], const float *b, int n, float out[4]);
void vec_axpy4(float *const y[4], const float a[4], const float *x, int n);
/* y[j] += sum over h in order of (x[h*ld + j] > 0 ? x[h*ld + j] * a[h] : 0),
 * each product rounded, then added (as the scalar loop does): the
 * indexer's ReLU-weighted head sum. */
void vec_relu_weighted_sum(float *y, const float *x, int ld, int nh, const float *a, int n);

#endif
