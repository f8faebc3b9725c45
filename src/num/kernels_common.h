/*
 * kernels_common.h - helpers shared by the kernel sets (kernels_*.c).
 */
#ifndef DSV4_KERNELS_COMMON_H
#define DSV4_KERNELS_COMMON_H
#include "num/linear.h"

/* Exact dequantisation of W[r][k0 .. k0+kc) to floats (portable). */
void kc_deq_row_f32(const dsv4_weight *w, int r, int k0, int kc, float *out);

#endif
