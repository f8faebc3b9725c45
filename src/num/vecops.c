/*
 * vecops.c - see vecops.h.  Each ISA path is its own function with a
 * target attribute, so the binary runs on any x86-64 (and elsewhere the
 * portable path is used).
 */
#include "num/vecops.h"
#include "num/cpu.h"
#include "num/numfmt.h"
#include <math.h>

static float dot_c(const float *a, const float *b, int n) {
    float s[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) s[u] += a[i + u] * b[i + u];
    float r = ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]));
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}
static void axpy_c(float *y, float a, const float *x, int n) { for (int i = 0; i < n; i++) y[i] += a * x[i]; }
static void scale_c(float *y, float a, int n) { for (int i = 0; i < n; i++) y[i] *= a; }
static void swiglu_c(float *g, const float *u, int n, float lim, float w) {
    for (int i = 0; i < n; i++) {
        float gv = g[i], uv = u[i];
        if (lim > 0) {
            uv = fminf(fmaxf(uv, -lim), lim);
            gv = fminf(gv, lim);
        }
        g[i] = w * (gv / (1.0f + expf(-gv)) * uv);
    }
}
static void hc_post_c(float *h, const float *f, const float *post, const float *comb, int hc, int D) {
    enum { B = 16 };
    for (int d0 = 0; d0 < D; d0 += B) {
        int nb = D - d0 < B ? D - d0 : B;
        float old[16][B];
        for (int i = 0; i < hc; i++)
            for (int b = 0; b < nb; b++) old[i][b] = h[(size_t)i * D + d0 + b];
        for (int k = 0; k < hc; k++)
            for (int b = 0; b < nb; b++) {
                float sum = 0.0f;
                for (int i = 0; i < hc; i++) sum += comb[i * hc + k] * old[i][b];
                h[(size_t)k * D + d0 + b] = post[k] * f[d0 + b] + sum;
            }
    }
}
static void f32_to_bf16_c(const float *x, uint16_t *out, size_t n) {
    for (size_t i = 0; i < n; i++) out[i] = f32_to_bf16(x[i]);
}

#if defined(__x86_64__)
#include <immintrin.h>

__attribute__((target("avx512f"))) static float dot_avx512(const float *a, const float *b, int n) {
    __m512 s0 = _mm512_setzero_ps(), s1 = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
        s1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), _mm512_loadu_ps(b + i + 16), s1);
    }
    for (; i + 16 <= n; i += 16) s0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), _mm512_loadu_ps(b + i), s0);
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        s1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a + i), _mm512_maskz_loadu_ps(k, b + i), s1);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(s0, s1));
}
__attribute__((target("avx512f"))) static void axpy_avx512(float *y, float a, const float *x, int n) {
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    if (i < n) {
        __mmask16 k = (__mmask16)((1u << (n - i)) - 1);
        _mm512_mask_storeu_ps(y + i, k, _mm512_fmadd_ps(va, _mm512_maskz_loadu_ps(k, x + i), _mm512_maskz_loadu_ps(k, y + i)));
    }
}
__attribute__((target("avx512f"))) static void scale_avx512(float *y, float a, int n) {
    __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, _mm512_mul_ps(va, _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] *= a;
}
/* dot_avx512 for four a's at once: per a the same two accumulators, the
 * same steps and reduction. */
__attribute__((target("avx512f"))) static void dot4_avx512(const float *const a[4], const float *b, int n, float out[4]) {
    __m512 s0[4], s1[4];
    _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) s0[h] = s1[h] = _mm512_setzero_ps();
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 b0 = _mm512_loadu_ps(b + i), b1 = _mm512_loadu_ps(b + i + 16);
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {
            s0[h] = _mm512_fmadd_ps(_mm512_loadu_ps(a[h] + i), b0, s0[h]);
            s1[h] = _mm512_fmadd_ps(_mm512_loadu_ps(a[h] + i + 16), b1, s1[h]);
        }
    }
    _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {
        int j = i;
        __m512 t0 = s0[h], t1 = s1[h];
        for (; j + 16 <= n; j += 16) t0 = _mm512_fmadd_ps(_mm512_loadu_ps(a[h] + j), _mm512_loadu_ps(b + j), t0);
        if (j < n) {
            __mmask16 k = (__mmask16)((1u << (n - j)) - 1);
            t1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, a[h] + j), _mm512_maskz_loadu_ps(k, b + j), t1);
        }
        out[h] = _mm512_reduce_add_ps(_mm512_add_ps(t0, t1));
    }
}
__attribute__((target("avx512f"))) static void axpy4_avx512(float *const y[4], const float a[4], const float *x, int n) {
    /* pointers and factors in locals: stores through y[h] could otherwise
     * alias the pointer array and force reloads */
    float *restrict y0 = y[0], *restrict y1 = y[1], *restrict y2 = y[2], *restrict y3 = y[3];
    const __m512 a0 = _mm512_set1_ps(a[0]), a1 = _mm512_set1_ps(a[1]), a2 = _mm512_set1_ps(a[2]), a3 = _mm512_set1_ps(a[3]);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 xv = _mm512_loadu_ps(x + i);
        _mm512_storeu_ps(y0 + i, _mm512_fmadd_ps(a0, xv, _mm512_loadu_ps(y0 + i)));
        _mm512_storeu_ps(y1 + i, _mm512_fmadd_ps(a1, xv, _mm512_loadu_ps(y1 + i)));
        _mm512_storeu_ps(y2 + i, _mm512_fmadd_ps(a2, xv, _mm512_loadu_ps(y2 + i)));
        _mm512_storeu_ps(y3 + i, _mm512_fmadd_ps(a3, xv, _mm512_loadu_ps(y3 + i)));
    }
    for (int h = 0; h < 4 && i < n; h++) axpy_avx512(y[h] + i, a[h], x + i, n - i);
}
/* dot_avx512 for four a's against two b's: per pair the same two
 * accumulators, steps and reduction, so each result is bit-identical to
 * dot_avx512(a[h], b[k]).  Each a is loaded once for both b's and each b
 * once for the four a's: 12 loads per 16 multiply-adds where four dot4
 * calls need 20 (a zmm load and a zmm FMA each take one cycle on Zen 4:
 * dot4 is load-bound, this is not). */
__attribute__((target("avx512f"))) static void dot4x2_avx512(const float *const a[4], const float *const b[2], int n,
                                                              float out[8]) {
    __m512 s0[4][2], s1[4][2];
    _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) s0[h][0] = s0[h][1] = s1[h][0] = s1[h][1] = _mm512_setzero_ps();
    const float *b0 = b[0], *b1 = b[1];
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 b00 = _mm512_loadu_ps(b0 + i), b01 = _mm512_loadu_ps(b0 + i + 16);
        __m512 b10 = _mm512_loadu_ps(b1 + i), b11 = _mm512_loadu_ps(b1 + i + 16);
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {
            __m512 a0 = _mm512_loadu_ps(a[h] + i), a1 = _mm512_loadu_ps(a[h] + i + 16);
            /* keep a0, a1 in registers: folded into each multiply-add the
             * compiler loads them twice (20 loads per 16 instead of 12) */
            __asm__("" : "+v"(a0), "+v"(a1));
            s0[h][0] = _mm512_fmadd_ps(a0, b00, s0[h][0]);
            s1[h][0] = _mm512_fmadd_ps(a1, b01, s1[h][0]);
            s0[h][1] = _mm512_fmadd_ps(a0, b10, s0[h][1]);
            s1[h][1] = _mm512_fmadd_ps(a1, b11, s1[h][1]);
        }
    }
    for (int h = 0; h < 4; h++)
        for (int k = 0; k < 2; k++) {
            const float *bk = b[k];
            int j = i;
            __m512 t0 = s0[h][k], t1 = s1[h][k];
            for (; j + 16 <= n; j += 16) t0 = _mm512_fmadd_ps(_mm512_loadu_ps(a[h] + j), _mm512_loadu_ps(bk + j), t0);
            if (j < n) {
                __mmask16 m = (__mmask16)((1u << (n - j)) - 1);
                t1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, a[h] + j), _mm512_maskz_loadu_ps(m, bk + j), t1);
            }
            out[h * 2 + k] = _mm512_reduce_add_ps(_mm512_add_ps(t0, t1));
        }
}
/* axpy4_avx512 for nx x's in order, the four y's held in registers across
 * them, 64 columns at a time: every element sees the same multiply-adds
 * in the same order as nx axpy4 calls (bit-identical), but y is loaded
 * and stored once per 64 columns instead of once per x (axpy4 is bound by
 * its stores: four per x per 16 columns). */
__attribute__((target("avx512f"))) static void axpy4_xs_avx512(float *const y[4], const float *a, int lda,
                                                                const float *const *x, int nx, int n) {
    float *restrict yh[4] = {y[0], y[1], y[2], y[3]};
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        __m512 acc[4][4];
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) acc[h][c] = _mm512_loadu_ps(yh[h] + i + 16 * c);
        for (int j = 0; j < nx; j++) {
            const float *xj = x[j] + i;
            __m512 x0 = _mm512_loadu_ps(xj), x1 = _mm512_loadu_ps(xj + 16);
            __m512 x2 = _mm512_loadu_ps(xj + 32), x3 = _mm512_loadu_ps(xj + 48);
            _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++) {
                __m512 ah = _mm512_set1_ps(a[(size_t)h * lda + j]);
                acc[h][0] = _mm512_fmadd_ps(ah, x0, acc[h][0]);
                acc[h][1] = _mm512_fmadd_ps(ah, x1, acc[h][1]);
                acc[h][2] = _mm512_fmadd_ps(ah, x2, acc[h][2]);
                acc[h][3] = _mm512_fmadd_ps(ah, x3, acc[h][3]);
            }
        }
        _Pragma("GCC unroll 4") for (int h = 0; h < 4; h++)
            _Pragma("GCC unroll 4") for (int c = 0; c < 4; c++) _mm512_storeu_ps(yh[h] + i + 16 * c, acc[h][c]);
    }
    for (; i < n; i += 16) {
        __mmask16 m = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 acc[4];
        for (int h = 0; h < 4; h++) acc[h] = _mm512_maskz_loadu_ps(m, yh[h] + i);
        for (int j = 0; j < nx; j++) {
            __m512 xv = _mm512_maskz_loadu_ps(m, x[j] + i);
            for (int h = 0; h < 4; h++) acc[h] = _mm512_fmadd_ps(_mm512_set1_ps(a[(size_t)h * lda + j]), xv, acc[h]);
        }
        for (int h = 0; h < 4; h++) _mm512_mask_storeu_ps(yh[h] + i, m, acc[h]);
    }
}
__attribute__((target("avx512f"))) static void relu_wsum_avx512(float *y, const float *x, int ld, int nh,
                                                                const float *a, int n) {
    int j = 0;
    for (; j + 16 <= n; j += 16) {
        __m512 acc = _mm512_loadu_ps(y + j);
        for (int h = 0; h < nh; h++) {
            __m512 d = _mm512_loadu_ps(x + (size_t)h * ld + j);
            __mmask16 pos = _mm512_cmp_ps_mask(d, _mm512_setzero_ps(), _CMP_GT_OQ);
            acc = _mm512_mask_add_ps(acc, pos, acc, _mm512_mul_ps(d, _mm512_set1_ps(a[h])));
        }
        _mm512_storeu_ps(y + j, acc);
    }
    for (; j < n; j++)
        for (int h = 0; h < nh; h++) {
            float d = x[(size_t)h * ld + j];
            if (d > 0.0f) y[j] += d * a[h];
        }
}
__attribute__((target("avx2,fma"))) static float dot_avx2(const float *a, const float *b, int n) {
    __m256 s0 = _mm256_setzero_ps(), s1 = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        s0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), _mm256_loadu_ps(b + i), s0);
        s1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), _mm256_loadu_ps(b + i + 8), s1);
    }
    s0 = _mm256_add_ps(s0, s1);
    __m128 h = _mm_add_ps(_mm256_castps256_ps128(s0), _mm256_extractf128_ps(s0, 1));
    h = _mm_add_ps(h, _mm_movehl_ps(h, h));
    h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
    float r = _mm_cvtss_f32(h);
    for (; i < n; i++) r += a[i] * b[i];
    return r;
}
/* exp(x) for x in [-87.3, 88.7] (clamped): x = n ln2 + r, |r| <= ln2/2,
 * exp(r) by its Taylor series to r^7 (truncation under 1e-8 relative),
 * times 2^n by vscalefps. */
__attribute__((target("avx512f"))) static inline __m512 exp_avx512(__m512 x) {
    x = _mm512_min_ps(_mm512_max_ps(x, _mm512_set1_ps(-87.3f)), _mm512_set1_ps(88.7f));
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504f)), _MM_FROUND_TO_NEAREST_INT);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145752f), x);     /* ln2, high bits */
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.42860677e-6f), r);            /* ln2, the rest */
    __m512 p = _mm512_set1_ps(1.0f / 5040);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
    return _mm512_scalef_ps(p, n);
}
/* Masked loads and stores for the tail: every element goes through the
 * same arithmetic wherever it sits in the row. */
__attribute__((target("avx512f"))) static void swiglu_avx512(float *g, const float *u, int n, float lim, float w) {
    const __m512 one = _mm512_set1_ps(1.0f), vw = _mm512_set1_ps(w), hi = _mm512_set1_ps(lim),
                 lo = _mm512_set1_ps(-lim);
    for (int i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512 gv = _mm512_maskz_loadu_ps(k, g + i), uv = _mm512_maskz_loadu_ps(k, u + i);
        if (lim > 0) {
            uv = _mm512_min_ps(_mm512_max_ps(uv, lo), hi);
            gv = _mm512_min_ps(gv, hi);
        }
        __m512 s = _mm512_div_ps(gv, _mm512_add_ps(one, exp_avx512(_mm512_sub_ps(_mm512_setzero_ps(), gv))));
        _mm512_mask_storeu_ps(g + i, k, _mm512_mul_ps(vw, _mm512_mul_ps(s, uv)));
    }
}
/* hc_post_c 16 columns at a time: the old rows of a block are loaded
 * before any new one is stored; _mm512_mul_ps then _mm512_add_ps, as the
 * scalar expression rounds. */
__attribute__((target("avx512f"))) static void hc_post_avx512(float *h, const float *f, const float *post,
                                                                const float *comb, int hc, int D) {
    for (int d0 = 0; d0 < D; d0 += 16) {
        __mmask16 m = D - d0 >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (D - d0)) - 1);
        __m512 old[16];
        for (int i = 0; i < hc; i++) old[i] = _mm512_maskz_loadu_ps(m, h + (size_t)i * D + d0);
        __m512 fv = _mm512_maskz_loadu_ps(m, f + d0);
        for (int k = 0; k < hc; k++) {
            __m512 sum = _mm512_setzero_ps();
            for (int i = 0; i < hc; i++)
                sum = _mm512_add_ps(sum, _mm512_mul_ps(_mm512_set1_ps(comb[i * hc + k]), old[i]));
            _mm512_mask_storeu_ps(h + (size_t)k * D + d0, m, _mm512_add_ps(_mm512_mul_ps(_mm512_set1_ps(post[k]), fv), sum));
        }
    }
}
/* f32_to_bf16 on 16 lanes: u + 0x7fff + ((u >> 16) & 1), NaNs | 0x40. */
__attribute__((target("avx512f,avx512bw,avx512vl"))) static void f32_to_bf16_avx512(const float *x, uint16_t *out, size_t n) {
    const __m512i bias = _mm512_set1_epi32(0x7fff), one = _mm512_set1_epi32(1),
                  absm = _mm512_set1_epi32(0x7fffffff), inf = _mm512_set1_epi32(0x7f800000),
                  quiet = _mm512_set1_epi32(0x400000);
    for (size_t i = 0; i < n; i += 16) {
        __mmask16 k = n - i >= 16 ? (__mmask16)0xffff : (__mmask16)((1u << (n - i)) - 1);
        __m512i u = _mm512_maskz_loadu_epi32(k, x + i);
        __mmask16 nan = _mm512_cmpgt_epi32_mask(_mm512_and_si512(u, absm), inf);
        __m512i r = _mm512_add_epi32(_mm512_add_epi32(u, bias), _mm512_and_si512(_mm512_srli_epi32(u, 16), one));
        r = _mm512_mask_or_epi32(r, nan, u, quiet);
        _mm256_mask_storeu_epi16(out + i, k, _mm512_cvtepi32_epi16(_mm512_srli_epi32(r, 16)));
    }
}
__attribute__((target("avx2,fma"))) static void axpy_avx2(float *y, float a, const float *x, int n) {
    __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}
#endif

float vec_dot(const float *a, const float *b, int n) {
#if defined(__x86_64__)
    cpu_isa_level l = cpu_isa();
    if (l == ISA_AVX512) return dot_avx512(a, b, n);
    if (l == ISA_AVX2) return dot_avx2(a, b, n);
#endif
    return dot_c(a, b, n);
}

void vec_axpy(float *y, float a, const float *x, int n) {
#if defined(__x86_64__)
    cpu_isa_level l = cpu_isa();
    if (l == ISA_AVX512) { axpy_avx512(y, a, x, n); return; }
    if (l == ISA_AVX2) { axpy_avx2(y, a, x, n); return; }
#endif
    axpy_c(y, a, x, n);
}

void vec_scale(float *y, float a, int n) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { scale_avx512(y, a, n); return; }
#endif
    scale_c(y, a, n);
}

void vec_dot4(const float *const a[4], const float *b, int n, float out[4]) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { dot4_avx512(a, b, n, out); return; }
#endif
    for (int h = 0; h < 4; h++) out[h] = vec_dot(a[h], b, n);
}

void vec_axpy4(float *const y[4], const float a[4], const float *x, int n) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { axpy4_avx512(y, a, x, n); return; }
#endif
    for (int h = 0; h < 4; h++) vec_axpy(y[h], a[h], x, n);
}

void vec_dot4x2(const float *const a[4], const float *const b[2], int n, float out[8]) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { dot4x2_avx512(a, b, n, out); return; }
#endif
    for (int h = 0; h < 4; h++)
        for (int k = 0; k < 2; k++) out[h * 2 + k] = vec_dot(a[h], b[k], n);
}

void vec_axpy4_xs(float *const y[4], const float *a, int lda, const float *const *x, int nx, int n) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { axpy4_xs_avx512(y, a, lda, x, nx, n); return; }
#endif
    for (int j = 0; j < nx; j++) {
        float aj[4] = {a[j], a[(size_t)lda + j], a[(size_t)2 * lda + j], a[(size_t)3 * lda + j]};
        vec_axpy4(y, aj, x[j], n);
    }
}

void vec_relu_weighted_sum(float *y, const float *x, int ld, int nh, const float *a, int n) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { relu_wsum_avx512(y, x, ld, nh, a, n); return; }
#endif
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < n; j++) {
            float d = x[(size_t)h * ld + j];
            if (d > 0.0f) y[j] += d * a[h];
        }
}

void vec_swiglu(float *g, const float *u, int n, float lim, float w, int own_exp) {
#if defined(__x86_64__)
    if (own_exp && cpu_isa() == ISA_AVX512) { swiglu_avx512(g, u, n, lim, w); return; }
#else
    (void)own_exp;
#endif
    swiglu_c(g, u, n, lim, w);
}

void vec_f32_to_bf16(const float *x, uint16_t *out, size_t n) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { f32_to_bf16_avx512(x, out, n); return; }
#endif
    f32_to_bf16_c(x, out, n);
}

void vec_hc_post(float *h, const float *f, const float *post, const float *comb, int hc, int D) {
#if defined(__x86_64__)
    if (cpu_isa() == ISA_AVX512) { hc_post_avx512(h, f, post, comb, hc, D); return; }
#endif
    hc_post_c(h, f, post, comb, hc, D);
}
