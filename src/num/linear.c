/*
 * linear.c - dispatch of matrix products to the best kernel for the weight
 * format, the numeric mode and the CPU.  Until fast kernels exist every
 * mode runs the reference (num/linear_ref.c); FAST behaves as FP32.
 */
#include "num/linear.h"

void linear(const dsv4_weight *w, const float *x, int T, float *y,
            dsv4_mode mode, int flags, dsv4_pool *pool) {
    linear_ref(w, x, T, y, mode, flags, pool);
}
