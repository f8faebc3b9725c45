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

#endif
