/*
 * kernels_c.c - the portable kernel set (plain C11, no intrinsics): the
 * fallback for CPUs without AVX2 and the model for the SIMD sets.  Also
 * holds the exact row dequantisers that every set uses for its tails.
 */
#include "num/kernels.h"
#include "num/kernels_common.h"
#include "num/numfmt.h"
#include <stdlib.h>
#include <string.h>

void kc_deq_row_f32(const dsv4_weight *w, int r, int k0, int kc, float *out) {
    int K = w->cols;
    switch (w->type) {
    case W_F32: {
        const float *p = (const float *)w->data + (size_t)r * K + k0;
        for (int c = 0; c < kc; c++) out[c] = p[c];
        break;
    }
    case W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + (size_t)r * K + k0;
        for (int c = 0; c < kc; c++) out[c] = bf16_to_f32(p[c]);
        break;
    }
    case W_FP8: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * K + k0;
        const uint8_t *s = w->scale + (size_t)(r / 128) * w->scale_cols;
        for (int c = 0; c < kc; c++) out[c] = e4m3_table[p[c]] * e8m0_table[s[(k0 + c) / 128]];
        break;
    }
    case W_MXFP4: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2) + k0 / 2;
        const uint8_t *s = w->scale + (size_t)r * w->scale_cols;
        for (int c = 0; c < kc; c += 2) {
            float sc = e8m0_table[s[(k0 + c) / 32]];
            out[c] = e2m1_table[p[c / 2] & 15] * sc;
            out[c + 1] = e2m1_table[p[c / 2] >> 4] * sc;
        }
        break;
    }
    default:
        break;   /* never reached: kern_supports() filters */
    }
}

static void c_deq_f32(const dsv4_weight *w, int r0, int n, int k0, int kc, float *out) {
    for (int i = 0; i < n; i++) kc_deq_row_f32(w, r0 + i, k0, kc, out + (size_t)i * kc);
}

static void c_deq_bf16(const dsv4_weight *w, int r0, int n, int k0, int kc, uint16_t *out) {
    float tmp[256];
    for (int i = 0; i < n; i++)
        for (int c = 0; c < kc; c += 256) {
            int m = kc - c < 256 ? kc - c : 256;
            kc_deq_row_f32(w, r0 + i, k0 + c, m, tmp);
            for (int j = 0; j < m; j++) out[(size_t)i * kc + c + j] = f32_to_bf16(tmp[j]);
        }
}

static float dot8(const float *a, const float *b, int n) {
    float acc[8] = {0};
    int c = 0;
    for (; c + 8 <= n; c += 8)
        for (int u = 0; u < 8; u++) acc[u] += a[c + u] * b[c + u];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; c < n; c++) s += a[c] * b[c];
    return s;
}

static void c_gemv(const kern_gemv_args *a, int r0, int r1) {
    int K = a->w->cols;
    float *row = malloc((size_t)K * sizeof(float));
    if (!row) return;
    for (int r = r0; r < r1; r++) {
        kc_deq_row_f32(a->w, r, 0, K, row);
        for (int t = 0; t < a->T; t++)
            a->y[(size_t)t * a->ldy + r] = dot8(row, a->x + (size_t)t * K, K);
    }
    free(row);
}

static void c_tile_f32(const float *w, int kc, const float *const *x, float *const *c,
                       int nrow, int ntok, int accum) {
    for (int t = 0; t < ntok; t++)
        for (int i = 0; i < nrow; i++) {
            float s = dot8(w + (size_t)i * kc, x[t], kc);
            c[t][i] = accum ? c[t][i] + s : s;
        }
}

static void c_tile_bf16(const uint16_t *w, int kc, const uint16_t *const *x, float *const *c,
                        int nrow, int ntok, int accum) {
    for (int t = 0; t < ntok; t++)
        for (int i = 0; i < nrow; i++) {
            const uint16_t *wr = w + (size_t)i * kc;
            float acc[8] = {0};
            for (int k = 0; k < kc; k += 8)
                for (int u = 0; u < 8; u++) acc[u] += bf16_to_f32(wr[k + u]) * bf16_to_f32(x[t][k + u]);
            float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
            c[t][i] = accum ? c[t][i] + s : s;
        }
}

const kern_set kern_c = {
    .name = "c",
    .gemv = c_gemv,
    .deq_f32 = c_deq_f32,
    .deq_bf16 = c_deq_bf16,
    .tile_f32 = c_tile_f32,
    .tile_bf16 = c_tile_bf16,
    .rm = 4, .tm = 4,
};

void kern_phase_permute(uint16_t *v, int kc) {
    uint16_t tmp[KERN_PHASE_MAX];
    const int n = kc / 32;
    memcpy(tmp, v, (size_t)n * 32 * sizeof(uint16_t));
    for (int p = 0; p < 4; p++) {
        uint16_t *dst = v + (size_t)kern_phase_start(n, p) * 32;
        for (int j = p; j < n; j += 4, dst += 32) memcpy(dst, tmp + (size_t)j * 32, 32 * sizeof(uint16_t));
    }
}
