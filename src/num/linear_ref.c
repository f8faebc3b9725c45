/*
 * linear_ref.c - reference matrix products for every weight format, in the
 * two well-defined numeric modes (see linear.h):
 *
 *   FP32   dequantise each weight row exactly, dot in FP32.
 *   EXACT  the official kernel.py recipe.  For FP8/FP4 weights the
 *          activation row is quantised per 128-wide block to E4M3 with a
 *          power-of-two scale; each K block's FP8 x FP8 (or FP8 x FP4)
 *          partial product is formed exactly (in double: 8-bit mantissas,
 *          at most 128 terms, fits in 53 bits) and rounded once to FP32; the
 *          FP32 accumulator adds partial * scales in K order; the result is
 *          rounded to BF16.  BF16/F32 weights: exact dot in double, rounded
 *          once to FP32 (or BF16 with LIN_OUT_BF16).
 *
 * Rows are split across the pool's workers.
 */
#include "num/linear.h"
#include "num/ggml_quants.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include "util/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

void weight_row_f32(const dsv4_weight *w, int r, float *out) {
    int K = w->cols;
    switch (w->type) {
    case W_F32:
        memcpy(out, (const uint8_t *)w->data + (size_t)r * K * 4, (size_t)K * 4);
        break;
    case W_BF16: {
        /* memcpy loads: the mmap'd data need not be 2-byte aligned */
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * K * 2;
        for (int c = 0; c < K; c++) {
            uint16_t h;
            memcpy(&h, p + 2 * c, 2);
            out[c] = bf16_to_f32(h);
        }
        break;
    }
    case W_FP8: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * K;
        const uint8_t *s = w->scale + (size_t)(r / 128) * w->scale_cols;
        for (int c = 0; c < K; c++) out[c] = e4m3_to_f32(p[c]) * e8m0_to_f32(s[c / 128]);
        break;
    }
    case W_MXFP4: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2);
        const uint8_t *s = w->scale + (size_t)r * w->scale_cols;
        for (int c = 0; c < K; c += 2) {
            float sc = e8m0_to_f32(s[c / 32]);
            out[c] = e2m1_table[p[c / 2] & 15] * sc;
            out[c + 1] = e2m1_table[p[c / 2] >> 4] * sc;
        }
        break;
    }
    default:
        ggml_dequant_row(w->type, (const uint8_t *)w->data + (size_t)r * ggml_row_size(w->type, K), out, K);
    }
}

size_t weight_bytes(const dsv4_weight *w) {
    size_t n = (size_t)w->rows * w->cols;
    switch (w->type) {
    case W_F32: return n * 4;
    case W_BF16: return n * 2;
    case W_FP8: return n + (size_t)((w->rows + 127) / 128) * w->scale_cols;
    case W_MXFP4: return n / 2 + (size_t)w->rows * w->scale_cols;
    default: return (size_t)w->rows * ggml_row_size(w->type, w->cols);
    }
}

/* ---- FP32 mode and dense EXACT products --------------------------------- */

typedef struct {
    const dsv4_weight *w;
    const float *x;
    int T, flags;
    float *y;
    int exact;                /* EXACT mode */
    /* exact mode: quantised activations and their per-128 scales */
    const float *xq, *xs;
} lin_job;

/* FP32 dot with 8 partial sums (the FP32 definition). */
static float dot_fp32(const float *row, const float *x, int K) {
    float acc[8] = {0};
    int c = 0;
    for (; c + 8 <= K; c += 8)
        for (int u = 0; u < 8; u++) acc[u] += row[c + u] * x[c + u];
    float s = ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
    for (; c < K; c++) s += row[c] * x[c];
    return s;
}

/* Exact dot in double, rounded once to FP32 or (LIN_OUT_BF16) BF16. */
static float dot_exact(const float *row, const float *x, int K, int flags) {
    double s = 0;
    for (int c = 0; c < K; c++) s += (double)row[c] * x[c];
    return (flags & LIN_OUT_BF16) ? bf16_to_f32(f32_to_bf16_from_double(s)) : (float)s;
}

/* Dequantised-row products: the FP32 mode, and EXACT for dense weights. */
static void dense_worker(void *a, int tid, int nth) {
    lin_job *j = a;
    int lo, hi, K = j->w->cols;
    pool_range(j->w->rows, tid, nth, &lo, &hi);
    float *row = xmalloc((size_t)K * sizeof(float));
    for (int r = lo; r < hi; r++) {
        weight_row_f32(j->w, r, row);
        for (int t = 0; t < j->T; t++) {
            const float *x = j->x + (size_t)t * K;
            j->y[(size_t)t * j->w->rows + r] = j->exact ? dot_exact(row, x, K, j->flags) : dot_fp32(row, x, K);
        }
    }
    free(row);
}

/* ---- EXACT mode --------------------------------------------------------- */

/* act_quant(x, 128, round_scale=True) of one row: q values and scales. */
static void act_quant_row(const float *x, int K, float *q, float *s) {
    for (int b = 0; b < K; b += 128) {
        int m = K - b < 128 ? K - b : 128;
        float amax = 1e-4f;
        for (int i = 0; i < m; i++) amax = fmaxf(amax, fabsf(x[b + i]));
        float sc = pow2_scale_ceil(amax, 1.0f / 448.0f);
        s[b / 128] = sc;
        for (int i = 0; i < m; i++) {
            float v = x[b + i] / sc;
            v = fminf(fmaxf(v, -448.0f), 448.0f);
            q[b + i] = e4m3_round(v);
        }
    }
}

static void exact_fp8_worker(void *a, int tid, int nth) {
    lin_job *j = a;
    const dsv4_weight *w = j->w;
    int lo, hi, K = w->cols, nkb = (K + 127) / 128;
    pool_range(w->rows, tid, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const uint8_t *wp = (const uint8_t *)w->data + (size_t)r * K;
        const uint8_t *ws = w->scale + (size_t)(r / 128) * w->scale_cols;
        for (int t = 0; t < j->T; t++) {
            const float *q = j->xq + (size_t)t * K, *qs = j->xs + (size_t)t * nkb;
            float acc = 0.0f;
            for (int kb = 0; kb < nkb; kb++) {
                int c0 = kb * 128, c1 = c0 + 128 < K ? c0 + 128 : K;
                double part = 0;
                for (int c = c0; c < c1; c++) part += (double)q[c] * e4m3_to_f32(wp[c]);
                acc += (float)part * (qs[kb] * e8m0_to_f32(ws[kb]));
            }
            j->y[(size_t)t * w->rows + r] = bf16_round(acc);
        }
    }
}

static void exact_fp4_worker(void *a, int tid, int nth) {
    lin_job *j = a;
    const dsv4_weight *w = j->w;
    int lo, hi, K = w->cols, nkb = (K + 127) / 128;
    pool_range(w->rows, tid, nth, &lo, &hi);
    for (int r = lo; r < hi; r++) {
        const uint8_t *wp = (const uint8_t *)w->data + (size_t)r * (K / 2);
        const uint8_t *ws = w->scale + (size_t)r * w->scale_cols;
        for (int t = 0; t < j->T; t++) {
            const float *q = j->xq + (size_t)t * K, *qs = j->xs + (size_t)t * nkb;
            float acc = 0.0f;
            for (int kb = 0; kb < K / 32; kb++) {
                double part = 0;
                for (int c = kb * 32; c < kb * 32 + 32; c += 2) {
                    uint8_t b = wp[c / 2];
                    part += (double)q[c] * e2m1_table[b & 15] + (double)q[c + 1] * e2m1_table[b >> 4];
                }
                acc += ((float)part * qs[kb / 4]) * e8m0_to_f32(ws[kb]);
            }
            j->y[(size_t)t * w->rows + r] = bf16_round(acc);
        }
    }
}

void linear_ref(const dsv4_weight *w, const float *x, int T, float *y,
                dsv4_mode mode, int flags, dsv4_pool *pool) {
    lin_job j = {.w = w, .x = x, .T = T, .flags = flags, .y = y};
    j.exact = mode == DSV4_MODE_EXACT;
    if (!j.exact) { pool_run(pool, dense_worker, &j); return; }
    if ((w->type == W_FP8 || w->type == W_MXFP4) && !(flags & LIN_DEQUANT)) {
        int K = w->cols, nkb = (K + 127) / 128;
        float *xq = xmalloc((size_t)T * K * sizeof(float));
        float *xs = xmalloc((size_t)T * nkb * sizeof(float));
        for (int t = 0; t < T; t++) act_quant_row(x + (size_t)t * K, K, xq + (size_t)t * K, xs + (size_t)t * nkb);
        j.xq = xq; j.xs = xs;
        pool_run(pool, w->type == W_FP8 ? exact_fp8_worker : exact_fp4_worker, &j);
        free(xq); free(xs);
        return;
    }
    pool_run(pool, dense_worker, &j);
}
