/*
 * test_gguf_quants.c - the GGUF block formats of num/ggml_quants.c.
 *
 * Each type's dequantisation is compared bit for bit with a straightforward
 * scalar reference written here in ggml's own loop order (the library
 * decodes by value index instead, so the two are independent), on random
 * blocks.  The IQ codebooks are checked against checksums of ggml's tables.
 * Dot kernels (every ISA the CPU has) are compared with dequant + dot in
 * double; the quantisers with their defining formulas.
 */
#include "check.h"
#include "num/ggml_quants.h"
#include "num/pool.h"
#include <math.h>
#include <stdint.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float frand(void) { return (float)rnd() / 4294967296.0f * 2.0f - 1.0f; }
static float h2f(const uint8_t *p) { uint16_t h; memcpy(&h, p, 2); return ggml_f16_to_f32(h); }
static void put_f16(uint8_t *p, float f) { uint16_t h = ggml_f32_to_f16(f); memcpy(p, &h, 2); }

/* ---- references, in ggml's loop structure ---- */

static const int8_t kv_fp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

static void ref_q8_0(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int j = 0; j < 32; j++) y[j] = (int8_t)b[2 + j] * d;
}
static void ref_mxfp4(const uint8_t *b, float *y) {
    float d = ldexpf(1.0f, b[0] - 128);
    for (int j = 0; j < 16; j++) {
        y[j] = kv_fp4[b[1 + j] & 0xf] * d;
        y[j + 16] = kv_fp4[b[1 + j] >> 4] * d;
    }
}
static void ref_q2_k(const uint8_t *b, float *y) {
    const uint8_t *sc = b, *q = b + 16;
    float d = h2f(b + 80), mn = h2f(b + 82);
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            uint8_t s = sc[is++];
            float dl = d * (s & 0xF), ml = mn * (s >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l] >> shift) & 3)) - ml;
            s = sc[is++];
            dl = d * (s & 0xF); ml = mn * (s >> 4);
            for (int l = 0; l < 16; l++) *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3)) - ml;
            shift += 2;
        }
        q += 32;
    }
}
static void ref_q3_k(const uint8_t *b, float *y) {
    const uint32_t kmask1 = 0x03030303, kmask2 = 0x0f0f0f0f;
    float d_all = h2f(b + 108);
    const uint8_t *q = b + 32, *hm = b;
    uint8_t m = 1;
    uint32_t aux[4];
    memcpy(aux, b + 96, 12);
    uint32_t tmp = aux[2];
    aux[2] = ((aux[0] >> 4) & kmask2) | (((tmp >> 4) & kmask1) << 4);
    aux[3] = ((aux[1] >> 4) & kmask2) | (((tmp >> 6) & kmask1) << 4);
    aux[0] = (aux[0] & kmask2) | (((tmp >> 0) & kmask1) << 4);
    aux[1] = (aux[1] & kmask2) | (((tmp >> 2) & kmask1) << 4);
    const int8_t *scales = (const int8_t *)aux;
    int is = 0;
    for (int n = 0; n < 256; n += 128) {
        int shift = 0;
        for (int j = 0; j < 4; j++) {
            float dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * ((int8_t)((q[l] >> shift) & 3) - ((hm[l] & m) ? 0 : 4));
            dl = d_all * (scales[is++] - 32);
            for (int l = 0; l < 16; l++)
                *y++ = dl * ((int8_t)((q[l + 16] >> shift) & 3) - ((hm[l + 16] & m) ? 0 : 4));
            shift += 2; m <<= 1;
        }
        q += 32;
    }
}
static void get_sm(int j, const uint8_t *q, uint8_t *d, uint8_t *m) {
    if (j < 4) { *d = q[j] & 63; *m = q[j + 4] & 63; }
    else { *d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4); *m = (q[j + 4] >> 4) | ((q[j - 0] >> 6) << 4); }
}
static void ref_q4_k(const uint8_t *b, float *y) {
    float d = h2f(b), mn = h2f(b + 2);
    const uint8_t *sc = b + 4, *q = b + 16;
    int is = 0;
    for (int j = 0; j < 256; j += 64) {
        uint8_t s, m;
        get_sm(is, sc, &s, &m); float d1 = d * s, m1 = mn * m;
        get_sm(is + 1, sc, &s, &m); float d2 = d * s, m2 = mn * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
        q += 32; is += 2;
    }
}
static void ref_q5_k(const uint8_t *b, float *y) {
    float d = h2f(b), mn = h2f(b + 2);
    const uint8_t *sc = b + 4, *qh = b + 16, *ql = b + 48;
    int is = 0; uint8_t u1 = 1, u2 = 2;
    for (int j = 0; j < 256; j += 64) {
        uint8_t s, m;
        get_sm(is, sc, &s, &m); float d1 = d * s, m1 = mn * m;
        get_sm(is + 1, sc, &s, &m); float d2 = d * s, m2 = mn * m;
        for (int l = 0; l < 32; l++) *y++ = d1 * ((ql[l] & 0xF) + (qh[l] & u1 ? 16 : 0)) - m1;
        for (int l = 0; l < 32; l++) *y++ = d2 * ((ql[l] >> 4) + (qh[l] & u2 ? 16 : 0)) - m2;
        ql += 32; is += 2; u1 <<= 2; u2 <<= 2;
    }
}
static void ref_q6_k(const uint8_t *b, float *y) {
    float d = h2f(b + 208);
    const uint8_t *ql = b, *qh = b + 128;
    const int8_t *sc = (const int8_t *)(b + 192);
    for (int n = 0; n < 256; n += 128) {
        for (int l = 0; l < 32; l++) {
            int is = l / 16;
            int8_t q1 = (int8_t)((ql[l] & 0xF) | (((qh[l] >> 0) & 3) << 4)) - 32;
            int8_t q2 = (int8_t)((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) - 32;
            int8_t q3 = (int8_t)((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32;
            int8_t q4 = (int8_t)((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32;
            y[l] = d * sc[is] * q1;
            y[l + 32] = d * sc[is + 2] * q2;
            y[l + 64] = d * sc[is + 4] * q3;
            y[l + 96] = d * sc[is + 6] * q4;
        }
        y += 128; ql += 64; qh += 32; sc += 8;
    }
}

/* For the IQ formats the reference needs the codebooks; the library's
 * are checked against ggml's checksums below, and the references read the
 * codebook back through the library (a block whose only nonzero field is
 * one grid index), so the sign/scale logic here is still independent. */
static uint8_t grid2[256][8], grid3[256][4];
static void load_grids(void) {
    uint8_t b[98];
    float y[256];
    for (int k = 0; k < 256; k++) {
        memset(b, 0, sizeof b);
        put_f16(b, 8.0f);           /* db = 8 * 0.5 * 0.25 = 1 */
        b[2] = (uint8_t)k;
        ggml_dequant_row(W_IQ2_XXS, b, y, 256);
        for (int j = 0; j < 8; j++) grid2[k][j] = (uint8_t)y[j];
        memset(b, 0, sizeof b);
        put_f16(b, 4.0f);           /* db = 4 * 0.5 * 0.5 = 1 */
        b[2] = (uint8_t)k;
        ggml_dequant_row(W_IQ3_XXS, b, y, 256);
        for (int j = 0; j < 4; j++) grid3[k][j] = (uint8_t)y[j];
    }
}
static uint8_t sign_byte(int i) { return (uint8_t)(i | ((__builtin_popcount(i) & 1) << 7)); }
static void ref_iq2_xxs(const uint8_t *b, float *y) {
    float d = h2f(b);
    for (int ib = 0; ib < 8; ib++) {
        uint32_t a[2];
        memcpy(a, b + 2 + 8 * ib, 8);
        const uint8_t *a8 = (const uint8_t *)a;
        float db = d * (0.5f + (a[1] >> 28)) * 0.25f;
        for (int l = 0; l < 4; l++) {
            uint8_t signs = sign_byte((a[1] >> 7 * l) & 127);
            for (int j = 0; j < 8; j++) y[j] = db * grid2[a8[l]][j] * (signs & (1 << j) ? -1.f : 1.f);
            y += 8;
        }
    }
}
static void ref_iq3_xxs(const uint8_t *b, float *y) {
    float d = h2f(b);
    const uint8_t *qs = b + 2, *ss = b + 66;
    for (int ib = 0; ib < 8; ib++) {
        uint32_t a; memcpy(&a, ss + 4 * ib, 4);
        float db = d * (0.5f + (a >> 28)) * 0.5f;
        for (int l = 0; l < 4; l++) {
            uint8_t signs = sign_byte((a >> 7 * l) & 127);
            for (int j = 0; j < 4; j++) {
                y[j] = db * grid3[qs[2 * l]][j] * (signs & (1 << j) ? -1.f : 1.f);
                y[j + 4] = db * grid3[qs[2 * l + 1]][j] * (signs & (1 << (j + 4)) ? -1.f : 1.f);
            }
            y += 8;
        }
        qs += 8;
    }
}

typedef void (*ref_fn)(const uint8_t *, float *);
static const struct { wtype t; const char *name; int bv; size_t bb; ref_fn ref; int f16_at[2]; } types[] = {
    {W_Q8_0, "Q8_0", 32, 34, ref_q8_0, {0, -1}},
    {W_GG_MXFP4, "MXFP4", 32, 17, ref_mxfp4, {-1, -1}},
    {W_Q2_K, "Q2_K", 256, 84, ref_q2_k, {80, 82}},
    {W_Q3_K, "Q3_K", 256, 110, ref_q3_k, {108, -1}},
    {W_Q4_K, "Q4_K", 256, 144, ref_q4_k, {0, 2}},
    {W_Q5_K, "Q5_K", 256, 176, ref_q5_k, {0, 2}},
    {W_Q6_K, "Q6_K", 256, 210, ref_q6_k, {208, -1}},
    {W_IQ2_XXS, "IQ2_XXS", 256, 66, ref_iq2_xxs, {0, -1}},
    {W_IQ3_XXS, "IQ3_XXS", 256, 98, ref_iq3_xxs, {0, -1}},
};
#define NT (int)(sizeof types / sizeof types[0])

/* Random blocks whose f16 fields are sane scales; MXFP4 exponents kept in
 * a range where values stay normal floats. */
static void random_blocks(int ti, uint8_t *buf, int nblocks) {
    for (int b = 0; b < nblocks; b++) {
        uint8_t *p = buf + (size_t)b * types[ti].bb;
        for (size_t i = 0; i < types[ti].bb; i++) p[i] = (uint8_t)rnd();
        for (int k = 0; k < 2; k++)
            if (types[ti].f16_at[k] >= 0) put_f16(p + types[ti].f16_at[k], frand() * 0.05f);
        if (types[ti].t == W_GG_MXFP4) p[0] = (uint8_t)(110 + rnd() % 30);
    }
}

TEST(sizes) {
    for (int i = 0; i < NT; i++) {
        CHECK(ggml_block_values(types[i].t) == types[i].bv, "%s block values", types[i].name);
        CHECK(ggml_block_bytes(types[i].t) == types[i].bb, "%s block bytes", types[i].name);
        CHECK(ggml_row_size(types[i].t, 4096) == 4096 / types[i].bv * types[i].bb, "%s row size", types[i].name);
    }
    CHECK(ggml_row_size(W_F16, 10) == 20, "f16 row");
    CHECK(ggml_row_size(W_Q4_K, 100) == 0, "non-multiple gives 0");
    CHECK(ggml_row_size(W_BF16, 256) == 0, "bf16 not a ggml-block type here");
}

TEST(grids) {
    /* ggml's iq2xxs_grid (uint64 entries) and iq3xxs_grid (uint32): sums
     * of all entries and the first/last entries. */
    uint64_t s2 = 0, s3 = 0, first2 = 0, last2 = 0, first3 = 0, last3 = 0;
    for (int k = 0; k < 256; k++) {
        uint64_t v2 = 0, v3 = 0;
        for (int j = 0; j < 8; j++) v2 |= (uint64_t)grid2[k][j] << (8 * j);
        for (int j = 0; j < 4; j++) v3 |= (uint64_t)grid3[k][j] << (8 * j);
        s2 += v2; s3 += v3;
        if (k == 0) { first2 = v2; first3 = v3; }
        if (k == 255) { last2 = v2; last3 = v3; }
    }
    CHECK(s2 == 10026840302681211747ull, "iq2xxs grid sum %llu", (unsigned long long)s2);
    CHECK(s3 == 108356387642ull, "iq3xxs grid sum %llu", (unsigned long long)s3);
    CHECK(first2 == 0x0808080808080808ull && last2 == 0x2b2b2b1908081908ull, "iq2 ends");
    CHECK(first3 == 0x04040404ull && last3 == 0x3e341c04ull, "iq3 ends");
}

TEST(dequant_vs_reference) {
    enum { NB = 64 };
    static uint8_t buf[NB * 210];
    static float a[NB * 256], r[NB * 256];
    for (int i = 0; i < NT; i++) {
        for (int rep = 0; rep < 4; rep++) {
            random_blocks(i, buf, NB);
            int cols = NB * types[i].bv;
            ggml_dequant_row(types[i].t, buf, a, cols);
            for (int b = 0; b < NB; b++) types[i].ref(buf + b * types[i].bb, r + b * types[i].bv);
            int bad = 0;
            for (int c = 0; c < cols; c++) if (memcmp(&a[c], &r[c], 4)) bad++;
            CHECK(bad == 0, "%s: %d of %d values differ from the reference", types[i].name, bad, cols);
        }
    }
    /* F16 row */
    uint8_t h[64]; float out[32];
    for (int j = 0; j < 32; j++) put_f16(h + 2 * j, (float)j * 0.25f - 3.0f);
    ggml_dequant_row(W_F16, h, out, 32);
    int ok = 1;
    for (int j = 0; j < 32; j++) ok &= out[j] == (float)j * 0.25f - 3.0f;
    CHECK(ok, "f16 row dequant");
}

TEST(f16_conversion) {
    int bad = 0;
    for (uint32_t u = 0; u < 65536; u++) {
        if ((u & 0x7c00) == 0x7c00 && (u & 0x3ff)) continue;   /* NaN */
        float f = ggml_f16_to_f32((uint16_t)u);
        if (ggml_f32_to_f16(f) != u) bad++;
    }
    CHECK(bad == 0, "%d halves do not round-trip", bad);
    CHECK(ggml_f16_to_f32(0x3c00) == 1.0f && ggml_f16_to_f32(0x0001) == 0x1p-24f, "known halves");
    CHECK(ggml_f32_to_f16(1.0f + 0x1p-11f) == 0x3c00, "tie to even (down)");
    CHECK(ggml_f32_to_f16(1.0f + 3 * 0x1p-11f) == 0x3c02, "tie to even (up)");
    CHECK(ggml_f32_to_f16(65520.0f) == 0x7c00 && ggml_f32_to_f16(65504.0f) == 0x7bff, "overflow edge");
    CHECK(ggml_f32_to_f16(0x1p-25f) == 0 && ggml_f32_to_f16(0x1.8p-25f) == 1, "subnormal rounding");
}

TEST(quantisers) {
    enum { N = 1024 };
    float x[N], y[N];
    uint8_t q[N * 2];
    for (int i = 0; i < N; i++) x[i] = frand() * (i % 64 == 0 ? 4.0f : 1.0f);
    /* Q8_0: |x - y| <= d/2 (+ f16 rounding of d) */
    CHECK(ggml_quantize_row(W_Q8_0, x, q, N) == (size_t)N / 32 * 34, "q8_0 size");
    ggml_dequant_row(W_Q8_0, q, y, N);
    int bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * b + j]));
        float d = amax / 127;
        for (int j = 0; j < 32; j++) if (fabsf(x[32 * b + j] - y[32 * b + j]) > d * 0.502f + amax * 1e-3f) bad++;
    }
    CHECK(bad == 0, "q8_0 error bound violated %d times", bad);
    /* MXFP4: every value is the nearest representable one under the
     * block's scale, and exactly representable inputs come back exactly */
    ggml_quantize_row(W_GG_MXFP4, x, q, N);
    ggml_dequant_row(W_GG_MXFP4, q, y, N);
    bad = 0;
    for (int b = 0; b < N / 32; b++) {
        float d = ldexpf(1.0f, q[17 * b] - 128);
        for (int j = 0; j < 32; j++) {
            float best = 1e30f;
            for (int k = 0; k < 16; k++) best = fminf(best, fabsf(kv_fp4[k] * d - x[32 * b + j]));
            if (fabsf(y[32 * b + j] - x[32 * b + j]) != best) bad++;
        }
    }
    CHECK(bad == 0, "mxfp4 not nearest %d times", bad);
    for (int i = 0; i < N; i++) x[i] = kv_fp4[rnd() & 15] * 0.25f;
    x[0] = 3.0f;   /* amax 3 -> e = 1 - 2 + 127, d = 2^-2: exact grid */
    for (int b = 0; b < N / 32; b++) x[32 * b] = 3.0f;
    ggml_quantize_row(W_GG_MXFP4, x, q, N);
    ggml_dequant_row(W_GG_MXFP4, q, y, N);
    CHECK(!memcmp(x, y, sizeof x), "mxfp4 exact values round-trip");
    CHECK(ggml_quantize_row(W_Q4_K, x, q, N) == 0 && !ggml_can_quantize(W_Q4_K), "no k-quant quantiser");
}

static double ddot(const float *a, const float *b, int n, double *mag) {
    double s = 0, m = 0;
    for (int i = 0; i < n; i++) { s += (double)a[i] * b[i]; m += fabs((double)a[i] * b[i]); }
    *mag = m;
    return s;
}

TEST(dot_kernels) {
    enum { ROWS = 7, COLS = 1024 };
    static uint8_t w[ROWS * COLS * 2];
    static float x[COLS], wf[COLS], xd[COLS], y[ROWS];
    static ggml_q8x xq[COLS / 32];
    const char *isas[] = {"portable", "avx2", "avx512"};
    for (int i = 0; i < COLS; i++) x[i] = frand();
    ggml_quantize_x_q8(x, COLS, xq);
    for (int b = 0; b < COLS / 32; b++) {
        int s0 = 0, s1 = 0;
        for (int j = 0; j < 32; j++) {
            xd[32 * b + j] = xq[b].d * xq[b].q[j];
            if (j < 16) s0 += xq[b].q[j]; else s1 += xq[b].q[j];
        }
        CHECK(s0 == xq[b].sum16[0] && s1 == xq[b].sum16[1], "q8x sums");
    }
    int nisa = 0;
    for (int k = 0; k < 3; k++) {
        if (ggml_force_isa(isas[k]) != 0) continue;
        nisa++;
        for (int i = -1; i < NT; i++) {
            wtype t = i < 0 ? W_F16 : types[i].t;
            size_t rs = ggml_row_size(t, COLS);
            if (i < 0) for (int j = 0; j < ROWS * COLS; j++) put_f16(w + 2 * j, frand());
            else random_blocks(i, w, ROWS * COLS / types[i].bv);
            int badf = 0, badq = 0;
            ggml_vec_dot_rows(t, w, rs, ROWS, x, COLS, y);
            for (int r = 0; r < ROWS; r++) {
                double mag;
                ggml_dequant_row(t, w + r * rs, wf, COLS);
                double ref = ddot(wf, x, COLS, &mag);
                if (fabs(y[r] - ref) > 1e-5 * mag + 1e-30) badf++;
            }
            ggml_vec_dot_rows_q8(t, w, rs, ROWS, xq, COLS, y);
            for (int r = 0; r < ROWS; r++) {
                double mag;
                ggml_dequant_row(t, w + r * rs, wf, COLS);
                double ref = ddot(wf, xd, COLS, &mag);
                if (fabs(y[r] - ref) > 1e-5 * mag + 1e-30) badq++;
            }
            CHECK(badf == 0, "%s %s float dot: %d rows off", isas[k], i < 0 ? "F16" : types[i].name, badf);
            CHECK(badq == 0, "%s %s int8 dot: %d rows off", isas[k], i < 0 ? "F16" : types[i].name, badq);
        }
    }
    ggml_force_isa(NULL);
    CHECK(nisa >= 1, "at least the portable kernels ran");
    fprintf(stderr, "dot kernels checked on %d ISA(s); dispatcher picks %s\n", nisa, ggml_isa());
}

TEST(threaded_linear) {
    enum { R = 37, K = 512, T = 3 };
    static uint8_t w[R * K * 2];
    static float x[T * K], y[T * R], row[K];
    dsv4_pool *pool = pool_new(2);
    for (int i = 0; i < T * K; i++) x[i] = frand();
    for (int i = 0; i < NT; i++) {
        if (K % types[i].bv) continue;
        random_blocks(i, w, R * K / types[i].bv);
        dsv4_weight wt = {.type = types[i].t, .rows = R, .cols = K, .data = w, .name = types[i].name};
        CHECK(ggml_linear_supports(&wt), "%s supported", types[i].name);
        for (int q8 = 0; q8 < 2; q8++) {
            ggml_linear(&wt, x, T, y, q8, pool);
            int bad = 0;
            for (int r = 0; r < R; r++) {
                ggml_dequant_row(types[i].t, w + r * ggml_row_size(types[i].t, K), row, K);
                for (int t = 0; t < T; t++) {
                    double mag, ref = ddot(row, x + t * K, K, &mag);
                    if (fabs(y[t * R + r] - ref) > (q8 ? 2e-2 : 1e-5) * mag) bad++;
                }
            }
            CHECK(bad == 0, "%s ggml_linear (int8 %d): %d products off", types[i].name, q8, bad);
        }
    }
    dsv4_weight bf = {.type = W_BF16, .rows = 1, .cols = 64};
    CHECK(!ggml_linear_supports(&bf), "bf16 is not a ggml block type");
    pool_free(pool);
}

int main(void) {
    load_grids();
    RUN(sizes);
    RUN(grids);
    RUN(dequant_vs_reference);
    RUN(f16_conversion);
    RUN(quantisers);
    RUN(dot_kernels);
    RUN(threaded_linear);
    return check_summary();
}
