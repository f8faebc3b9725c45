/*
 * numfmt.c - decoding tables and the rounding rules of the reference's
 * quantisation kernels (inference/kernel.py act_quant and fp4 quant).
 */
#include "num/numfmt.h"
#include <math.h>

float e4m3_table[256];
float e8m0_table[256];
const float e2m1_table[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f,
                              -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};

void numfmt_init(void) {
    if (e8m0_table[127] == 1.0f) return;
    for (int b = 0; b < 256; b++) {
        int s = b >> 7, e = (b >> 3) & 15, m = b & 7;
        float v;
        if ((b & 0x7f) == 0x7f) v = NAN;
        else if (e == 0) v = ldexpf((float)m / 8.0f, -6);
        else v = ldexpf(1.0f + (float)m / 8.0f, e - 7);
        e4m3_table[b] = s ? -v : v;
        e8m0_table[b] = b == 255 ? NAN : ldexpf(1.0f, b - 127);
    }
}

/* Round to a grid whose spacing is a power of two: nearbyint uses the
 * current rounding mode (round-to-nearest-even), and an even multiple of the
 * quantum is exactly an even mantissa, so this is RNE in the target format. */
static float round_to_quantum(float x, float quantum) {
    return nearbyintf(x / quantum) * quantum;
}

float e4m3_round(float x) {
    float a = fabsf(x);
    if (a >= 448.0f) return copysignf(448.0f, x);
    if (a < 0x1p-6f) return round_to_quantum(x, 0x1p-9f);
    int e;
    frexpf(a, &e);                      /* a = f * 2^e, f in [0.5, 1) */
    return round_to_quantum(x, ldexpf(1.0f, e - 1 - 3));
}

float e2m1_round(float x) {
    float a = fabsf(x);
    if (a >= 6.0f) return copysignf(6.0f, x);
    if (a < 2.0f) return round_to_quantum(x, 0.5f);
    if (a < 4.0f) return round_to_quantum(x, 1.0f);
    return round_to_quantum(x, 2.0f);
}

float pow2_scale_ceil(float amax, float inv_maxval) {
    float v = amax * inv_maxval;
    uint32_t u;
    memcpy(&u, &v, 4);
    int e = (int)((u >> 23) & 0xff) - 127;
    if (u & 0x7fffff) e += 1;          /* ceil(log2 v) */
    return ldexpf(1.0f, e);
}

void fp8_roundtrip(float *x, int n, int block) {
    for (int b = 0; b < n; b += block) {
        int m = n - b < block ? n - b : block;
        float amax = 1e-4f;
        for (int i = 0; i < m; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        float s = pow2_scale_ceil(amax, 1.0f / 448.0f);
        for (int i = 0; i < m; i++) {
            float q = x[b + i] / s;
            q = fminf(fmaxf(q, -448.0f), 448.0f);
            x[b + i] = e4m3_round(q) * s;
        }
    }
}

void fp4_roundtrip(float *x, int n, int block) {
    for (int b = 0; b < n; b += block) {
        int m = n - b < block ? n - b : block;
        float amax = 6.0f * 0x1p-126f;
        for (int i = 0; i < m; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        float s = pow2_scale_ceil(amax, 1.0f / 6.0f);
        for (int i = 0; i < m; i++) {
            float q = x[b + i] / s;
            q = fminf(fmaxf(q, -6.0f), 6.0f);
            x[b + i] = e2m1_round(q) * s;
        }
    }
}
