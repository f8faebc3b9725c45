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
 * byte shuffle, and vpdpbusd does 64 multiply-adds of int8 at a time.
 *
 * Arithmetic, per 32-column block b of the activations x (kern_q8x):
 *   d_b = max|x| / 127,  q = round(x / d_b)  (int8, symmetric)
 * and per weight block with integer values v and scale s:
 *   S_b = sum_k v[k] * q[k]                     (exact, int32)
 *   p[b % 4] = fma((float)S_b, s_b * d_b, p[b % 4])   b = 0, 1, ... in order
 *   result = ((p[0] + p[1]) + p[2]) + p[3]
 * four FP32 chains per (row, token), one per block position in a 128-column
 * chunk (as the BF16 kernels keep four partials per 32-column step): the
 * few-token kernel then adds a chunk's four blocks of four rows into one
 * register, lane 4 * position + row, and scales it with one multiply-add,
 * with no transposes (16 rows in lockstep before, their lane sums
 * transposed to lane = row per chunk: 30 GB/s per core in L3, 4 rows this
 * way 39.5 in a prototype; MXFP4 2048 x 4096).  vpdpbusd multiplies unsigned by signed bytes, so the
 * weights enter offset to unsigned (u = v + c: c = 12 for doubled E2M1,
 * 128 for Q8_0's int8) and -c * sum(q) over the block, computed once per
 * token, is added to S_b.
 *
 * Two kernels compute exactly this, in different register layouts:
 *   few tokens (decode)  4 rows at a time; a row's 128-column chunk is one
 *                        or two registers of weight bytes, 4 lanes per
 *                        block; the lane sums of the 4 rows are added into
 *                        one register, lane 4b + r (block b, row r).
 *   many tokens          16 rows' weights are unpacked and transposed once
 *                        (lane = row, 4 bytes of one block per lane), and
 *                        each token's 4 bytes are broadcast: 8 vpdpbusd per
 *                        block and token, nothing to reduce; one pass over
 *                        the chunks per block position.
 * A (row, token) result depends only on that row and that token, so
 * prefill, decode and batched decode agree bit for bit.
 *
 * q layout, per 128-column chunk, in the order the weight bytes come in:
 *   MXFP4 (release)  64 packed bytes, byte j = columns 2j (low nibble) and
 *                    2j+1 (high): q = the 64 even columns, then the 64 odd.
 *   GG_MXFP4         4 blocks of [E8M0, 16 bytes]: byte j of block b =
 *                    columns 32b+j (low) and 32b+16+j (high): q = per block
 *                    16 low columns ... then 16 high ...
 *   Q8_0             4 blocks of [FP16 d, 32 int8]: natural order.
 * In all three, q bytes 4m..4m+3 of a half (64 bytes) belong to block
 * m/4 (MXFP4 kinds) or, for Q8_0, bytes 4m.. to block m/8 of the chunk.
 */
#include "num/cpu.h"
#include "num/ggml_quants.h"
#include "num/kernels.h"
#include "num/numfmt.h"
#include <math.h>
#include <stdalign.h>
#include <string.h>
#include <stdlib.h>

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

/* Bytes of one row: MXFP4 nibbles (scales apart), GGUF MXFP4 17-byte and
 * Q8_0 34-byte blocks of 32. */
static inline size_t i8_row_bytes(wtype t, int K) {
    return t == W_MXFP4 ? (size_t)K / 2 : t == W_GG_MXFP4 ? (size_t)K / 32 * 17 : (size_t)K / 32 * 34;
}

size_t kern_i8_row_bytes(const dsv4_weight *w) { return i8_row_bytes(w->type, w->cols); }

const void *kern_i8_row_ptr(const dsv4_weight *w, int r) {
    return (const uint8_t *)w->data + (size_t)r * i8_row_bytes(w->type, w->cols);
}

/* q: K bytes; corr and scale: K/32 entries, each stored 4 times. */
size_t kern_q8x_bytes(int K) { return (size_t)K + (size_t)K / 32 * 32; }

void kern_q8x_view(void *buf, int K, kern_q8x *v) {
    uint8_t *b = buf;
    v->q = (const int8_t *)b;
    v->corr = (const int32_t *)(b + K);
    v->scale = (const float *)(b + K + (size_t)K / 32 * 16);
}

/* Column of chunk position j (0..127) in the stored order, per layout. */
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
    float *scale = (float *)(b + K + (size_t)K / 32 * 16);
    const int c_off = t == W_Q8_0 ? 128 : 12;
    for (int c = 0; c < K / 128; c++) {
        const float *xc = x + (size_t)c * 128;
        int8_t qv[128];
        for (int blk = 0; blk < 4; blk++) {
            float amax = 0.0f;
            for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xc[blk * 32 + i]));
            float inv = amax > 0.0f ? 127.0f / amax : 0.0f;
            int sum = 0;
            for (int i = 0; i < 32; i++) {
                float v = nearbyintf(xc[blk * 32 + i] * inv);
                qv[blk * 32 + i] = (int8_t)(v > 127.0f ? 127 : v < -127.0f ? -127 : v);
                sum += qv[blk * 32 + i];
            }
            /* MXFP4: the weight bytes hold twice the E2M1 value */
            for (int j = 0; j < 4; j++) {
                corr[4 * (c * 4 + blk) + j] = -c_off * sum;
                scale[4 * (c * 4 + blk) + j] = t == W_MXFP4 ? amax / 127.0f * 0.5f : amax / 127.0f;
            }
        }
        for (int j = 0; j < 128; j++) q[(size_t)c * 128 + j] = qv[q8x_col(t, j)];
    }
}

/* Weight (row r, column k) as the unsigned byte u = v + c of the kernels. */
static int i8_weight_u(const dsv4_weight *w, int r, int k) {
    const int K = w->cols;
    if (w->type == W_MXFP4) {
        uint8_t byte = ((const uint8_t *)w->data)[(size_t)r * (K / 2) + k / 2];
        return e2m1_u8[k & 1 ? byte >> 4 : byte & 15];
    }
    if (w->type == W_GG_MXFP4) {
        const uint8_t *blk = (const uint8_t *)w->data + (size_t)r * (K / 32 * 17) + (size_t)(k / 32) * 17;
        int i = k % 32;
        return e2m1_u8[i < 16 ? blk[1 + i] & 15 : blk[1 + i - 16] >> 4];
    }
    const uint8_t *blk = (const uint8_t *)w->data + (size_t)r * (K / 32 * 34) + (size_t)(k / 32) * 34;
    return (uint8_t)(blk[2 + k % 32] ^ 0x80);
}

/* Scale of weight block b of row r: 2^(e-127) (release MXFP4), 2^(e-128)
 * (GGUF MXFP4: its codes stand for 2v * 2^(e-128)), FP16 d (Q8_0).  E8M0
 * codes become float bits e << 23 (code 0 -> 0, as in the kernels). */
static float i8_weight_scale(const dsv4_weight *w, int r, int b) {
    const int K = w->cols;
    uint32_t bits;
    float f;
    if (w->type == W_MXFP4) {
        bits = (uint32_t)w->scale[(size_t)r * w->scale_cols + b] << 23;
    } else if (w->type == W_GG_MXFP4) {
        uint8_t e = ((const uint8_t *)w->data)[(size_t)r * (K / 32 * 17) + (size_t)b * 17];
        bits = (uint32_t)(e ? e - 1 : 0) << 23;
    } else {
        uint16_t h;
        memcpy(&h, (const uint8_t *)w->data + (size_t)r * (K / 32 * 34) + (size_t)b * 34, 2);
        return ggml_f16_to_f32(h);
    }
    memcpy(&f, &bits, 4);
    return f;
}

/* One (row, token) product with the kernels' arithmetic. */
float kern_i8_dot_ref(const dsv4_weight *w, int r, const kern_q8x *x) {
    float p[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int b = 0; b < w->cols / 32; b++) {
        int32_t S = x->corr[4 * b];
        const int8_t *qc = x->q + (size_t)(b / 4) * 128;
        for (int j = 0; j < 128; j++) {
            int col = (b / 4) * 128 + q8x_col(w->type, j);
            if (col / 32 == b) S += i8_weight_u(w, r, col) * qc[j];
        }
        p[b % 4] = fmaf((float)S, i8_weight_scale(w, r, b) * x->scale[4 * b], p[b % 4]);
    }
    return ((p[0] + p[1]) + p[2]) + p[3];
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
    float *scale = (float *)(b + K + (size_t)K / 32 * 16);
    const __m512i ev = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i od = _mm512_add_epi32(ev, _mm512_set1_epi32(1));
    const __m512i ones = _mm512_set1_epi8(1);
    for (int c = 0; c < K / 128; c++) {
        const float *xc = x + (size_t)c * 128;
        __m128i lo[4], hi[4];   /* per block: the 16 bytes of each half */
        for (int blk = 0; blk < 4; blk++) {
            __m512 v0 = _mm512_loadu_ps(xc + 32 * blk), v1 = _mm512_loadu_ps(xc + 32 * blk + 16);
            float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
            _mm_storeu_ps(scale + 4 * (c * 4 + blk), _mm_set1_ps(t == W_MXFP4 ? amax / 127.0f * 0.5f : amax / 127.0f));
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
        /* block sums of the signed bytes: u8 ones x s8 values, then lanes */
        __m512i s0 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, R0);
        __m512i s1 = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, R1);
        int32_t cr[4];
        if (t == W_Q8_0) {
            cr[0] = -128 * _mm512_mask_reduce_add_epi32(0x00FF, s0);
            cr[1] = -128 * _mm512_mask_reduce_add_epi32(0xFF00, s0);
            cr[2] = -128 * _mm512_mask_reduce_add_epi32(0x00FF, s1);
            cr[3] = -128 * _mm512_mask_reduce_add_epi32(0xFF00, s1);
        } else {
            __m512i s = _mm512_add_epi32(s0, s1);
            for (int blk = 0; blk < 4; blk++)
                cr[blk] = -12 * _mm512_mask_reduce_add_epi32((__mmask16)(0xF << (4 * blk)), s);
        }
        for (int blk = 0; blk < 4; blk++) _mm_storeu_si128((__m128i *)(corr + 4 * (c * 4 + blk)), _mm_set1_epi32(cr[blk]));
    }
}

/* GGUF MXFP4, 4 blocks of [E8M0, 16 code bytes] = 68 bytes, loaded as A =
 * bytes 0..63 and B = bytes 4..67: vpermt2b indices of the code bytes
 * (block b/16, byte b%16). */
static const alignas(64) uint8_t gg_code_idx[64] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 124, 125, 126, 127};

/* e2m1_u8 four times: a vpermb table indexed by the low 6 bits */
static const alignas(64) uint8_t e2m1_u8x4[64] = {
    12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0,
    12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0, 12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

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
                    float *const *c, int ntok, kern_i8_next after) {
    if (cpu_get_features()->avx512vbmi && !kern_avx512_no_vbmi)
        kern_i8_vbmi(w, r0, nrow, x, c, ntok, after);
    else
        kern_i8_base(w, r0, nrow, x, c, ntok, after);
}

void kern_i8_gemm_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *x,
                         float *y, size_t ldy, int T, void *buf) {
    if (cpu_get_features()->avx512vbmi && !kern_avx512_no_vbmi)
        kern_i8_gemm_vbmi(w, r0, nrow, x, y, ldy, T, buf);
    else
        kern_i8_gemm_base(w, r0, nrow, x, y, ldy, T, buf);
}

void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) {
    if (cpu_get_features()->avx512vnni) q8x_quantize_avx512(t, x, K, buf);
    else kern_q8x_quantize_ref(t, x, K, buf);
}
#else
void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) { kern_q8x_quantize_ref(t, x, K, buf); }
void kern_i8_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                    float *const *c, int ntok, kern_i8_next after) { (void)w; (void)r0; (void)nrow; (void)x; (void)c; (void)ntok; (void)after; }
void kern_i8_gemm_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *x,
                         float *y, size_t ldy, int T, void *buf) { (void)w; (void)r0; (void)nrow; (void)x; (void)y; (void)ldy; (void)T; (void)buf; }
#endif
