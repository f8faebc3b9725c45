/*
 * kernels_avx512.c - the AVX-512 kernel set (F, BW, VL, DQ, BF16).  Every
 * function carries its own target attribute; the file is compiled without
 * -march and only called when cpu_isa() reports AVX-512 (num/cpu.c).
 *
 * Weight conversion in registers:
 *   FP8 E4M3  sign-extend bytes to 16 bits, shift left 7 and mask 0xBF80:
 *             that is the FP16 with the same sign/exponent/mantissa bits,
 *             worth exactly 2^-8 times the E4M3 value (subnormals included);
 *             vcvtph2ps then gives exact floats, and 2^8 is folded into the
 *             block scale.
 *   MXFP4     vpermps with the 16-entry E2M1 table (it uses the low 4 bits
 *             of each index, so a nibble needs no masking).  Activations
 *             are pre-split into even/odd columns per 32-block by the
 *             caller, matching the low/high nibble order.
 *   BF16      zero-extend to 32 bits, shift left 16.
 */
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include "num/kernels.h"
#include "num/kernels_common.h"
#include "num/numfmt.h"
#include <immintrin.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512bf16,avx512vbmi,avx2,fma,f16c")))
#define UNROLL _Pragma("GCC unroll 8")
#define INL static inline __attribute__((always_inline)) TGT

int kern_avx512_no_vbmi;

/* VBMI (vpermt2b, vpmultishiftqb) is not part of the AVX-512 level of
 * num/cpu.c: the paths that need it check at run time. */
static inline int use_vbmi(void) { return cpu_get_features()->avx512vbmi && !kern_avx512_no_vbmi; }

INL __m512 cvt_bf16x16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

/* 32 E4M3 bytes -> two vectors of floats worth 2^-8 times the value. */
INL void cvt_e4m3x32(const uint8_t *p, __m512 *w0, __m512 *w1) {
    __m512i h = _mm512_cvtepi8_epi16(_mm256_loadu_si256((const __m256i *)p));
    h = _mm512_and_si512(_mm512_slli_epi16(h, 7), _mm512_set1_epi16((short)0xBF80));
    *w0 = _mm512_cvtph_ps(_mm512_castsi512_si256(h));
    *w1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(h, 1));
}

/* 16 MXFP4 bytes (32 values) -> even columns, odd columns (unscaled). */
INL void cvt_e2m1x32(const uint8_t *p, __m512 tab, __m512 *lo, __m512 *hi) {
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    *lo = _mm512_permutexvar_ps(d, tab);
    *hi = _mm512_permutexvar_ps(_mm512_srli_epi32(d, 4), tab);
}

INL __m512 e2m1_tab(void) { return _mm512_loadu_ps(e2m1_table); }

/* ---- GEMV: one row, NT tokens (compile-time 1..4) ---------------------- */

/* Four accumulators per token keep four independent FMA chains in flight;
 * 64 columns per step. */
#define GEMV_ROW(NAME, STEP_BODY)                                                       \
INL void NAME(const kern_gemv_args *a, int r, int t0, const int NT) {                   \
    const int K = a->w->cols;                                                           \
    __m512 acc[4][4];                                                                   \
    UNROLL for (int t = 0; t < NT; t++)                                                        \
        for (int j = 0; j < 4; j++) acc[t][j] = _mm512_setzero_ps();                    \
    for (int k = 0; k < K; k += 64) {                                                   \
        __m512 w0, w1, w2, w3;                                                          \
        STEP_BODY                                                                       \
        UNROLL for (int t = 0; t < NT; t++) {                                                  \
            const float *xt = XPTR + (size_t)(t0 + t) * K + k;                          \
            acc[t][0] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xt), acc[t][0]);            \
            acc[t][1] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xt + 16), acc[t][1]);       \
            acc[t][2] = _mm512_fmadd_ps(w2, _mm512_loadu_ps(xt + 32), acc[t][2]);       \
            acc[t][3] = _mm512_fmadd_ps(w3, _mm512_loadu_ps(xt + 48), acc[t][3]);       \
        }                                                                               \
    }                                                                                   \
    UNROLL for (int t = 0; t < NT; t++) {                                                      \
        __m512 s = _mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][1]),                   \
                                 _mm512_add_ps(acc[t][2], acc[t][3]));                  \
        a->y[(size_t)(t0 + t) * a->ldy + r] = _mm512_reduce_add_ps(s);                  \
    }                                                                                   \
}

#define XPTR a->x
GEMV_ROW(row_f32, {
    const float *p = (const float *)a->w->data + (size_t)r * K + k;
    _mm_prefetch((const char *)(p + 512), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + 528), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + 544), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + 560), _MM_HINT_T0);
    w0 = _mm512_loadu_ps(p); w1 = _mm512_loadu_ps(p + 16);
    w2 = _mm512_loadu_ps(p + 32); w3 = _mm512_loadu_ps(p + 48);
})
GEMV_ROW(row_bf16, {
    const uint16_t *p = (const uint16_t *)a->w->data + (size_t)r * K + k;
    _mm_prefetch((const char *)(p + 1024), _MM_HINT_T0);
    _mm_prefetch((const char *)(p + 1056), _MM_HINT_T0);
    w0 = cvt_bf16x16(p); w1 = cvt_bf16x16(p + 16);
    w2 = cvt_bf16x16(p + 32); w3 = cvt_bf16x16(p + 48);
})
GEMV_ROW(row_fp8, {
    const uint8_t *p = (const uint8_t *)a->w->data + (size_t)r * K + k;
    const uint8_t *srow = a->w->scale + (size_t)(r >> 7) * a->w->scale_cols;
    _mm_prefetch((const char *)(p + 2048), _MM_HINT_T0);
    __m512 sv = _mm512_set1_ps(e8m0_table[srow[k >> 7]] * 256.0f);
    cvt_e4m3x32(p, &w0, &w1);
    cvt_e4m3x32(p + 32, &w2, &w3);
    w0 = _mm512_mul_ps(w0, sv); w1 = _mm512_mul_ps(w1, sv);
    w2 = _mm512_mul_ps(w2, sv); w3 = _mm512_mul_ps(w3, sv);
})
#undef XPTR
#define XPTR a->xd
GEMV_ROW(row_mxfp4, {
    const uint8_t *p = (const uint8_t *)a->w->data + (size_t)r * (K / 2) + k / 2;
    const uint8_t *srow = a->w->scale + (size_t)r * a->w->scale_cols;
    _mm_prefetch((const char *)(p + 1024), _MM_HINT_T0);
    __m512 tab = e2m1_tab();
    __m512 s0 = _mm512_set1_ps(e8m0_table[srow[k >> 5]]);
    __m512 s1 = _mm512_set1_ps(e8m0_table[srow[(k >> 5) + 1]]);
    cvt_e2m1x32(p, tab, &w0, &w1);
    cvt_e2m1x32(p + 16, tab, &w2, &w3);
    w0 = _mm512_mul_ps(w0, s0); w1 = _mm512_mul_ps(w1, s0);
    w2 = _mm512_mul_ps(w2, s1); w3 = _mm512_mul_ps(w3, s1);
})
#undef XPTR

#define GEMV_DRIVER(NAME, ROW)                                                  \
static TGT void NAME(const kern_gemv_args *a, int r0, int r1) {                 \
    for (int r = r0; r < r1; r++)                                               \
        for (int t0 = 0; t0 < a->T; t0 += 4) {                                  \
            switch (a->T - t0) {                                                \
            case 1: ROW(a, r, t0, 1); break;                                    \
            case 2: ROW(a, r, t0, 2); break;                                    \
            case 3: ROW(a, r, t0, 3); break;                                    \
            default: ROW(a, r, t0, 4); break;                                   \
            }                                                                   \
        }                                                                       \
}
GEMV_DRIVER(gemv_f32, row_f32)
GEMV_DRIVER(gemv_bf16, row_bf16)
GEMV_DRIVER(gemv_fp8, row_fp8)
GEMV_DRIVER(gemv_mxfp4, row_mxfp4)

static TGT void v512_gemv(const kern_gemv_args *a, int r0, int r1) {
    switch (a->w->type) {
    case W_F32: gemv_f32(a, r0, r1); break;
    case W_BF16: gemv_bf16(a, r0, r1); break;
    case W_FP8: gemv_fp8(a, r0, r1); break;
    case W_MXFP4: gemv_mxfp4(a, r0, r1); break;
    default: break;
    }
}

/* ---- dequantisation into GEMM buffers ----------------------------------- */

/* 64 values of row r starting at column k (k % 64 == 0), exact floats. */
INL void deq64(const dsv4_weight *w, int r, int k, __m512 *v) {
    int K = w->cols;
    switch (w->type) {
    case W_F32: {
        const float *p = (const float *)w->data + (size_t)r * K + k;
        for (int j = 0; j < 4; j++) v[j] = _mm512_loadu_ps(p + 16 * j);
        break;
    }
    case W_BF16: {
        const uint16_t *p = (const uint16_t *)w->data + (size_t)r * K + k;
        for (int j = 0; j < 4; j++) v[j] = cvt_bf16x16(p + 16 * j);
        break;
    }
    case W_FP8: {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * K + k;
        const uint8_t *srow = w->scale + (size_t)(r >> 7) * w->scale_cols;
        __m512 sv = _mm512_set1_ps(e8m0_table[srow[k >> 7]] * 256.0f);
        cvt_e4m3x32(p, &v[0], &v[1]);
        cvt_e4m3x32(p + 32, &v[2], &v[3]);
        for (int j = 0; j < 4; j++) v[j] = _mm512_mul_ps(v[j], sv);
        break;
    }
    default: {   /* W_MXFP4: interleave the even/odd lookups back */
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2) + k / 2;
        const uint8_t *srow = w->scale + (size_t)r * w->scale_cols;
        __m512 tab = e2m1_tab();
        const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        for (int b = 0; b < 2; b++) {
            __m512 lo, hi, s = _mm512_set1_ps(e8m0_table[srow[(k >> 5) + b]]);
            cvt_e2m1x32(p + 16 * b, tab, &lo, &hi);
            lo = _mm512_mul_ps(lo, s); hi = _mm512_mul_ps(hi, s);
            v[2 * b] = _mm512_permutex2var_ps(lo, ilo, hi);
            v[2 * b + 1] = _mm512_permutex2var_ps(lo, ihi, hi);
        }
        break;
    }
    }
}

static TGT void v512_deq_f32(const dsv4_weight *w, int r0, int n, int k0, int kc, float *out) {
    for (int i = 0; i < n; i++)
        for (int k = 0; k < kc; k += 64) {
            __m512 v[4];
            deq64(w, r0 + i, k0 + k, v);
            for (int j = 0; j < 4; j++) _mm512_storeu_ps(out + (size_t)i * kc + k + 16 * j, v[j]);
        }
}

/* Defined with the fused kernels below: exact BF16 by table lookup. */
INL void deq_bf16_row_fast(const dsv4_weight *w, int r, int k0, int kc, uint16_t *out);

static TGT void v512_deq_bf16(const dsv4_weight *w, int r0, int n, int k0, int kc, uint16_t *out) {
    for (int i = 0; i < n; i++) {
        if ((w->type == W_FP8 && use_vbmi()) || w->type == W_MXFP4) {
            deq_bf16_row_fast(w, r0 + i, k0, kc, out + (size_t)i * kc);
            continue;
        }
        for (int k = 0; k < kc; k += 64) {
            __m512 v[4];
            deq64(w, r0 + i, k0 + k, v);
            /* exact for FP8/FP4/BF16 values; F32 weights round to nearest even */
            __m512bh b0 = _mm512_cvtne2ps_pbh(v[1], v[0]);
            __m512bh b1 = _mm512_cvtne2ps_pbh(v[3], v[2]);
            _mm512_storeu_si512((void *)(out + (size_t)i * kc + k), (__m512i)b0);
            _mm512_storeu_si512((void *)(out + (size_t)i * kc + k + 32), (__m512i)b1);
        }
    }
}

/* ---- GEMM register tiles: 4 rows x 6 tokens ------------------------------ */

#define RM 4
#define TM 6

/* One loop per token count NT (1..6): a tail tile of the token range does
 * only the work it needs.  Per (row, token) the arithmetic does not depend
 * on NT. */
INL void tile_f32_nt(const float *w, int kc, const float *const *x, float *const *c,
                     int nrow, int accum, const int NT) {
    __m512 acc[TM][RM];
    UNROLL for (int t = 0; t < NT; t++)
        for (int i = 0; i < RM; i++) acc[t][i] = _mm512_setzero_ps();
    const float *w0 = w, *w1 = w + (nrow > 1 ? kc : 0), *w2 = w + (nrow > 2 ? 2 * kc : 0),
                *w3 = w + (nrow > 3 ? 3 * kc : 0);
    for (int k = 0; k < kc; k += 16) {
        __m512 a0 = _mm512_loadu_ps(w0 + k), a1 = _mm512_loadu_ps(w1 + k);
        __m512 a2 = _mm512_loadu_ps(w2 + k), a3 = _mm512_loadu_ps(w3 + k);
        UNROLL for (int t = 0; t < NT; t++) {
            __m512 b = _mm512_loadu_ps(x[t] + k);
            acc[t][0] = _mm512_fmadd_ps(a0, b, acc[t][0]);
            acc[t][1] = _mm512_fmadd_ps(a1, b, acc[t][1]);
            acc[t][2] = _mm512_fmadd_ps(a2, b, acc[t][2]);
            acc[t][3] = _mm512_fmadd_ps(a3, b, acc[t][3]);
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        for (int i = 0; i < nrow; i++) {
            float s = _mm512_reduce_add_ps(acc[t][i]);
            c[t][i] = accum ? c[t][i] + s : s;
        }
}

/* The horizontal sums of four accumulators, each added in exactly the
 * order of _mm512_reduce_add_ps (lanes i + i+8, then i + i+4, i + i+2,
 * i + i+1), but with the shuffles shared: 8 shuffles and 4 adds for four
 * sums instead of about 7 operations per sum.  Bit-identical to four
 * reductions, so the tiles still match the fused kernels. */
INL __m128 reduce4_ps(__m512 a0, __m512 a1, __m512 a2, __m512 a3) {
    __m512 s01 = _mm512_add_ps(_mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a0, a1, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 s23 = _mm512_add_ps(_mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(1, 0, 1, 0)),
                               _mm512_shuffle_f32x4(a2, a3, _MM_SHUFFLE(3, 2, 3, 2)));
    __m512 u = _mm512_add_ps(_mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(2, 0, 2, 0)),
                             _mm512_shuffle_f32x4(s01, s23, _MM_SHUFFLE(3, 1, 3, 1)));
    __m512 v = _mm512_add_ps(u, _mm512_shuffle_ps(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
    __m512 r = _mm512_add_ps(v, _mm512_shuffle_ps(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(_mm512_permutexvar_ps(_mm512_set_epi32(0, 0, 0, 0, 0, 0, 0, 0,
                                                                         0, 0, 0, 0, 12, 8, 4, 0), r));
}

/* One phase of a BF16 tile: steps [s0, s1) of the phase-major slice
 * (sequential in memory) into acc, from zero. */
INL void tile_bf16_phase(const uint16_t *const w[4], int s0, int s1, const uint16_t *const *x,
                         __m512 acc[TM][RM], const int NT) {
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < RM; i++) acc[t][i] = _mm512_setzero_ps();
    for (int k = 32 * s0; k < 32 * s1; k += 32) {
        __m512bh a0 = (__m512bh)_mm512_loadu_si512((const void *)(w[0] + k));
        __m512bh a1 = (__m512bh)_mm512_loadu_si512((const void *)(w[1] + k));
        __m512bh a2 = (__m512bh)_mm512_loadu_si512((const void *)(w[2] + k));
        __m512bh a3 = (__m512bh)_mm512_loadu_si512((const void *)(w[3] + k));
        UNROLL for (int t = 0; t < NT; t++) {
            __m512bh b = (__m512bh)_mm512_loadu_si512((const void *)(x[t] + k));
            acc[t][0] = _mm512_dpbf16_ps(acc[t][0], a0, b);
            acc[t][1] = _mm512_dpbf16_ps(acc[t][1], a1, b);
            acc[t][2] = _mm512_dpbf16_ps(acc[t][2], a2, b);
            acc[t][3] = _mm512_dpbf16_ps(acc[t][3], a3, b);
        }
    }
}

/* BF16 tiles keep four partial sums per (row, token): 32-column step j of
 * the K slice goes into partial j % 4, and the slice's sum is
 * reduce(((p0 + p1) + p2) + p3).  The fused GEMV below computes the same
 * bits reading a row as one stream (four independent vdpbf16ps chains per
 * row).  Here w and x come in phase-major order (tile_bf16_phased,
 * kern_phase_permute), so the four phases are four sequential runs, one
 * after another, each into fresh accumulators added to the running sum.
 * Measured, 1 thread, bench_linear 4096 x 4096 x 512: 139-146 GFLOP/s;
 * the same in natural order (every fourth line per phase) 114-119, or
 * 128-131 three tokens at a time; the one-sum tile before 63d34e1 155-158. */
INL void tile_bf16_nt(const uint16_t *w, int kc, const uint16_t *const *x, float *const *c,
                      int nrow, int accum, const int NT) {
    const uint16_t *const wr[4] = {w, w + (nrow > 1 ? kc : 0), w + (nrow > 2 ? 2 * kc : 0),
                                   w + (nrow > 3 ? 3 * kc : 0)};
    const int n = kc / 32;
    __m512 S[TM][RM], P[TM][RM];
    tile_bf16_phase(wr, 0, kern_phase_len(n, 0), x, S, NT);
    for (int p = 1; p < 4; p++) {
        const int s0 = kern_phase_start(n, p);
        tile_bf16_phase(wr, s0, s0 + kern_phase_len(n, p), x, P, NT);
        UNROLL for (int t = 0; t < NT; t++)
            UNROLL for (int i = 0; i < RM; i++) S[t][i] = _mm512_add_ps(S[t][i], P[t][i]);
    }
    UNROLL for (int t = 0; t < NT; t++) {
        float s[4];
        _mm_storeu_ps(s, reduce4_ps(S[t][0], S[t][1], S[t][2], S[t][3]));
        for (int i = 0; i < nrow; i++) c[t][i] = accum ? c[t][i] + s[i] : s[i];
    }
}

static TGT void v512_tile_f32(const float *w, int kc, const float *const *x, float *const *c,
                              int nrow, int ntok, int accum) {
    switch (ntok) {
    case 1: tile_f32_nt(w, kc, x, c, nrow, accum, 1); break;
    case 2: tile_f32_nt(w, kc, x, c, nrow, accum, 2); break;
    case 3: tile_f32_nt(w, kc, x, c, nrow, accum, 3); break;
    case 4: tile_f32_nt(w, kc, x, c, nrow, accum, 4); break;
    case 5: tile_f32_nt(w, kc, x, c, nrow, accum, 5); break;
    default: tile_f32_nt(w, kc, x, c, nrow, accum, 6); break;
    }
}

static TGT void v512_tile_bf16(const uint16_t *w, int kc, const uint16_t *const *x,
                               float *const *c, int nrow, int ntok, int accum) {
    switch (ntok) {
    case 1: tile_bf16_nt(w, kc, x, c, nrow, accum, 1); break;
    case 2: tile_bf16_nt(w, kc, x, c, nrow, accum, 2); break;
    case 3: tile_bf16_nt(w, kc, x, c, nrow, accum, 3); break;
    case 4: tile_bf16_nt(w, kc, x, c, nrow, accum, 4); break;
    case 5: tile_bf16_nt(w, kc, x, c, nrow, accum, 5); break;
    default: tile_bf16_nt(w, kc, x, c, nrow, accum, 6); break;
    }
}

/* ---- fused GEMV in tile order ----------------------------------------------
 * Same per (row, token) arithmetic as deq + tile above, reduced per K
 * slice and added in slice order: FP32, one accumulator per pair, 16
 * columns per step; BF16, four partial sums per pair, 32 columns per step
 * (step j into partial j % 4).  Weights are converted from the mmap in
 * registers, once per step for all tokens. */

/* Per-row state of the fused kernels: the row's bytes and scale row. */
typedef struct { const uint8_t *p; const uint8_t *s; } row_ptr;

INL row_ptr row_at(const dsv4_weight *w, int r, const wtype TY) {
    row_ptr rp;
    switch (TY) {
    case W_F32: rp.p = (const uint8_t *)w->data + (size_t)r * w->cols * 4; rp.s = NULL; break;
    case W_BF16: rp.p = (const uint8_t *)w->data + (size_t)r * w->cols * 2; rp.s = NULL; break;
    case W_FP8: rp.p = (const uint8_t *)w->data + (size_t)r * w->cols; rp.s = w->scale + (size_t)(r >> 7) * w->scale_cols; break;
    default: rp.p = (const uint8_t *)w->data + (size_t)r * (w->cols / 2); rp.s = w->scale + (size_t)r * w->scale_cols; break;
    }
    return rp;
}

/* Bytes of a row per column step of 32. */
#define STEP_BYTES(TY) ((TY) == W_F32 ? 128 : (TY) == W_BF16 ? 64 : (TY) == W_FP8 ? 32 : 16)

/* Software prefetch about 1 KiB ahead, once per cache line: the fused
 * kernel reads 4 rows at once, and the hardware prefetchers alone leave
 * bandwidth on the table with 4 streams per thread. */
INL void prefetch_row(row_ptr rp, int k, const wtype TY, size_t ahead) {
    size_t off = (size_t)(k / 32) * STEP_BYTES(TY);
    if (off & 63) return;
    _mm_prefetch((const char *)(rp.p + off + ahead), _MM_HINT_T0);
    if (TY == W_F32) _mm_prefetch((const char *)(rp.p + off + ahead + 64), _MM_HINT_T0);
}

/* 32 values of a row at column k (k % 32 == 0), natural order, exact. */
INL void deq32r(row_ptr rp, int k, __m512 *v0, __m512 *v1, const wtype TY) {
    switch (TY) {
    case W_F32: {
        const float *p = (const float *)rp.p + k;
        *v0 = _mm512_loadu_ps(p); *v1 = _mm512_loadu_ps(p + 16);
        break;
    }
    case W_BF16: {
        const uint16_t *p = (const uint16_t *)rp.p + k;
        *v0 = cvt_bf16x16(p); *v1 = cvt_bf16x16(p + 16);
        break;
    }
    case W_FP8: {
        __m512 sv = _mm512_set1_ps(e8m0_table[rp.s[k >> 7]] * 256.0f);
        cvt_e4m3x32(rp.p + k, v0, v1);
        *v0 = _mm512_mul_ps(*v0, sv); *v1 = _mm512_mul_ps(*v1, sv);
        break;
    }
    default: {
        __m512 s = _mm512_set1_ps(e8m0_table[rp.s[k >> 5]]);
        const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        __m512 lo, hi;
        cvt_e2m1x32(rp.p + k / 2, e2m1_tab(), &lo, &hi);
        lo = _mm512_mul_ps(lo, s); hi = _mm512_mul_ps(hi, s);
        *v0 = _mm512_permutex2var_ps(lo, ilo, hi);
        *v1 = _mm512_permutex2var_ps(lo, ihi, hi);
        break;
    }
    }
}

/* ---- direct BF16 conversion (FAST mode) ------------------------------------
 * FP8 and MXFP4 weights times their power-of-two scale are exact BF16
 * numbers, so their BF16 bit patterns can be looked up in tables that have
 * the scale built in (one set per UE8M0 value, filled at load time).  The
 * bits are exactly those of the FP32 route (convert, multiply by the scale,
 * vcvtne2ps2bf16), at a fraction of its cost, so the GEMM buffers and the
 * fused GEMV keep giving identical products.  A scale so extreme that the
 * result would leave the normal BF16 range (never in real checkpoints)
 * takes the FP32 route.
 *
 *   FP8 E4M3  64 bytes at a time: two vpermt2b (128-entry tables indexed by
 *             the 7 magnitude bits) give the high and the low byte of each
 *             BF16, the sign bit is or-ed into the high byte, and two
 *             in-lane unpacks interleave them into 2 x 32 BF16 in column
 *             order (a vpermq of the input qwords beforehand arranges it:
 *             byte permutes across lanes are slow on Zen, unpacks are not).
 *   MXFP4     16 bytes (32 values) at a time: each byte becomes a dword
 *             whose two words hold its low and its high nibble (the even
 *             and the odd column, so the order stays natural); vpermw looks
 *             them up in the 16-entry table of the block's scale. */

#define FP8_SMIN 10    /* E4M3 subnormal 2^-9 times 2^(s-127) stays normal */
#define FP8_SMAX 246   /* 448 times 2^(s-127) stays finite */
#define MX_SMIN 2
#define MX_SMAX 252

/* fp8_tab[s]: high bytes of magnitudes 0..127, then low bytes 0..127. */
static uint8_t fp8_tab[256][256] __attribute__((aligned(64)));
static uint16_t mx_tab[256][32] __attribute__((aligned(64)));

static uint16_t bf16_bits_exact(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return (uint16_t)(u >> 16);
}

/* E4M3 magnitude code m (0..127) as the FP16 route of cvt_e4m3x32 sees it:
 * exponent 0 = subnormal, code 127 = 480 (no NaN). */
static float e4m3_mag(int m) {
    int e = m >> 3, f = m & 7;
    return e ? ldexpf(1.0f + f / 8.0f, e - 7) : ldexpf((float)f, -9);
}

__attribute__((constructor)) static void fill_bf16_tables(void) {
    for (int s = 0; s < 256; s++) {
        for (int m = 0; m < 128; m++) {
            uint16_t b = s >= FP8_SMIN && s <= FP8_SMAX ? bf16_bits_exact(ldexpf(e4m3_mag(m), s - 127)) : 0;
            fp8_tab[s][m] = (uint8_t)(b >> 8);
            fp8_tab[s][128 + m] = (uint8_t)b;
        }
        for (int c = 0; c < 32; c++)
            mx_tab[s][c] = s >= MX_SMIN && s <= MX_SMAX ? bf16_bits_exact(ldexpf(e2m1_table[c & 15], s - 127)) : 0;
    }
}

/* Tables of one FP8 scale block, in registers. */
typedef struct { __m512i h0, h1, l0, l1; } fp8_tabs;

INL fp8_tabs fp8_tabs_for(unsigned s) {
    const uint8_t *t = fp8_tab[s];
    fp8_tabs r = {_mm512_load_si512((const void *)t), _mm512_load_si512((const void *)(t + 64)),
                  _mm512_load_si512((const void *)(t + 128)), _mm512_load_si512((const void *)(t + 192))};
    return r;
}

/* Byte indices interleaving low bytes (table a) and high bytes (table b)
 * into words: first = columns 0..31, second = 32..63. */
INL __m512i ilv_idx(int base) {
    alignas(64) uint8_t ix[64];
    for (int n = 0; n < 32; n++) { ix[2 * n] = (uint8_t)(base + n); ix[2 * n + 1] = (uint8_t)(64 + base + n); }
    return _mm512_load_si512((const void *)ix);
}

/* 64 E4M3 bytes -> 2 x 32 BF16 (value times the block scale), exact. */
INL void fp8_bf16x64(const uint8_t *p, const fp8_tabs *t, __m512i i0, __m512i i1, __m512bh *w0, __m512bh *w1) {
    /* qwords (8 columns each) reordered so that the in-lane unpacks below
     * come out in column order: lane L holds columns 8L.. and 32+8L.. */
    __m512i x = _mm512_permutexvar_epi64(_mm512_set_epi64(7, 3, 6, 2, 5, 1, 4, 0),
                                         _mm512_loadu_si512((const void *)p));
    __m512i hi = _mm512_permutex2var_epi8(t->h0, x, t->h1);
    __m512i lo = _mm512_permutex2var_epi8(t->l0, x, t->l1);
    hi = _mm512_ternarylogic_epi32(hi, x, _mm512_set1_epi8((char)0x80), 0xF8);   /* hi | (x & 0x80) */
    (void)i0; (void)i1;
    *w0 = (__m512bh)_mm512_unpacklo_epi8(lo, hi);
    *w1 = (__m512bh)_mm512_unpackhi_epi8(lo, hi);
}

/* 16 MXFP4 bytes -> 32 BF16 (value times 2^(s-127)), exact. */
INL __m512bh mxfp4_bf16x32(const uint8_t *p, unsigned s, const int VBMI) {
    if (__builtin_expect(s - MX_SMIN > (unsigned)(MX_SMAX - MX_SMIN), 0)) {
        const __m512i ilo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
        const __m512i ihi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
        __m512 lo, hi, sv = _mm512_set1_ps(e8m0_table[s]);
        cvt_e2m1x32(p, e2m1_tab(), &lo, &hi);
        lo = _mm512_mul_ps(lo, sv); hi = _mm512_mul_ps(hi, sv);
        return _mm512_cvtne2ps_pbh(_mm512_permutex2var_ps(lo, ihi, hi), _mm512_permutex2var_ps(lo, ilo, hi));
    }
    if (VBMI) {
        /* each qword gets 2 bytes; vpmultishiftqb puts nibble n (bits 4n..)
         * in the low byte of word n; vpermw reads only bits 0-4 of an index
         * and the table repeats itself, so the bits above need no masking.
         * (vpshufb on the low and high bytes instead measured slower.) */
        __m512i q = _mm512_cvtepu16_epi64(_mm_loadu_si128((const __m128i *)p));
        __m512i idx = _mm512_multishift_epi64_epi8(_mm512_set1_epi64(0x000C000800040000LL), q);
        return (__m512bh)_mm512_permutexvar_epi16(idx, _mm512_load_si512((const void *)mx_tab[s]));
    }
    __m512i d = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
    /* (d | d << 12) & 0x000F000F: word 2i = low nibble, word 2i+1 = high */
    __m512i idx = _mm512_ternarylogic_epi32(d, _mm512_slli_epi32(d, 12), _mm512_set1_epi32(0x000F000F), 0xA8);
    return (__m512bh)_mm512_permutexvar_epi16(idx, _mm512_load_si512((const void *)mx_tab[s]));
}

/* 64 BF16 weights of a row at column k (k % 64 == 0), FP32 route. */
INL void wbf16x64_slow(row_ptr rp, int k, __m512bh *w0, __m512bh *w1, const wtype TY) {
    __m512 v0, v1;
    deq32r(rp, k, &v0, &v1, TY);
    *w0 = _mm512_cvtne2ps_pbh(v1, v0);
    deq32r(rp, k + 32, &v0, &v1, TY);
    *w1 = _mm512_cvtne2ps_pbh(v1, v0);
}

INL void deq_bf16_row_fast(const dsv4_weight *w, int r, int k0, int kc, uint16_t *out) {
    row_ptr rp = row_at(w, r, w->type == W_FP8 ? W_FP8 : W_MXFP4);
    __m512bh a0, a1;
    if (w->type == W_MXFP4) {
        for (int k = k0; k < k0 + kc; k += 32)
            _mm512_storeu_si512((void *)(out + k - k0), (__m512i)mxfp4_bf16x32(rp.p + k / 2, rp.s[k >> 5], 0));
        return;
    }
    const __m512i i0 = ilv_idx(0), i1 = ilv_idx(32);
    fp8_tabs ft = fp8_tabs_for(127);
    int fast = 0;
    for (int k = k0; k < k0 + kc; k += 64) {
        if (k == k0 || !(k & 127)) {
            unsigned sc = rp.s[k >> 7];
            fast = sc >= FP8_SMIN && sc <= FP8_SMAX;
            ft = fp8_tabs_for(sc);
        }
        if (fast) fp8_bf16x64(rp.p + k, &ft, i0, i1, &a0, &a1);
        else wbf16x64_slow(rp, k, &a0, &a1, W_FP8);
        _mm512_storeu_si512((void *)(out + k - k0), (__m512i)a0);
        _mm512_storeu_si512((void *)(out + k - k0 + 32), (__m512i)a1);
    }
}

/* 64 weights of a row from column k (k % 64 == 0) as BF16: columns k..k+31
 * in *a0, k+32..k+63 in *a1.  FP8 rows need the tables of the scale block
 * of column k (ft, fast: whether they apply). */
INL void wrow_bf16x64(row_ptr rp, int k, const fp8_tabs *ft, int fast, __m512i i0, __m512i i1,
                      __m512bh *a0, __m512bh *a1, const wtype TY, const int VBMI) {
    if (TY == W_BF16) {
        *a0 = (__m512bh)_mm512_loadu_si512((const void *)((const uint16_t *)rp.p + k));
        *a1 = (__m512bh)_mm512_loadu_si512((const void *)((const uint16_t *)rp.p + k + 32));
    } else if (TY == W_F32) {   /* rounded to BF16 as v512_deq_bf16 does */
        const float *f = (const float *)rp.p + k;
        *a0 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + 16), _mm512_loadu_ps(f));
        *a1 = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(f + 48), _mm512_loadu_ps(f + 32));
    } else if (TY == W_FP8) {
        if (__builtin_expect(fast, 1)) fp8_bf16x64(rp.p + k, ft, i0, i1, a0, a1);
        else wbf16x64_slow(rp, k, a0, a1, TY);
    } else {
        *a0 = mxfp4_bf16x32(rp.p + k / 2, rp.s[k >> 5], VBMI);
        *a1 = mxfp4_bf16x32(rp.p + k / 2 + 16, rp.s[(k >> 5) + 1], VBMI);
    }
}

/* Prefetch n cache lines from p into L1 (l1) or L2. */
INL void prefetch_step(const char *p, int n, int l1) {
    for (int l = 0; l < n; l++) {
        if (l1) _mm_prefetch(p + 64 * l, _MM_HINT_T0);
        else _mm_prefetch(p + 64 * l, _MM_HINT_T1);
    }
}

/* Software prefetch distance of the one-row-at-a-time fused GEMV. */
#define ROW_PREFETCH 256

/* NR rows from r0 (compile time; NR x NT <= 4) x NT tokens, the tile's
 * arithmetic: four partial sums per (row, token) and K slice, 32-column
 * step j of the slice into partial j % 4; 64 columns per iteration, so
 * an iteration feeds partials 0-1 or 2-3.  Rows past nrow repeat row r0
 * (their sums are dropped).  FP8: the table path needs the rows to share
 * their 128-row scale block (groups start at multiples of NR, as the
 * driver's chunks are multiples of fused_align, 4); otherwise the FP32 route.
 *
 * NR = 1 reads one row after another: the weights then stream as one
 * sequential run per thread, which the hardware prefetchers follow at
 * nearly full speed on their own; a prefetch into L2 a little ahead
 * makes up for the cases where they do not (2 threads on two CCDs, the
 * BF16 head of an 8-layer GGUF file: 37-39 GB/s without, 41-43 with 2 KiB
 * ahead, 44 with the 8-row kernel before).  The distance: the head of the
 * safetensors slice in the model, alternating with a read probe of the
 * same size (two CCDs, fraction of the neighbouring probes): 256 B ahead
 * 0.931-0.938, 512 B 0.914, 2 KiB 0.909-0.911, none 0.69; one CCD 0.998,
 * 0.998, 0.999, 0.91; earlier 4 KiB 0.66.  With several rows in lockstep
 * there are several streams, and even with the next rows prefetched in
 * address order one core read 83-87% of what a plain read loop reads (BF16
 * rows of 4096, 1 GiB, 2 MiB pages, 1 thread: read loop 30.9 GB/s, 8 rows
 * in lockstep 25.9, one row at a time 30.8; 2 threads on two CCDs 54-58,
 * 47-52, 53-57).  Converted formats (FP8, MXFP4) take 4 rows in lockstep
 * all the same: per row they would reload the activations (2 bytes per
 * weight byte for FP8) and FP8's scale tables, and the FP8 GEMV fell from
 * 31.6 to 14.2 GB/s (4096 x 8192, 1 thread). */
INL void fused_bf16_nt(const dsv4_weight *w, int r0, int nrow, const uint16_t *const *x,
                       float *const *c, int kcs, const int NT, const wtype TY, const int NR,
                       const int VBMI) {
    const int K = w->cols;
    row_ptr rp[4];
    UNROLL for (int i = 0; i < NR; i++) rp[i] = row_at(w, r0 + (i < nrow ? i : 0), TY);
    const int same_blk = (r0 >> 7) == ((r0 + nrow - 1) >> 7) && VBMI;
    /* Several rows: prefetch the next group (contiguous: NR rows x rowb
     * bytes) in address order, one piece per (step, row), so that DRAM
     * sees one sequential stream per thread instead of NR interleaved ones
     * (read test, 2 threads: 8 interleaved streams 37 GB/s, 8 rows fetched
     * in order 48 GB/s, 1 stream 51 GB/s).  Groups over 8 KiB go to L2
     * (prefetcht1), where they do not evict the group being read. */
    const size_t rowb = (size_t)(K / 32) * STEP_BYTES(TY), stepb = 2 * STEP_BYTES(TY);
    const uint8_t *next = rp[0].p + (size_t)NR * rowb;
    const int to_l1 = (size_t)NR * rowb <= 8192;
    __m512i i0 = _mm512_setzero_si512(), i1 = i0;
    if (TY == W_FP8) { i0 = ilv_idx(0); i1 = ilv_idx(32); }
    fp8_tabs ft = {i0, i0, i0, i0};
    int fast = 1;
    for (int k0 = 0; k0 < K; k0 += kcs) {
        const int k1 = k0 + kcs < K ? k0 + kcs : K;
        __m512 acc[4][4][4];   /* token, row, partial */
        UNROLL for (int t = 0; t < NT; t++)
            UNROLL for (int i = 0; i < NR; i++)
                UNROLL for (int p = 0; p < 4; p++) acc[t][i][p] = _mm512_setzero_ps();
        for (int k = k0; k < k1; k += 64) {
            const int hi = ((k - k0) >> 6) & 1;   /* partials 2-3 */
            if (TY == W_FP8 && !(k & 127)) {
                unsigned sc = rp[0].s[k >> 7];
                fast = same_blk && sc >= FP8_SMIN && sc <= FP8_SMAX;
                ft = fp8_tabs_for(sc);
            }
            __m512bh b0[4], b1[4];
            UNROLL for (int t = 0; t < NT; t++) {
                b0[t] = (__m512bh)_mm512_loadu_si512((const void *)(x[t] + k));
                b1[t] = (__m512bh)_mm512_loadu_si512((const void *)(x[t] + k + 32));
            }
            UNROLL for (int i = 0; i < NR; i++) {
                if (NR == 1)   /* this step's lines, ROW_PREFETCH bytes on */
                    prefetch_step((const char *)rp[i].p + (size_t)k / 32 * STEP_BYTES(TY) + ROW_PREFETCH,
                                  (int)(stepb / 64), 0);
                if (NR > 1) {
                    size_t off = ((size_t)k / 64 * NR + (size_t)i) * stepb;
                    prefetch_step((const char *)(next + off), stepb >= 64 ? (int)(stepb / 64) : !(off & 63), to_l1);
                }
                __m512bh a0, a1;
                wrow_bf16x64(rp[i], k, &ft, fast, i0, i1, &a0, &a1, TY, VBMI);
                if (!hi) {
                    UNROLL for (int t = 0; t < NT; t++) {
                        acc[t][i][0] = _mm512_dpbf16_ps(acc[t][i][0], a0, b0[t]);
                        acc[t][i][1] = _mm512_dpbf16_ps(acc[t][i][1], a1, b1[t]);
                    }
                } else {
                    UNROLL for (int t = 0; t < NT; t++) {
                        acc[t][i][2] = _mm512_dpbf16_ps(acc[t][i][2], a0, b0[t]);
                        acc[t][i][3] = _mm512_dpbf16_ps(acc[t][i][3], a1, b1[t]);
                    }
                }
            }
        }
        UNROLL for (int t = 0; t < NT; t++)
            UNROLL for (int i = 0; i < NR && i < nrow; i++) {
                float s = _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[t][i][0], acc[t][i][1]),
                                                                           acc[t][i][2]), acc[t][i][3]));
                c[t][i] = k0 ? c[t][i] + s : s;
            }
    }
}

INL void fused_f32_nt(const dsv4_weight *w, int r0, int nrow, const float *const *x,
                      float *const *c, int kcs, const int NT, const wtype TY) {
    const int K = w->cols;
    row_ptr rp[RM];
    for (int i = 0; i < RM; i++) rp[i] = row_at(w, r0 + (i < nrow ? i : 0), TY);
    for (int k0 = 0; k0 < K; k0 += kcs) {
        int k1 = k0 + kcs < K ? k0 + kcs : K;
        __m512 acc[4][RM];
        UNROLL for (int t = 0; t < NT; t++)
            for (int i = 0; i < RM; i++) acc[t][i] = _mm512_setzero_ps();
        for (int k = k0; k < k1; k += 32) {
            __m512 a[RM][2];
            UNROLL for (int i = 0; i < RM; i++) {
                prefetch_row(rp[i], k, TY, 1024);
                deq32r(rp[i], k, &a[i][0], &a[i][1], TY);
            }
            /* two 16-column steps, in column order, like the tile */
            for (int h = 0; h < 2; h++)
                UNROLL for (int t = 0; t < NT; t++) {
                    __m512 b = _mm512_loadu_ps(x[t] + k + 16 * h);
                    acc[t][0] = _mm512_fmadd_ps(a[0][h], b, acc[t][0]);
                    acc[t][1] = _mm512_fmadd_ps(a[1][h], b, acc[t][1]);
                    acc[t][2] = _mm512_fmadd_ps(a[2][h], b, acc[t][2]);
                    acc[t][3] = _mm512_fmadd_ps(a[3][h], b, acc[t][3]);
                }
        }
        UNROLL for (int t = 0; t < NT; t++)
            for (int i = 0; i < nrow; i++) {
                float sum = _mm512_reduce_add_ps(acc[t][i]);
                c[t][i] = k0 ? c[t][i] + sum : sum;
            }
    }
}

/* One specialised loop per (weight format, token count). */
#define FUSED_TY(FN, NT)                                                                  \
    switch (w->type) {                                                                    \
    case W_F32: FN(w, rr, n, x, cc, kc, NT, W_F32); break;                                \
    case W_BF16: FN(w, rr, n, x, cc, kc, NT, W_BF16); break;                              \
    case W_FP8: FN(w, rr, n, x, cc, kc, NT, W_FP8); break;                                \
    default: FN(w, rr, n, x, cc, kc, NT, W_MXFP4); break;                                 \
    }

/* One specialised loop per (format, token count, rows in lockstep).  One
 * token: BF16/F32 one row at a time, converted formats 4 rows.  Two or
 * three tokens: 2 rows (16 or 24 accumulators).  Four: each pair of rows
 * for tokens 0-1, then again (from cache) for tokens 2-3.  (BF16 4096 x
 * 4096 T=4, 2 threads: one row with all four tokens 27-31 GB/s, the same
 * slice by slice over 8 rows 30-33, pairs of rows twice 41-43; the 4-row
 * one-sum kernel before 63d34e1 50-70.) */
INL void fused_bf16_groups(const dsv4_weight *w, int r0, int nrow, const uint16_t *const *x,
                           float *const *c, int kc, const int NT, const wtype TY, const int VBMI) {
    const int NR = NT > 1 ? 2 : TY == W_BF16 || TY == W_F32 ? 1 : 4;
    for (int i = 0; i < nrow; i += NR) {
        const int n = nrow - i < NR ? nrow - i : NR;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        if (NT < 4) {
            fused_bf16_nt(w, r0 + i, n, x, ci, kc, NT, TY, NR, VBMI);
        } else {
            fused_bf16_nt(w, r0 + i, n, x, ci, kc, 2, TY, NR, VBMI);
            fused_bf16_nt(w, r0 + i, n, x + 2, ci + 2, kc, 2, TY, NR, VBMI);
        }
    }
}

#define FUSED_BF16_NR(TY, VB, NT) fused_bf16_groups(w, r0, nrow, x, c, kc, NT, TY, VB)

#define FUSED_BF16_TY(NT)                                                                      \
    switch (w->type) {                                                                         \
    case W_F32: FUSED_BF16_NR(W_F32, 0, NT); break;                                            \
    case W_BF16: FUSED_BF16_NR(W_BF16, 0, NT); break;                                          \
    case W_FP8:                                                                                \
        if (vbmi) FUSED_BF16_NR(W_FP8, 1, NT);                                                 \
        else FUSED_BF16_NR(W_FP8, 0, NT);                                                      \
        break;                                                                                 \
    default:                                                                                   \
        if (vbmi) FUSED_BF16_NR(W_MXFP4, 1, NT);                                               \
        else FUSED_BF16_NR(W_MXFP4, 0, NT);                                                    \
        break;                                                                                 \
    }

/* Rows per call from linear.c (the kernel takes any number). */
#define FUSED_RM 8
static TGT void v512_fused_bf16(const dsv4_weight *w, int r0, int nrow, const uint16_t *const *x,
                                float *const *c, int ntok, int kc) {
    const int vbmi = use_vbmi();
    switch (ntok) {
    case 1: FUSED_BF16_TY(1) break;
    case 2: FUSED_BF16_TY(2) break;
    case 3: FUSED_BF16_TY(3) break;
    default: FUSED_BF16_TY(4) break;
    }
}

static TGT void v512_fused_f32(const dsv4_weight *w, int r0, int nrow, const float *const *x,
                               float *const *c, int ntok, int kc) {
    for (int i = 0; i < nrow; i += RM) {
        int n = nrow - i < RM ? nrow - i : RM;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        float *const *cc = ci;
        const int rr = r0 + i;
        switch (ntok) {
        case 1: FUSED_TY(fused_f32_nt, 1) break;
        case 2: FUSED_TY(fused_f32_nt, 2) break;
        case 3: FUSED_TY(fused_f32_nt, 3) break;
        default: FUSED_TY(fused_f32_nt, 4) break;
        }
    }
}

/* ---- lightning-indexer scores (kern_set.index_scores) ---------------------- */

static TGT void v512_index_scores(const uint32_t *panels, int nb, const uint16_t *q, const float *wh, int nh,
                                  int d, float *s) {
    const int np = d / 2;
    const uint32_t *q32 = (const uint32_t *)q;   /* dimension pairs, as the panels hold them */
    for (int j0 = 0; j0 < nb; j0 += 16) {
        const uint32_t *P = panels + (size_t)(j0 / 16) * np * 16;
        __m512 sc = _mm512_setzero_ps();
        /* 8 heads at a time: 8 independent chains hide vdpbf16ps's latency,
         * and each panel row is loaded once for them */
        for (int h0 = 0; h0 < nh; h0 += 8) {
            __m512 acc[8];
            UNROLL for (int i = 0; i < 8; i++) acc[i] = _mm512_setzero_ps();
            const uint32_t *qh = q32 + (size_t)h0 * np;
            for (int p = 0; p < np; p++) {
                __m512bh k = (__m512bh)_mm512_loadu_si512((const void *)(P + (size_t)p * 16));
                UNROLL for (int i = 0; i < 8; i++)
                    acc[i] = _mm512_dpbf16_ps(acc[i], k, (__m512bh)_mm512_set1_epi32((int)qh[(size_t)i * np + p]));
            }
            UNROLL for (int i = 0; i < 8; i++)
                sc = _mm512_add_ps(sc, _mm512_mul_ps(_mm512_max_ps(acc[i], _mm512_setzero_ps()),
                                                     _mm512_set1_ps(wh[h0 + i])));
        }
        if (j0 + 16 <= nb) _mm512_storeu_ps(s + j0, sc);
        else _mm512_mask_storeu_ps(s + j0, (__mmask16)((1u << (nb - j0)) - 1), sc);
    }
}

const kern_set kern_avx512 = {
    .name = "avx512",
    .gemv = v512_gemv,
    .deq_f32 = v512_deq_f32,
    .deq_bf16 = v512_deq_bf16,
    .tile_f32 = v512_tile_f32,
    .tile_bf16 = v512_tile_bf16,
    .rm = RM, .tm = TM,
    .tile_bf16_phased = 1,
    .fused_f32 = v512_fused_f32,
    .fused_bf16 = v512_fused_bf16,
    .fused_rm = FUSED_RM,
    .fused_align = 4,   /* row groups of 1, 2 or 4 */
    .index_scores = v512_index_scores,
};
#else
#include "num/kernels.h"
const kern_set kern_avx512 = {0};
int kern_avx512_no_vbmi;
#endif
