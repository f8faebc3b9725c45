/*
 * kernels_mxq8.c - FAST-mode MXFP4 products with int8 activations.
 *
 * Why: converting E2M1 nibbles to BF16 costs a table permute per 32
 * weights and a vdpbf16ps does 32 multiply-adds; the MXFP4 GEMV was
 * compute-bound at 11-14 GB/s per core, well below one core's memory
 * bandwidth.  E2M1 values times two are small integers (0, ±1, ±2, ±3,
 * ±4, ±6, ±8, ±12), so a nibble becomes an int8 through one in-register
 * byte shuffle, and vpdpbusd does 64 multiply-adds of int8 at a time
 * (microbenchmark on one core, weights in cache: 50 GB/s of weights).
 *
 * Arithmetic, per 32-column block b of the activations x (kern_q8x):
 *   d_b   = max|x| / 127,  q = round(x / d_b)  (int8, symmetric)
 * and per weight block (row r, block b) with E8M0 exponent e:
 *   y[r] += 2^(e-127) * (d_b / 2) * sum_k (2 * e2m1[k]) * q[k]
 * The integer sum is exact.  vpdpbusd multiplies unsigned by signed bytes,
 * so the shuffle yields u = 2*e2m1 + 12 in 0..24 and the sum of 12*q over
 * the same bytes, precomputed per token, is subtracted (it is the initial
 * value of the accumulator).
 *
 * Lane layout: a 128-column chunk of a row is 64 packed bytes; byte j holds
 * columns 2j (low nibble) and 2j+1 (high nibble).  The int32 lane L of a
 * 512-bit register covers bytes 4L..4L+3, i.e. columns 8L..8L+7, all in
 * block L/4.  The activations are stored per chunk in that order: 64 bytes
 * of the even columns, 64 of the odd, then per lane the correction and the
 * scale.  Each (row, token) result is accumulated per lane over the chunks
 * in order and reduced once: it does not depend on how many tokens or rows
 * a call handles, so prefill and decode agree bit for bit.
 */
#include "num/cpu.h"
#include "num/kernels.h"
#include "num/numfmt.h"
#include <math.h>
#include <string.h>

/* E2M1 code -> 2*value + 12 (the unsigned operand of vpdpbusd). */
static const uint8_t mxq8_lut[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

size_t kern_q8x_bytes(int K) {
    /* q (K bytes) + corr (K/8 int32) + scale (K/8 float), 64-byte aligned parts */
    return (size_t)K + (size_t)K / 8 * 4 * 2;
}

void kern_q8x_view(void *buf, int K, kern_q8x *v) {
    uint8_t *b = buf;
    v->q = (const int8_t *)b;
    v->corr = (const int32_t *)(b + K);
    v->scale = (const float *)(b + K + (size_t)K / 8 * 4);
}

void kern_q8x_quantize_ref(const float *x, int K, void *buf) {
    uint8_t *b = buf;
    int8_t *q = (int8_t *)b;
    int32_t *corr = (int32_t *)(b + K);
    float *scale = (float *)(b + K + (size_t)K / 8 * 4);
    for (int c = 0; c < K / 128; c++) {
        const float *xc = x + (size_t)c * 128;
        int8_t qv[128];
        float d[4];
        for (int blk = 0; blk < 4; blk++) {
            float amax = 0.0f;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xc[blk * 32 + i]));
            d[blk] = amax / 127.0f;
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            for (int i = 0; i < 32; i++) {
                float v = nearbyintf(xc[blk * 32 + i] * inv);
                qv[blk * 32 + i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
            }
        }
        int8_t *ql = q + (size_t)c * 128, *qh = ql + 64;
        for (int j = 0; j < 64; j++) { ql[j] = qv[2 * j]; qh[j] = qv[2 * j + 1]; }
        for (int L = 0; L < 16; L++) {
            int s = 0;
            for (int j = 0; j < 4; j++) s += ql[4 * L + j] + qh[4 * L + j];
            corr[c * 16 + L] = -12 * s;
            scale[c * 16 + L] = d[L / 4] * 0.5f;
        }
    }
}

/* Portable model of the kernel's arithmetic (tests): the same integer
 * sums, and the same per-lane FP32 accumulation and reduction order as
 * _mm512_reduce_add_ps (pairs of halves: 8, 4, 2, 1). */
float kern_mxq8_dot_ref(const dsv4_weight *w, int r, const kern_q8x *x) {
    const int K = w->cols;
    const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2);
    const uint8_t *s = w->scale + (size_t)r * w->scale_cols;
    float acc[16] = {0};
    for (int c = 0; c < K / 128; c++)
        for (int L = 0; L < 16; L++) {
            int32_t sum = x->corr[c * 16 + L];
            for (int j = 0; j < 4; j++) {
                uint8_t byte = p[c * 64 + 4 * L + j];
                sum += mxq8_lut[byte & 15] * x->q[c * 128 + 4 * L + j];
                sum += mxq8_lut[byte >> 4] * x->q[c * 128 + 64 + 4 * L + j];
            }
            uint32_t bits = (uint32_t)s[c * 4 + L / 4] << 23;
            float ws;
            memcpy(&ws, &bits, 4);
            acc[L] = fmaf((float)sum, ws * x->scale[c * 16 + L], acc[L]);
        }
    for (int h = 8; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) acc[i] += acc[i + h];
    return acc[0];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))
#define UNROLL _Pragma("GCC unroll 8")
#define INL static inline __attribute__((always_inline)) TGT

/* NR rows x NT tokens, all columns.  Rows past nrow repeat row 0 (their
 * results are not stored). */
INL void mxq8_nt(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                 float *const *c, const int NT, const int NR) {
    const int K = w->cols, nc = K / 128, rb = K / 2;
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)mxq8_lut));
    const __m512i m4 = _mm512_set1_epi8(0x0F);
    /* scale byte L/4 of a broadcast dword into the low byte of lane L */
    const __m512i sidx = _mm512_set_epi8(
        -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3,
        -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2,
        -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1,
        -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0);
    const uint8_t *p[8], *s[8];
    UNROLL for (int i = 0; i < NR; i++) {
        int r = r0 + (i < nrow ? i : 0);
        p[i] = (const uint8_t *)w->data + (size_t)r * rb;
        s[i] = w->scale + (size_t)r * w->scale_cols;
    }
    /* Prefetch the same chunk of the next group of rows: one far-ahead
     * stream per row keeps a core's memory bandwidth busy (31 GB/s against
     * 13 for prefetching 1 KiB ahead within each row). */
    const size_t ahead = (size_t)NR * rb, ahead_s = (size_t)NR * w->scale_cols;
    __m512 acc[4][8];
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++) acc[t][i] = _mm512_setzero_ps();
    for (int ch = 0; ch < nc; ch++) {
        UNROLL for (int i = 0; i < NR; i++) {
            const uint8_t *pp = p[i] + (size_t)ch * 64;
            _mm_prefetch((const char *)(pp + ahead), _MM_HINT_T0);
            if (!(ch & 15)) _mm_prefetch((const char *)(s[i] + ahead_s + ch * 4), _MM_HINT_T0);
            __m512i wv = _mm512_loadu_si512((const void *)pp);
            __m512i ul = _mm512_shuffle_epi8(lut, _mm512_and_si512(wv, m4));
            __m512i uh = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4));
            int32_t sb;
            memcpy(&sb, s[i] + ch * 4, 4);
            __m512 ws = _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_shuffle_epi8(_mm512_set1_epi32(sb), sidx), 23));
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *q = x[t]->q + (size_t)ch * 128;
                __m512i sum = _mm512_loadu_si512((const void *)(x[t]->corr + ch * 16));
                sum = _mm512_dpbusd_epi32(sum, ul, _mm512_loadu_si512((const void *)q));
                sum = _mm512_dpbusd_epi32(sum, uh, _mm512_loadu_si512((const void *)(q + 64)));
                __m512 sc = _mm512_mul_ps(ws, _mm512_loadu_ps(x[t]->scale + ch * 16));
                acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), sc, acc[t][i]);
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++)
            if (i < nrow) c[t][i] = _mm512_reduce_add_ps(acc[t][i]);
}

/* Same result as kern_q8x_quantize_ref (nearest-even rounding of the same
 * products, same amax), 128 columns per step. */
static TGT void q8x_quantize_avx512(const float *x, int K, void *buf) {
    uint8_t *b = buf;
    int8_t *q = (int8_t *)b;
    int32_t *corr = (int32_t *)(b + K);
    float *scale = (float *)(b + K + (size_t)K / 8 * 4);
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i ones = _mm512_set1_epi8(1);
    for (int c = 0; c < K / 128; c++) {
        const float *xc = x + (size_t)c * 128;
        __m128i ql[4], qh[4];
        float d[4];
        for (int blk = 0; blk < 4; blk++) {
            __m512 v0 = _mm512_loadu_ps(xc + 32 * blk), v1 = _mm512_loadu_ps(xc + 32 * blk + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            d[blk] = amax / 127.0f;
            __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            __m512 e = _mm512_mul_ps(_mm512_permutex2var_ps(v0, ev, v1), inv);
            __m512 o = _mm512_mul_ps(_mm512_permutex2var_ps(v0, od, v1), inv);
            /* |value| <= 127 (at most 127 * (1 + 2^-23) before rounding) */
            ql[blk] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(e));
            qh[blk] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(o));
        }
        __m512i L = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(ql[0]), ql[1], 1), ql[2], 2), ql[3], 3);
        __m512i H = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(qh[0]), qh[1], 1), qh[2], 2), qh[3], 3);
        _mm512_storeu_si512((void *)(q + (size_t)c * 128), L);
        _mm512_storeu_si512((void *)(q + (size_t)c * 128 + 64), H);
        /* lane sums of the signed bytes: u8 ones x s8 values */
        __m512i s = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, L), ones, H);
        _mm512_storeu_si512((void *)(corr + c * 16), _mm512_mullo_epi32(s, _mm512_set1_epi32(-12)));
        __m512 sc = _mm512_mul_ps(_mm512_set_ps(d[3], d[3], d[3], d[3], d[2], d[2], d[2], d[2],
                                                d[1], d[1], d[1], d[1], d[0], d[0], d[0], d[0]),
                                  _mm512_set1_ps(0.5f));
        _mm512_storeu_ps(scale + c * 16, sc);
    }
}

TGT void kern_mxq8_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                      float *const *c, int ntok) {
    /* 8 rows per pass for one or two tokens, else 4: at most 16
     * accumulator chains */
    for (int i = 0; i < nrow;) {
        int n = nrow - i;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        if (ntok <= 2 && n >= 8) {
            if (ntok == 1) mxq8_nt(w, r0 + i, 8, x, ci, 1, 8);
            else mxq8_nt(w, r0 + i, 8, x, ci, 2, 8);
            i += 8;
            continue;
        }
        if (n > 4) n = 4;
        switch (ntok) {
        case 1: mxq8_nt(w, r0 + i, n, x, ci, 1, 4); break;
        case 2: mxq8_nt(w, r0 + i, n, x, ci, 2, 4); break;
        case 3: mxq8_nt(w, r0 + i, n, x, ci, 3, 4); break;
        default: mxq8_nt(w, r0 + i, n, x, ci, 4, 4); break;
        }
        i += n;
    }
}

void kern_q8x_quantize(const float *x, int K, void *buf) {
    if (cpu_get_features()->avx512vnni) q8x_quantize_avx512(x, K, buf);
    else kern_q8x_quantize_ref(x, K, buf);
}
#else
void kern_q8x_quantize(const float *x, int K, void *buf) { kern_q8x_quantize_ref(x, K, buf); }
#endif
