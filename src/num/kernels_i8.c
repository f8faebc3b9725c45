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

/* Byte L/4 of a broadcast dword into the low byte of lane L. */
INL __m512i spread4(int32_t four) {
    const __m512i sidx = _mm512_set_epi8(
        -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3, -1, -1, -1, 3,
        -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2, -1, -1, -1, 2,
        -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1, -1, -1, -1, 1,
        -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0, -1, -1, -1, 0);
    return _mm512_shuffle_epi8(_mm512_set1_epi32(four), sidx);
}

INL uint8_t sat_dec(uint8_t e) { return e ? (uint8_t)(e - 1) : 0; }

/* NR rows x NT tokens, all columns, for one weight format TY.  Rows past
 * nrow repeat row 0 (their results are not stored). */
INL void i8_nt(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
               float *const *c, const int NT, const int NR, const wtype TY) {
    const int K = w->cols, nc = K / 128;
    const size_t rb = TY == W_MXFP4 ? (size_t)K / 2 : TY == W_GG_MXFP4 ? (size_t)K / 32 * 17 : (size_t)K / 32 * 34;
    const __m512i lut = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)e2m1_u8));
    const __m512i m4 = _mm512_set1_epi8(0x0F), flip = _mm512_set1_epi8((char)0x80);
    const uint8_t *p[8], *s[8];
    UNROLL for (int i = 0; i < NR; i++) {
        int r = r0 + (i < nrow ? i : 0);
        p[i] = (const uint8_t *)w->data + (size_t)r * rb;
        s[i] = TY == W_MXFP4 ? w->scale + (size_t)r * w->scale_cols : NULL;
    }
    /* Prefetch the next group of rows (contiguous: NR x rb bytes) in
     * address order, one chunk's worth per (chunk, row): one sequential DRAM
     * stream per thread instead of NR interleaved ones (read test, 2
     * threads: 8 interleaved streams 37 GB/s, in order 48 GB/s). */
    const uint8_t *next = p[0] + (size_t)NR * rb;
    const size_t ahead_s = TY == W_MXFP4 ? (size_t)NR * w->scale_cols : 0;
    const size_t cb = TY == W_MXFP4 ? 64 : TY == W_GG_MXFP4 ? 68 : 136;   /* bytes per chunk */
    const int lanes = TY == W_Q8_0 ? 32 : 16;
    __m512 acc[4][8];
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++) acc[t][i] = _mm512_setzero_ps();
    for (int ch = 0; ch < nc; ch++) {
        UNROLL for (int i = 0; i < NR; i++) {
            const uint8_t *pp = p[i] + (size_t)ch * cb;
            {
                const char *pf = (const char *)next + ((size_t)ch * NR + (size_t)i) * cb;
                _mm_prefetch(pf, _MM_HINT_T0);
                if (TY != W_MXFP4) _mm_prefetch(pf + 64, _MM_HINT_T0);
                if (TY == W_Q8_0) _mm_prefetch(pf + 128, _MM_HINT_T0);
            }
            __m512i u0, u1;
            __m512 ws0, ws1 = _mm512_setzero_ps();
            if (TY == W_Q8_0) {
                u0 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 2))),
                                        _mm256_loadu_si256((const __m256i *)(pp + 36)), 1);
                u1 = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(pp + 70))),
                                        _mm256_loadu_si256((const __m256i *)(pp + 104)), 1);
                u0 = _mm512_xor_si512(u0, flip);
                u1 = _mm512_xor_si512(u1, flip);
                uint16_t h[4];
                memcpy(&h[0], pp, 2); memcpy(&h[1], pp + 34, 2); memcpy(&h[2], pp + 68, 2); memcpy(&h[3], pp + 102, 2);
                __m128 d4 = _mm_cvtph_ps(_mm_loadl_epi64((const __m128i *)h));
                __m512 dd = _mm512_broadcast_f32x4(d4);
                ws0 = _mm512_permutexvar_ps(_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0), dd);
                ws1 = _mm512_permutexvar_ps(_mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2), dd);
            } else {
                __m512i wv;
                int32_t sb;
                if (TY == W_MXFP4) {
                    if (!(ch & 15)) _mm_prefetch((const char *)(s[i] + ahead_s + ch * 4), _MM_HINT_T0);
                    wv = _mm512_loadu_si512((const void *)pp);
                    memcpy(&sb, s[i] + ch * 4, 4);
                } else {
                    wv = _mm512_inserti32x4(_mm512_inserti32x4(_mm512_inserti32x4(
                             _mm512_castsi128_si512(_mm_loadu_si128((const __m128i *)(pp + 1))),
                             _mm_loadu_si128((const __m128i *)(pp + 18)), 1),
                             _mm_loadu_si128((const __m128i *)(pp + 35)), 2),
                             _mm_loadu_si128((const __m128i *)(pp + 52)), 3);
                    sb = (int32_t)((uint32_t)sat_dec(pp[0]) | (uint32_t)sat_dec(pp[17]) << 8 |
                                   (uint32_t)sat_dec(pp[34]) << 16 | (uint32_t)sat_dec(pp[51]) << 24);
                }
                u0 = _mm512_shuffle_epi8(lut, _mm512_and_si512(wv, m4));
                u1 = _mm512_shuffle_epi8(lut, _mm512_and_si512(_mm512_srli_epi16(wv, 4), m4));
                ws0 = _mm512_castsi512_ps(_mm512_slli_epi32(spread4(sb), 23));
            }
            UNROLL for (int t = 0; t < NT; t++) {
                const int8_t *q = x[t]->q + (size_t)ch * 128;
                const int32_t *cr = x[t]->corr + ch * lanes;
                const float *xs = x[t]->scale + ch * lanes;
                if (TY == W_Q8_0) {
                    __m512i s0 = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)cr), u0,
                                                     _mm512_loadu_si512((const void *)q));
                    __m512i s1 = _mm512_dpbusd_epi32(_mm512_loadu_si512((const void *)(cr + 16)), u1,
                                                     _mm512_loadu_si512((const void *)(q + 64)));
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s0), _mm512_mul_ps(ws0, _mm512_loadu_ps(xs)), acc[t][i]);
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(s1), _mm512_mul_ps(ws1, _mm512_loadu_ps(xs + 16)), acc[t][i]);
                } else {
                    __m512i sum = _mm512_loadu_si512((const void *)cr);
                    sum = _mm512_dpbusd_epi32(sum, u0, _mm512_loadu_si512((const void *)q));
                    sum = _mm512_dpbusd_epi32(sum, u1, _mm512_loadu_si512((const void *)(q + 64)));
                    acc[t][i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sum), _mm512_mul_ps(ws0, _mm512_loadu_ps(xs)), acc[t][i]);
                }
            }
        }
    }
    UNROLL for (int t = 0; t < NT; t++)
        UNROLL for (int i = 0; i < NR; i++)
            if (i < nrow) c[t][i] = _mm512_reduce_add_ps(acc[t][i]);
}

#define I8_TY(NT, NR)                                                                   \
    switch (w->type) {                                                                  \
    case W_MXFP4: i8_nt(w, r0 + i, n, x, ci, NT, NR, W_MXFP4); break;                   \
    case W_GG_MXFP4: i8_nt(w, r0 + i, n, x, ci, NT, NR, W_GG_MXFP4); break;             \
    default: i8_nt(w, r0 + i, n, x, ci, NT, NR, W_Q8_0); break;                         \
    }

TGT void kern_i8_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                        float *const *c, int ntok) {
    /* 8 rows per pass for one or two tokens, else 4: at most 16
     * accumulator chains */
    for (int i = 0; i < nrow;) {
        int n = nrow - i;
        float *ci[4];
        for (int t = 0; t < 4; t++) ci[t] = c[t] + i;
        if (ntok <= 2 && n >= 8) {
            n = 8;
            if (ntok == 1) { I8_TY(1, 8) } else { I8_TY(2, 8) }
        } else {
            if (n > 4) n = 4;
            switch (ntok) {
            case 1: I8_TY(1, 4) break;
            case 2: I8_TY(2, 4) break;
            case 3: I8_TY(3, 4) break;
            default: I8_TY(4, 4) break;
            }
        }
        i += n;
    }
}

void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) {
    if (cpu_get_features()->avx512vnni) q8x_quantize_avx512(t, x, K, buf);
    else kern_q8x_quantize_ref(t, x, K, buf);
}
#else
void kern_q8x_quantize(wtype t, const float *x, int K, void *buf) { kern_q8x_quantize_ref(t, x, K, buf); }
#endif
