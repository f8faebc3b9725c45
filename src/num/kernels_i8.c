/*
 * kernels_i8.c - FAST-mode products with int8 activations (AVX-512 VNNI)
 * for the weight formats whose values are small integers times a block
 * scale: the release's MXFP4 experts, and GGUF's MXFP4 and Q8_0.
 *
 * Why: converting E2M1 nibbles to BF16 costs a table permute per 32
 * weights and a vdpbf16ps does 32 multiply-adds; the MXFP4 GEMV was
 * compute-bound at 11-14 GB/s per core, well below one core's memory
 * bandwidth.  E2M1 values times two are small integers (0, ±1, ±2, ±3,
 * ±4, ±6, ±8, ±12), so a nibble becomes an int8 through one in-register
 * byte shuffle, and vpdpbusd does 64 multiply-adds of int8 at a time
 * (one core, weights in cache: 44 GB/s of MXFP4 weights against 20).
 *
 * Arithmetic, per 32-column block b of the activations x (kern_q8x):
 *   d_b = max|x| / 127,  q = round(x / d_b)  (int8, symmetric)
 * and per weight block with integer values v and scale s:
 *   y[r] += s * d_b * sum_k v[k] * q[k]
 * The integer sum is exact.  vpdpbusd multiplies unsigned by signed bytes,
 * so the weights enter offset to unsigned (u = v + c: c = 12 for doubled
 * E2M1, 128 for Q8_0's int8) and c * sum(q) over the same bytes, computed
 * once per token, is the initial value of the accumulator.
 *
 * Lane layout: the int32 lane L of a 512-bit register sums 4 byte
 * products.  Activations are stored per 128-column chunk in the order the
 * weight bytes come in, with a correction and a scale per lane:
 *   MXFP4 (release)  64 packed bytes, byte j = columns 2j (low nibble) and
 *                    2j+1 (high): q = 64 even columns, then 64 odd; lane L
 *                    is in block L/4 for both halves (one accumulator).
 *   GG_MXFP4         4 blocks of [E8M0, 16 bytes]: byte j of block b =
 *                    columns 32b+j (low) and 32b+16+j (high): q = per block
 *                    16 low columns ... then 16 high ...; lane L in block L/4.
 *   Q8_0             4 blocks of [FP16 d, 32 int8]: natural order, two
 *                    registers of 64 columns, lane L of register h in block
 *                    2h + L/8; 32 corrections and scales per chunk.
 * Each (row, token) result is accumulated per lane over the chunks in
 * order and reduced once: it does not depend on how many tokens or rows a
 * call handles, so prefill and decode agree bit for bit.
 */
#include "num/cpu.h"
#include "num/ggml_quants.h"
#include "num/kernels.h"
#include "num/numfmt.h"
#include <math.h>
#include <stdalign.h>
#include <string.h>

/* E2M1 code -> 2*value + 12 (the unsigned operand of vpdpbusd); GGUF's
 * MXFP4 uses the same codes. */
static const uint8_t e2m1_u8[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

int kern_i8_supports(const dsv4_weight *w) {
    if (!w || !w->data || w->rows <= 0 || w->cols <= 0 || w->cols % 128) return 0;
    switch (w->type) {
    case W_MXFP4: return w->scale && w->scale_cols >= w->cols / 32;
    case W_GG_MXFP4: case W_Q8_0: return 1;
    default: return 0;
    }
}

/* q: K bytes; corr and scale: K/4 entries each (MXFP4 layouts use K/8). */
size_t kern_q8x_bytes(int K) { return (size_t)K + (size_t)K / 4 * 8; }

void kern_q8x_view(void *buf, int K, kern_q8x *v) {
    uint8_t *b = buf;
    v->q = (const int8_t *)b;
    v->corr = (const int32_t *)(b + K);
    v->scale = (const float *)(b + K + (size_t)K);
}

/* Columns of chunk position j (0..127) in the stored order, per layout. */
static int q8x_col(wtype t, int j) {
    switch (t) {
    case W_MXFP4: return j < 64 ? 2 * j : 2 * (j - 64) + 1;
    case W_GG_MXFP4: { int h = j / 64, i = j % 64; return 32 * (i / 16) + 16 * h + i % 16; }
    default: return j;
    }
}

void kern_q8x_quantize_ref(wtype t, const float *x, int K, void *buf) {
    uint8_t *b = buf;
    int8_t *q = (int8_t *)b;
    int32_t *corr = (int32_t *)(b + K);
    float *scale = (float *)(b + 2 * (size_t)K);
    const int c_off = t == W_Q8_0 ? 128 : 12, lanes = t == W_Q8_0 ? 32 : 16;
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
        int8_t *qc = q + (size_t)c * 128;
        for (int j = 0; j < 128; j++) qc[j] = qv[q8x_col(t, j)];
        for (int L = 0; L < lanes; L++) {
            /* MXFP4: lane L sums bytes 4L.. of both halves; Q8_0: lane L of
             * the 32 covers bytes 4L..4L+3 */
            int s = 0;
            for (int k = 0; k < 4; k++) s += t == W_Q8_0 ? qc[4 * L + k] : qc[4 * L + k] + qc[64 + 4 * L + k];
            corr[c * lanes + L] = -c_off * s;
            int col = q8x_col(t, 4 * L);
            scale[c * lanes + L] = t == W_MXFP4 ? d[col / 32] * 0.5f : d[col / 32];
        }
    }
}

/* The integer sum of lane `lane` of (row r, chunk c) and the lane's weight
 * scale: the portable model of the kernels below. */
static int32_t i8_lane(const dsv4_weight *w, int r, int c, int lane, const kern_q8x *x, int lanes,
                       float *ws) {
    const int K = w->cols;
    int32_t sum = x->corr[c * lanes + lane];
    const int8_t *q = x->q + (size_t)c * 128;
    uint32_t bits;
    if (w->type == W_MXFP4) {
        const uint8_t *p = (const uint8_t *)w->data + (size_t)r * (K / 2) + (size_t)c * 64;
        for (int j = 0; j < 4; j++) {
            uint8_t byte = p[4 * lane + j];
            sum += e2m1_u8[byte & 15] * q[4 * lane + j] + e2m1_u8[byte >> 4] * q[64 + 4 * lane + j];
        }
        bits = (uint32_t)w->scale[(size_t)r * w->scale_cols + c * 4 + lane / 4] << 23;
        memcpy(ws, &bits, 4);
    } else if (w->type == W_GG_MXFP4) {
        const uint8_t *blk = (const uint8_t *)w->data + (size_t)r * (K / 32 * 17) + (size_t)(c * 4 + lane / 4) * 17;
        for (int j = 0; j < 4; j++) {
            uint8_t byte = blk[1 + (lane % 4) * 4 + j];
            sum += e2m1_u8[byte & 15] * q[4 * lane + j] + e2m1_u8[byte >> 4] * q[64 + 4 * lane + j];
        }
        /* GGUF: value = (2v) * 2^(e-128); the activation scale carries no
         * 1/2 here, so the lane scale is 2^(e-128) */
        bits = (uint32_t)(blk[0] ? blk[0] - 1 : 0) << 23;
        memcpy(ws, &bits, 4);
    } else {
        const uint8_t *blk = (const uint8_t *)w->data + (size_t)r * (K / 32 * 34) + (size_t)(c * 4 + lane / 8) * 34;
        for (int j = 0; j < 4; j++) sum += (uint8_t)(blk[2 + (lane % 8) * 4 + j] ^ 0x80) * q[4 * lane + j];
        uint16_t h;
        memcpy(&h, blk, 2);
        *ws = ggml_f16_to_f32(h);
    }
    return sum;
}

/* One (row, token) product with the kernels' arithmetic: per lane FP32
 * accumulation over the chunks (two registers per chunk for Q8_0, in
 * order), then the reduction order of _mm512_reduce_add_ps. */
float kern_i8_dot_ref(const dsv4_weight *w, int r, const kern_q8x *x) {
    const int lanes = w->type == W_Q8_0 ? 32 : 16;
    float acc[16] = {0};
    for (int c = 0; c < w->cols / 128; c++)
        for (int h = 0; h < lanes / 16; h++)
            for (int L = 0; L < 16; L++) {
                float ws;
                int32_t sum = i8_lane(w, r, c, 16 * h + L, x, lanes, &ws);
                acc[L] = fmaf((float)sum, ws * x->scale[c * lanes + 16 * h + L], acc[L]);
            }
    for (int h = 8; h >= 1; h /= 2)
        for (int i = 0; i < h; i++) acc[i] += acc[i + h];
    return acc[0];
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <immintrin.h>

#define TGT __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,f16c")))
#define UNROLL _Pragma("GCC unroll 8")
#define INL static inline __attribute__((always_inline)) TGT

/* Same bytes as kern_q8x_quantize_ref (nearest-even rounding of the same
 * products, the same block maxima), 128 columns per step. */
static TGT void q8x_quantize_avx512(wtype t, const float *x, int K, void *buf) {
    uint8_t *b = buf;
    int8_t *q = (int8_t *)b;
    int32_t *corr = (int32_t *)(b + K);
    float *scale = (float *)(b + 2 * (size_t)K);
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i ones = _mm512_set1_epi8(1);
    for (int c = 0; c < K / 128; c++) {
        const float *xc = x + (size_t)c * 128;
        __m128i lo[4], hi[4];   /* per block: the 16 bytes of each half */
        float d[4];
        for (int blk = 0; blk < 4; blk++) {
            __m512 v0 = _mm512_loadu_ps(xc + 32 * blk), v1 = _mm512_loadu_ps(xc + 32 * blk + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            d[blk] = amax / 127.0f;
            __m512 inv = _mm512_set1_ps(amax > 0.0f ? 127.0f / amax : 0.0f);
            __m512 a = v0, h = v1;
            if (t == W_MXFP4) { a = _mm512_permutex2var_ps(v0, ev, v1); h = _mm512_permutex2var_ps(v0, od, v1); }
            /* |value| <= 127 (at most 127 * (1 + 2^-23) before rounding) */
            lo[blk] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(a, inv)));
            hi[blk] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_mul_ps(h, inv)));
        }
        __m512i R0, R1;
        if (t == W_Q8_0) {   /* natural order: block b = lo[b], hi[b] */
            R0 = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(lo[0]), hi[0], 1), lo[1], 2), hi[1], 3);
            R1 = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(lo[2]), hi[2], 1), lo[3], 2), hi[3], 3);
        } else {             /* the low-nibble columns of all blocks, then the high */
            R0 = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(lo[0]), lo[1], 1), lo[2], 2), lo[3], 3);
            R1 = _mm512_inserti64x2(_mm512_inserti64x2(_mm512_inserti64x2(_mm512_castsi128_si512(hi[0]), hi[1], 1), hi[2], 2), hi[3], 3);
        }
        _mm512_storeu_si512((void *)(q + (size_t)c * 128), R0);
        _mm512_storeu_si512((void *)(q + (size_t)c * 128 + 64), R1);
        /* lane sums of the signed bytes: u8 ones x s8 values */
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, R0);
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, R1);
        if (t == W_Q8_0) {
            _mm512_storeu_si512((void *)(corr + c * 32), _mm512_mullo_epi32(s0, _mm512_set1_epi32(-128)));
            _mm512_storeu_si512((void *)(corr + c * 32 + 16), _mm512_mullo_epi32(s1, _mm512_set1_epi32(-128)));
            _mm512_storeu_ps(scale + c * 32, _mm512_set_ps(d[1], d[1], d[1], d[1], d[1], d[1], d[1], d[1],
                                                           d[0], d[0], d[0], d[0], d[0], d[0], d[0], d[0]));
            _mm512_storeu_ps(scale + c * 32 + 16, _mm512_set_ps(d[3], d[3], d[3], d[3], d[3], d[3], d[3], d[3],
                                                                d[2], d[2], d[2], d[2], d[2], d[2], d[2], d[2]));
        } else {
            _mm512_storeu_si512((void *)(corr + c * 16), _mm512_mullo_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(-12)));
            __m512 sc = _mm512_set_ps(d[3], d[3], d[3], d[3], d[2], d[2], d[2], d[2],
                                      d[1], d[1], d[1], d[1], d[0], d[0], d[0], d[0]);
            if (t == W_MXFP4) sc = _mm512_mul_ps(sc, _mm512_set1_ps(0.5f));
            _mm512_storeu_ps(scale + c * 16, sc);
        }
    }
}

/* GGUF MXFP4, 4 blocks of [E8M0, 16 code bytes] = 68 bytes, loaded as A =
 * bytes 0..63 and B = bytes 4..67: vpermt2b indices of the code bytes
 * (block b/16, byte b%16), and vpermb indices of each lane's exponent. */
static const alignas(64) uint8_t gg_code_idx[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 124, 125, 126, 127};
static const alignas(64) uint8_t gg_exp_idx[64] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 17, 0, 0, 0, 17, 0, 0, 0, 17, 0, 0, 0, 17, 0, 0, 0, 34, 0, 0, 0, 34, 0, 0, 0, 34, 0, 0, 0, 34, 0, 0, 0, 51, 0, 0, 0, 51, 0, 0, 0, 51, 0, 0, 0, 51, 0, 0, 0};

#define I8_VBMI 0
#define I8_TGT TGT
#define I8_INL INL
#define I8_FN(n) n##_base
#include "num/kernels_i8_impl.h"
#undef I8_VBMI
#undef I8_TGT
#undef I8_INL
#undef I8_FN

#define TGT_VBMI __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx512vbmi,f16c")))
#define I8_VBMI 1
#define I8_TGT TGT_VBMI
#define I8_INL static inline __attribute__((always_inline)) TGT_VBMI
#define I8_FN(n) n##_vbmi
#include "num/kernels_i8_impl.h"

void kern_i8_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                    float *const *c, int ntok) {
    /* the VBMI build only differs for GGUF MXFP4 */
    if (w->type == W_GG_MXFP4 && cpu_get_features()->avx512vbmi && !kern_avx512_no_vbmi)
        kern_i8_vbmi(w, r0, nrow, x, c, ntok);
    else
        kern_i8_base(w, r0, nrow, x, c, ntok);
}

void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) {
    if (cpu_get_features()->avx512vnni) q8x_quantize_avx512(t, x, K, buf);
    else kern_q8x_quantize_ref(t, x, K, buf);
}
#else
void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) { kern_q8x_quantize_ref(t, x, K, buf); }
#endif
