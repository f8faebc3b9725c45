/*
 * kernels_avx2.c - the AVX2 + FMA + F16C kernel set (8-wide).  Same
 * structure and conversions as kernels_avx512.c; for MXFP4 the 8-entry
 * vpermps takes the magnitude (low 3 bits) and the sign bit is or-ed in.
 * No BF16 dot product: FAST mode uses the FP32 tiles here.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "num/kernels.h"
#include "num/kernels_common.h"
#include "num/numfmt.h"
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define UNROLL _Pragma("GCC unroll 8")
#define INL static inline __attribute__((always_inline)) TGT

INL __m256 cvt_bf16x8(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

/* 16 E4M3 bytes -> two vectors worth 2^-8 times the values. */
INL void cvt_e4m3x16(const uint8_t *p, __m256 *w0, __m256 *w1) {
    __m256i h = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)p));
    h = _mm256_and_si256(_mm256_slli_epi16(h, 7), _mm256_set1_epi16((short)0xBF80));
    *w0 = _mm256_cvtph_ps(_mm256_castsi256_si128(h));
    *w1 = _mm256_cvtph_ps(_mm256_extracti128_si256(h, 1));
}

/* 8 MXFP4 bytes (16 values) -> 8 even columns, 8 odd columns, unscaled. */
INL void cvt_e2m1x16(const uint8_t *p, __m256 mag, __m256 *lo, __m256 *hi) {
    __m256i d = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
    const __m256i sgn = _mm256_set1_epi32((int)0x80000000u);
    __m256i dh = _mm256_srli_epi32(d, 4);
    __m256 l = _mm256_permutevar8x32_ps(mag, d);
    __m256 h = _mm256_permutevar8x32_ps(mag, dh);
    *lo = _mm256_or_ps(l, _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(d, 28), sgn)));
    *hi = _mm256_or_ps(h, _mm256_castsi256_ps(_mm256_and_si256(_mm256_slli_epi32(dh, 28), sgn)));
}

INL float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

/* 32 values of row r from column k (k % 32 == 0): w[0..3], exact floats.
 * For MXFP4 the order is [even 0..7, odd 0..7, even 8..15, odd 8..15] of
 * the 32-block, matching the caller's deinterleaved activations. */
INL void load32(const dsv4_weight *w, int r, int k, __m256 *v, int deinterleaved) {
    int K = w->cols;
    switch (w->type) {
    case W_F32: {
        const float *p = (const float *)w->data + (size_t)r * K + k;
        for (int j = 0; j < 4; j++) v[j] = _mm256_loadu_ps(p + 8 * j);
        break;
    }
    case W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + (size_t)r * K + k;
        for (int j = 0; j < 4; j++) v[j] = cvt_bf16x8(p + 8 * j);
        break;
    }
    case W_FP8: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * K + k;
        const uint8_t *srow = w->scale + (size_t)(r >> 7) * w->scale_cols;
        __m256 sv = _mm256_set1_ps(e8m0_table[srow[k >> 7]] * 256.0f);
        cvt_e4m3x16(p, &v[0], &v[1]);
        cvt_e4m3x16(p + 16, &v[2], &v[3]);
        for (int j = 0; j < 4; j++) v[j] = _mm256_mul_ps(v[j], sv);
        break;
    }
    default: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2) + k / 2;
        __m256 s = _mm256_set1_ps(e8m0_table[w->scale[(size_t)r * w->scale_cols + (k >> 5)]]);
        __m256 mag = _mm256_loadu_ps(e2m1_table);
        __m256 e0, o0, e1, o1;
        cvt_e2m1x16(p, mag, &e0, &o0);
        cvt_e2m1x16(p + 8, mag, &e1, &o1);
        e0 = _mm256_mul_ps(e0, s); o0 = _mm256_mul_ps(o0, s);
        e1 = _mm256_mul_ps(e1, s); o1 = _mm256_mul_ps(o1, s);
        if (deinterleaved) {
            /* deinterleaved activations: [even 0..15 | odd 0..15] */
            v[0] = e0; v[1] = e1; v[2] = o0; v[3] = o1;
        } else {
            /* natural column order: interleave even/odd */
            __m256 a = _mm256_unpacklo_ps(e0, o0), b = _mm256_unpackhi_ps(e0, o0);
            v[0] = _mm256_permute2f128_ps(a, b, 0x20);
            v[1] = _mm256_permute2f128_ps(a, b, 0x31);
            a = _mm256_unpacklo_ps(e1, o1); b = _mm256_unpackhi_ps(e1, o1);
            v[2] = _mm256_permute2f128_ps(a, b, 0x20);
            v[3] = _mm256_permute2f128_ps(a, b, 0x31);
        }
        break;
    }
    }
}

INL void row_dot(const kern_gemv_args *a, int r, int t0, const int NT) {
    const int K = a->w->cols;
    const float *xb = a->w->type == W_MXFP4 ? a->xd : a->x;
    __m256 acc[4][2];
    UNROLL for (int t = 0; t < NT; t++) acc[t][0] = acc[t][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k += 32) {
        __m256 v[4];
        load32(a->w, r, k, v, 1);
        UNROLL for (int t = 0; t < NT; t++) {
            const float *xt = xb + (size_t)(t0 + t) * K + k;
            acc[t][0] = _mm256_fmadd_ps(v[0], _mm256_loadu_ps(xt), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(v[1], _mm256_loadu_ps(xt + 8), acc[t][1]);
            acc[t][0] = _mm256_fmadd_ps(v[2], _mm256_loadu_ps(xt + 16), acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(v[3], _mm256_loadu_ps(xt + 24), acc[t][1]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        a->y[(size_t)(t0 + t) * a->ldy + r] = hsum8(_mm256_add_ps(acc[t][0], acc[t][1]));
}

static TGT void v256_gemv(const kern_gemv_args *a, int r0, int r1) {
    for (int r = r0; r < r1; r++)
        for (int t0 = 0; t0 < a->T; t0 += 4) {
            switch (a->T - t0) {
            case 1: row_dot(a, r, t0, 1); break;
            case 2: row_dot(a, r, t0, 2); break;
            case 3: row_dot(a, r, t0, 3); break;
            default: row_dot(a, r, t0, 4); break;
            }
        }
}

static TGT void v256_deq_f32(const dsv4_weight *w, int r0, int n, int k0, int kc, float *out) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < kc; k += 32) {
            __m256 v[4];
            load32(w, r0 + i, k0 + k, v, 0);
            for (int j = 0; j < 4; j++) _mm256_storeu_ps(out + (size_t)i * kc + k + 8 * j, v[j]);
        }
}

#define RM 4
#define TM 3

static TGT void v256_tile_f32(const float *w, int kc, const float *const *x, float *const *c,
                              int nrow, int ntok, int accum) {
    __m256 acc[TM][RM];
    for (int t = 0; t < TM; t++)
        for (int i = 0; i < RM; i++) acc[t][i] = _mm256_setzero_ps();
    const float *w0 = w, *w1 = w + (nrow > 1 ? kc : 0), *w2 = w + (nrow > 2 ? 2 * kc : 0),
                *w3 = w + (nrow > 3 ? 3 * kc : 0);
    const float *x0 = x[0], *x1 = x[ntok > 1 ? 1 : 0], *x2 = x[ntok > 2 ? 2 : 0];
    for (int k = 0; k < kc; k += 8) {
        __m256 a0 = _mm256_loadu_ps(w0 + k), a1 = _mm256_loadu_ps(w1 + k);
        __m256 a2 = _mm256_loadu_ps(w2 + k), a3 = _mm256_loadu_ps(w3 + k);
#define ROW_T(T, XP) { __m256 b = _mm256_loadu_ps(XP + k);                   \
        acc[T][0] = _mm256_fmadd_ps(a0, b, acc[T][0]);                        \
        acc[T][1] = _mm256_fmadd_ps(a1, b, acc[T][1]);                        \
        acc[T][2] = _mm256_fmadd_ps(a2, b, acc[T][2]);                        \
        acc[T][3] = _mm256_fmadd_ps(a3, b, acc[T][3]); }
        ROW_T(0, x0) ROW_T(1, x1) ROW_T(2, x2)
#undef ROW_T
    }
    for (int t = 0; t < ntok; t++)
        for (int i = 0; i < nrow; i++) {
            float s = hsum8(acc[t][i]);
            c[t][i] = accum ? c[t][i] + s : s;
        }
}

const kern_set kern_avx2 = {
    .name = "avx2",
    .gemv = v256_gemv,
    .deq_f32 = v256_deq_f32,
    .deq_bf16 = 0,
    .tile_f32 = v256_tile_f32,
    .tile_bf16 = 0,
    .rm = RM, .tm = TM,
};
#else
#include "num/kernels.h"
const kern_set kern_avx2 = {0};
#endif
