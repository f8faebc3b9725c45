/*
 * test_kernels.c - every fast kernel (num/kernels_*.c) against the
 * reference linear_ref on random weights of every supported format, for
 * each ISA family the CPU has, GEMV and GEMM paths, row counts that are
 * not multiples of the tiles, T = 1, 2, 3, 7, 64 tokens, with and without
 * the thread pool.
 *
 * Error bound per output: |y - y_ref| <= tol * sum_k |w_k x_k| (+ tiny),
 * tol 2e-6 for FP32 numerics, 8e-3 for BF16 activations (FAST mode).
 */
#include "check.h"
#include "num/cpu.h"
#include "num/ggml_quants.h"
#include "num/kernels.h"
#include "num/kernels_common.h"
#include "num/linear.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include <math.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return (float)((rnd() & 0xffffff) / 8388608.0 - 1.0); }

typedef struct {
    dsv4_weight w;
    void *data;
    uint8_t *scale;
} test_weight;

static test_weight make_weight(wtype t, int rows, int cols) {
    test_weight tw = {0};
    size_t n = (size_t)rows * cols;
    tw.w.type = t; tw.w.rows = rows; tw.w.cols = cols; tw.w.name = "test";
    switch (t) {
    case W_F32: {
        float *p = malloc(n * 4);
        for (size_t i = 0; i < n; i++) p[i] = rndf();
        tw.data = p;
        break;
    }
    case W_BF16: {
        uint16_t *p = malloc(n * 2);
        for (size_t i = 0; i < n; i++) p[i] = f32_to_bf16(rndf() * 0.5f);
        tw.data = p;
        break;
    }
    case W_FP8: {
        uint8_t *p = malloc(n);
        for (size_t i = 0; i < n; i++) {
            uint8_t b;
            do b = (uint8_t)rnd(); while ((b & 0x7f) == 0x7f);   /* no NaN */
            p[i] = b;
        }
        tw.data = p;
        tw.w.scale_cols = (cols + 127) / 128;
        size_t ns = (size_t)((rows + 127) / 128) * tw.w.scale_cols;
        tw.scale = malloc(ns);
        for (size_t i = 0; i < ns; i++) tw.scale[i] = (uint8_t)(120 + rnd() % 8);
        break;
    }
    case W_MXFP4: {
        uint8_t *p = malloc(n / 2);
        for (size_t i = 0; i < n / 2; i++) p[i] = (uint8_t)rnd();
        tw.data = p;
        tw.w.scale_cols = cols / 32;
        size_t ns = (size_t)rows * tw.w.scale_cols;
        tw.scale = malloc(ns);
        for (size_t i = 0; i < ns; i++) tw.scale[i] = (uint8_t)(122 + rnd() % 8);
        break;
    }
    default: break;
    }
    tw.w.data = tw.data;
    tw.w.scale = tw.scale;
    return tw;
}

static void free_weight(test_weight *tw) { free(tw->data); free(tw->scale); }

/* sum_k |w_k x_k| for every output: the scale of rounding errors. */
static void abs_dot(const dsv4_weight *w, const float *x, int T, double *out) {
    float *row = malloc((size_t)w->cols * 4);
    for (int r = 0; r < w->rows; r++) {
        weight_row_f32(w, r, row);
        for (int t = 0; t < T; t++) {
            double s = 0;
            for (int c = 0; c < w->cols; c++) s += fabs((double)row[c] * x[(size_t)t * w->cols + c]);
            out[(size_t)t * w->rows + r] = s;
        }
    }
    free(row);
}

static const char *tname(wtype t) {
    switch (t) {
    case W_F32: return "f32";
    case W_BF16: return "bf16";
    case W_FP8: return "fp8";
    case W_MXFP4: return "mxfp4";
    default: return "?";
    }
}

/* Worst error relative to the bound over all outputs. */
static double worst(const float *y, const float *ref, const double *ad, size_t n, double tol) {
    double w = 0;
    for (size_t i = 0; i < n; i++) {
        double e = fabs((double)y[i] - ref[i]) / (tol * ad[i] + 1e-30);
        if (!(e == e)) return INFINITY;   /* NaN */
        if (e > w) w = e;
    }
    return w;
}

static dsv4_pool *pool2;

static void check_one(const kern_set *ks, wtype type, int rows, int cols, int T) {
    test_weight tw = make_weight(type, rows, cols);
    size_t ny = (size_t)T * rows;
    float *x = malloc((size_t)T * cols * 4), *ref = malloc(ny * 4), *y = malloc(ny * 4);
    double *ad = malloc(ny * sizeof(double));
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = rndf() * 2.0f;
    linear_ref(&tw.w, x, T, ref, DSV4_MODE_FP32, 0, NULL);
    abs_dot(&tw.w, x, T, ad);
    int saved = kern_gemm_min_t;
    float *yg = malloc(ny * 4);
    for (int path = 0; path < 3; path++) {          /* 0 GEMV, 1 GEMM, 2 fused GEMV */
        kern_gemm_min_t = path == 1 ? 1 : 1 << 30;
        kern_batch_invariant = path == 2;
        for (int bf16 = 0; bf16 < 2; bf16++) {
            for (int usepool = 0; usepool < 2; usepool++) {
                for (size_t i = 0; i < ny; i++) y[i] = NAN;
                kern_linear(ks, &tw.w, x, T, y, bf16, usepool ? pool2 : NULL);
                int lowp = bf16 && ks->tile_bf16 && type != W_F32;
                double tol = lowp ? 8e-3 : 2e-6;
                double e = worst(y, ref, ad, ny, tol);
                static const char *pn[] = {"gemv", "gemm", "fused"};
                CHECK(e <= 1.0, "%s %s %dx%d T=%d %s%s%s: error %.3g x bound", ks->name, tname(type),
                      rows, cols, T, pn[path], bf16 ? " bf16" : "", usepool ? " pool" : "", e);
                /* batch invariance: the GEMM and the few-token path of sets
                 * with BF16 tiles agree bit for bit */
                if (path == 1 && !usepool) memcpy(yg, y, ny * 4);
                if (path == 2 && ks->tile_bf16) {
                    kern_gemm_min_t = 1;
                    kern_linear(ks, &tw.w, x, T, yg, bf16, NULL);
                    kern_gemm_min_t = 1 << 30;
                    CHECK(!memcmp(y, yg, ny * 4), "%s %s %dx%d T=%d%s: fused GEMV differs from GEMM", ks->name,
                          tname(type), rows, cols, T, bf16 ? " bf16" : "");
                }
            }
        }
    }
    kern_gemm_min_t = saved;
    kern_batch_invariant = 1;
    free(x); free(ref); free(y); free(ad); free(yg);
    free_weight(&tw);
}

static const int shapes[][2] = {{1, 64}, {37, 128}, {130, 256}, {67, 320}, {300, 192}, {16, 1024}};
static const int Ts[] = {1, 2, 3, 7, 64};

static void run_set(cpu_isa_level lvl) {
    const kern_set *ks = kern_for_isa(lvl);
    const wtype types[] = {W_F32, W_BF16, W_FP8, W_MXFP4};
    for (size_t ti = 0; ti < 4; ti++)
        for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
            for (size_t k = 0; k < sizeof Ts / sizeof Ts[0]; k++)
                check_one(ks, types[ti], shapes[s][0], shapes[s][1], Ts[k]);
}

/* Scales at the edge of the normal BF16 range take another conversion
 * route in the AVX-512 FAST kernels (the lookup tables cover the usual
 * ones): rows mixing both must still give the GEMM's bits in the fused
 * GEMV, and finite results. */
static void check_extreme_scales(const kern_set *ks) {
    const wtype types[] = {W_FP8, W_MXFP4};
    for (int ti = 0; ti < 2; ti++)
        for (int T = 1; T <= 4; T += 3) {
            int rows = 260, cols = 384;
            test_weight tw = make_weight(types[ti], rows, cols);
            size_t ns = types[ti] == W_FP8 ? (size_t)3 * tw.w.scale_cols : (size_t)rows * tw.w.scale_cols;
            for (size_t i = 0; i < ns; i++)
                tw.scale[i] = (uint8_t)(i % 3 ? 124 : types[ti] == W_FP8 ? 6 + i % 7 : i % 5);
            size_t ny = (size_t)T * rows;
            float *x = malloc((size_t)T * cols * 4), *y = malloc(ny * 4), *yg = malloc(ny * 4);
            for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = rndf() * 2.0f;
            int saved = kern_gemm_min_t;
            kern_gemm_min_t = 1;
            kern_linear(ks, &tw.w, x, T, yg, 1, NULL);
            kern_gemm_min_t = 1 << 30;
            kern_linear(ks, &tw.w, x, T, y, 1, NULL);
            kern_gemm_min_t = saved;
            int finite = 1;
            for (size_t i = 0; i < ny; i++) finite &= isfinite(y[i]);
            CHECK(finite, "%s %s extreme scales T=%d: non-finite output", ks->name, tname(types[ti]), T);
            if (ks->tile_bf16)
                CHECK(!memcmp(y, yg, ny * 4), "%s %s extreme scales T=%d: fused GEMV differs from GEMM",
                      ks->name, tname(types[ti]), T);
            free(x); free(y); free(yg);
            free_weight(&tw);
        }
}

TEST(kernels_extreme_scales) {
    check_extreme_scales(&kern_c);
    if (cpu_best_isa() >= ISA_AVX2) check_extreme_scales(kern_for_isa(ISA_AVX2));
    if (cpu_best_isa() >= ISA_AVX512) check_extreme_scales(kern_for_isa(ISA_AVX512));
}

TEST(kernels_c) { run_set(ISA_C); }
TEST(kernels_avx2) {
    if (cpu_best_isa() < ISA_AVX2) { fprintf(stderr, "skip: no AVX2\n"); return; }
    run_set(ISA_AVX2);
}
TEST(kernels_avx512) {
    if (cpu_best_isa() < ISA_AVX512) { fprintf(stderr, "skip: no AVX-512 BF16\n"); return; }
    run_set(ISA_AVX512);
    kern_avx512_no_vbmi = 1;          /* the paths for AVX-512 BF16 CPUs without VBMI */
    check_extreme_scales(kern_for_isa(ISA_AVX512));
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++)
        for (size_t k = 0; k < 3; k++) {
            check_one(kern_for_isa(ISA_AVX512), W_FP8, shapes[s][0], shapes[s][1], Ts[k]);
            check_one(kern_for_isa(ISA_AVX512), W_MXFP4, shapes[s][0], shapes[s][1], Ts[k]);
        }
    kern_avx512_no_vbmi = 0;
}

/* linear(): EXACT stays the reference bit for bit; unsupported shapes and
 * formats fall back to the reference; FP32/FAST go through the fast path
 * of the current ISA and stay within bounds. */
TEST(dispatch) {
    test_weight tw = make_weight(W_FP8, 200, 256);
    int T = 5;
    float x[5 * 256], a[5 * 200], b[5 * 200];
    for (int i = 0; i < T * 256; i++) x[i] = rndf();
    linear(&tw.w, x, T, a, DSV4_MODE_EXACT, 0, pool2);
    linear_ref(&tw.w, x, T, b, DSV4_MODE_EXACT, 0, NULL);
    CHECK(!memcmp(a, b, sizeof a), "EXACT mode must be bit-identical to linear_ref");
    free_weight(&tw);

    test_weight odd = make_weight(W_BF16, 9, 96);   /* cols % 64 != 0 -> reference */
    CHECK(!kern_supports(&odd.w), "96 columns are not for the fast kernels");
    float xo[2 * 96], yo[2 * 9], ro[2 * 9];
    for (int i = 0; i < 2 * 96; i++) xo[i] = rndf();
    linear(&odd.w, xo, 2, yo, DSV4_MODE_FAST, 0, pool2);
    linear_ref(&odd.w, xo, 2, ro, DSV4_MODE_FP32, 0, NULL);
    CHECK(!memcmp(yo, ro, sizeof yo), "fallback equals the reference");
    free_weight(&odd);

    for (int lvl = 0; lvl <= (int)cpu_best_isa(); lvl++) {
        CHECK(cpu_set_isa((cpu_isa_level)lvl) == (cpu_isa_level)lvl, "set isa %d", lvl);
        test_weight m = make_weight(W_MXFP4, 70, 256);
        float xm[20 * 256], ym[20 * 70], rm[20 * 70];
        double ad[20 * 70];
        for (int i = 0; i < 20 * 256; i++) xm[i] = rndf();
        linear_ref(&m.w, xm, 20, rm, DSV4_MODE_FP32, 0, NULL);
        abs_dot(&m.w, xm, 20, ad);
        linear(&m.w, xm, 20, ym, DSV4_MODE_FP32, 0, pool2);
        CHECK(worst(ym, rm, ad, 20 * 70, 2e-6) <= 1, "linear FP32 isa %d", lvl);
        linear(&m.w, xm, 20, ym, DSV4_MODE_FAST, 0, pool2);
        CHECK(worst(ym, rm, ad, 20 * 70, 8e-3) <= 1, "linear FAST isa %d", lvl);
        free_weight(&m);
    }
    cpu_set_isa(cpu_best_isa());
}

/* A GGUF block-format weight (Q8_0, MXFP4) quantised from random rows. */
static test_weight make_gguf_weight(wtype t, int rows, int cols) {
    test_weight tw = {0};
    size_t rs = ggml_row_size(t, cols);
    uint8_t *p = malloc(rs * rows);
    float *row = malloc((size_t)cols * 4);
    for (int r = 0; r < rows; r++) {
        for (int k = 0; k < cols; k++) row[k] = rndf() * (k % 97 == 0 ? 8.0f : 1.0f);
        ggml_quantize_row(t, row, p + rs * r, cols);
    }
    free(row);
    tw.w.type = t; tw.w.rows = rows; tw.w.cols = cols; tw.w.name = "test";
    tw.w.data = tw.data = p;
    return tw;
}

static void deq_row_any(const dsv4_weight *w, int r, float *out) {
    if (w->type == W_MXFP4) kc_deq_row_f32(w, r, 0, w->cols, out);
    else ggml_dequant_row(w->type, (const uint8_t *)w->data + ggml_row_size(w->type, w->cols) * r, out, w->cols);
}

/* FAST-mode products with int8 activations (num/kernels_i8.c), for the
 * release's MXFP4 and GGUF's MXFP4 and Q8_0: the AVX-512 quantiser equals
 * the portable one byte for byte; each product equals the portable model
 * of the kernel's arithmetic; results do not depend on how many tokens a
 * call carries; and the error against exact FP32 stays within what
 * rounding x to int8 per 32-column block allows. */
static void check_int8_type(const kern_set *ks, wtype type) {
    /* 9 rows: fewer than one 16-row pass of the many-token kernel, 3 rows
     * fewer than one 4-row pass of the few-token kernel (the portable
     * fallback); 33 and 70: last passes that overlap the one before */
    const int shapes_q[][2] = {{70, 128}, {33, 256}, {9, 256}, {3, 128}, {64, 4096}};
    for (size_t si = 0; si < sizeof shapes_q / sizeof shapes_q[0]; si++) {
        /* T = 13: the packed-weight kernel (8 + 5 tokens); one token at a
         * time and three at a time: the few-token kernel */
        int R = shapes_q[si][0], K = shapes_q[si][1], T = 13;
        test_weight m = type == W_MXFP4 ? make_weight(W_MXFP4, R, K) : make_gguf_weight(type, R, K);
        const char *tn = type == W_MXFP4 ? "mxfp4" : type == W_Q8_0 ? "gguf q8_0" : "gguf mxfp4";
        float *x = malloc((size_t)T * K * 4), *y = malloc((size_t)T * R * 4), *y1 = malloc((size_t)R * 4);
        float *ref = malloc((size_t)T * R * 4), *wrow = malloc((size_t)K * 4);
        for (int i = 0; i < T * K; i++) x[i] = rndf();
        for (int i = 0; i < 32; i++) x[K + i] = 0.0f;          /* a zero block */
        x[2 * K + 5] = 300.0f;                                   /* an outlier */
        x[3 * K + 40] = -1e-30f;                                 /* a tiny block max */
        size_t qb = kern_q8x_bytes(K);
        uint8_t *qa = malloc(qb), *qr = malloc(qb);
        int same = 1;
        for (int t = 0; t < T; t++) {
            kern_q8x_quantize(type, x + (size_t)t * K, K, qa);
            kern_q8x_quantize_ref(type, x + (size_t)t * K, K, qr);
            same &= !memcmp(qa, qr, qb);
        }
        CHECK(same, "%s: quantiser AVX-512 == portable (%dx%d)", tn, R, K);
        if (type == W_MXFP4) kern_linear(ks, &m.w, x, T, y, 1, pool2);   /* the dispatch */
        else kern_i8_linear(&m.w, x, T, y, pool2);
        for (int t = 0; t < T; t++)
            for (int r = 0; r < R; r++) {
                deq_row_any(&m.w, r, wrow);
                double s = 0;
                for (int k = 0; k < K; k++) s += (double)wrow[k] * x[(size_t)t * K + k];
                ref[(size_t)t * R + r] = (float)s;
            }
        int model_ok = 1, inv_ok = 1, bound_ok = 1;
        float *y3 = malloc((size_t)3 * R * 4);
        kern_i8_linear(&m.w, x + (size_t)4 * K, 3, y3, pool2);
        int inv3_ok = !memcmp(y3, y + (size_t)4 * R, (size_t)3 * R * 4);
        free(y3);
        for (int t = 0; t < T; t++) {
            kern_q8x_quantize_ref(type, x + (size_t)t * K, K, qr);
            kern_q8x xv;
            kern_q8x_view(qr, K, &xv);
            kern_i8_linear(&m.w, x + (size_t)t * K, 1, y1, pool2);
            for (int r = 0; r < R; r++) {
                float e = kern_i8_dot_ref(&m.w, r, &xv), g = y[(size_t)t * R + r];
                if (memcmp(&g, &e, 4)) model_ok = 0;   /* the same FP32 operations in the same order */
                if (memcmp(&g, &y1[r], 4)) inv_ok = 0;
                /* |error| <= sum_k |w_k| * (block max of x) / 254, plus FP32 */
                double bound = 0, mag = 0;
                deq_row_any(&m.w, r, wrow);
                for (int k = 0; k < K; k++) {
                    const float *xb = x + (size_t)t * K + k / 32 * 32;
                    float amax = 0;
                    for (int i = 0; i < 32; i++) amax = fmaxf(amax, fabsf(xb[i]));
                    bound += fabs(wrow[k]) * amax / 254.0;
                    mag += fabs(wrow[k] * x[(size_t)t * K + k]);
                }
                if (fabs(g - ref[(size_t)t * R + r]) > bound * 1.001 + 1e-5 * mag) bound_ok = 0;
            }
        }
        CHECK(model_ok, "%s: kernel == portable model of its arithmetic, bit for bit (%dx%d)", tn, R, K);
        CHECK(inv_ok, "%s: one token at a time == 13 at once, bit for bit (%dx%d)", tn, R, K);
        CHECK(inv3_ok, "%s: three tokens at once == 13 at once, bit for bit (%dx%d)", tn, R, K);
        CHECK(bound_ok, "%s: error within the int8 rounding bound (%dx%d)", tn, R, K);
        free(x); free(y); free(y1); free(ref); free(wrow); free(qa); free(qr);
        free_weight(&m);
    }
}

TEST(int8_activations) {
    const kern_set *ks = kern_for_isa(ISA_AVX512);
    if (cpu_best_isa() < ISA_AVX512 || !kern_i8_available(ks)) {
        fprintf(stderr, "skip: no AVX-512 VNNI\n");
        return;
    }
    /* with and without the VBMI byte permutes (vpermb nibble tables, GGUF
     * MXFP4's block gather) */
    for (int nv = 0; nv < 2; nv++) {
        kern_avx512_no_vbmi = nv;
        check_int8_type(ks, W_MXFP4);
        check_int8_type(ks, W_GG_MXFP4);
        check_int8_type(ks, W_Q8_0);
    }
    kern_avx512_no_vbmi = 0;
    /* FAST linear() routes GGUF Q8_0 / MXFP4 here too */
    test_weight g = make_gguf_weight(W_Q8_0, 20, 256);
    float x[3 * 256], a[3 * 20], b[3 * 20];
    for (int i = 0; i < 3 * 256; i++) x[i] = rndf();
    linear(&g.w, x, 3, a, DSV4_MODE_FAST, 0, pool2);
    kern_i8_linear(&g.w, x, 3, b, pool2);
    CHECK(!memcmp(a, b, sizeof a), "FAST linear() on Q8_0 takes the int8 kernels");
    free_weight(&g);
}

/* linear_multi: one job of int8 products (MXFP4), fused products (FP8,
 * BF16, F32) and a product that must go alone (F32 with LIN_ROUND_F32)
 * gives every product bit for bit what linear() gives it alone, in every
 * mode, for decode-sized and prefill-sized token counts. */
TEST(multi_matches_single) {
    struct { wtype t; int rows, cols, xi, flags; } spec[] = {
        {W_MXFP4, 256, 512, 0, 0}, {W_MXFP4, 128, 512, 0, 0},   /* same input: quantised once */
        {W_FP8, 200, 256, 1, 0},   {W_BF16, 64, 256, 1, 0},
        {W_F32, 48, 128, 2, LIN_ROUND_F32}, {W_F32, 32, 128, 2, 0},
    };
    enum { N = 6 };
    static const int Ts[] = {1, 3, 20};
    static const dsv4_mode modes[] = {DSV4_MODE_FAST, DSV4_MODE_FP32, DSV4_MODE_EXACT};
    test_weight tw[N];
    for (int i = 0; i < N; i++) tw[i] = make_weight(spec[i].t, spec[i].rows, spec[i].cols);
    for (size_t a = 0; a < 3; a++)
        for (size_t b = 0; b < 3; b++) {
            int T = Ts[a];
            float *x[3], *y[N], *r[N];
            static const int xk[3] = {512, 256, 128};
            for (int k = 0; k < 3; k++) {
                x[k] = malloc((size_t)T * xk[k] * sizeof(float));
                for (int i = 0; i < T * xk[k]; i++) x[k][i] = rndf() * 2.0f;
            }
            linear_item it[N];
            for (int i = 0; i < N; i++) {
                size_t ny = (size_t)T * spec[i].rows;
                y[i] = malloc(ny * sizeof(float));
                r[i] = malloc(ny * sizeof(float));
                for (size_t k = 0; k < ny; k++) y[i][k] = NAN;
                it[i] = (linear_item){&tw[i].w, x[spec[i].xi], T, y[i], spec[i].flags};
                linear(&tw[i].w, x[spec[i].xi], T, r[i], modes[b], spec[i].flags, pool2);
            }
            linear_multi(it, N, modes[b], pool2);
            for (int i = 0; i < N; i++)
                CHECK(!memcmp(y[i], r[i], (size_t)T * spec[i].rows * sizeof(float)),
                      "mode %d T=%d: product %d (%s %dx%d) in the multi job differs from linear() alone", (int)modes[b],
                      T, i, tname(spec[i].t), spec[i].rows, spec[i].cols);
            for (int i = 0; i < N; i++) { free(y[i]); free(r[i]); }
            for (int k = 0; k < 3; k++) free(x[k]);
        }
    for (int i = 0; i < N; i++) free_weight(&tw[i]);
}

/* kern_set.index_scores (the lightning indexer's fused scores): against a
 * double-precision model of sum_h relu(q_h . k_j) w_h on BF16 keys and
 * queries, within FP32 rounding; a key's score does not depend on how many
 * keys one call covers (the parallel driver splits them in 256s); keys
 * past nb are not written. */
TEST(index_scores) {
    const kern_set *ks = kern_for_isa(ISA_AVX512);
    if (!ks->index_scores || cpu_best_isa() < ISA_AVX512) { CHECK(1, "no AVX-512"); return; }
    enum { H = 64, D = 128, NMAX = 600 };
    static const int nbs[] = {1, 15, 16, 17, 300, NMAX};
    uint16_t *keys = malloc((size_t)NMAX * D * sizeof(uint16_t)), q[H * D];
    uint32_t *pan = calloc(kern_index_panel_len(NMAX, D), sizeof(uint32_t));
    float w[H], *s = malloc((NMAX + 16) * sizeof(float)), *s2 = malloc((NMAX + 16) * sizeof(float));
    for (int i = 0; i < NMAX * D; i++) keys[i] = f32_to_bf16(rndf());
    for (int i = 0; i < H * D; i++) q[i] = f32_to_bf16(rndf());
    for (int h = 0; h < H; h++) w[h] = rndf();
    for (int j = 0; j < NMAX; j++) kern_index_panel_put(pan, j, keys + (size_t)j * D, D);
    for (size_t a = 0; a < sizeof nbs / sizeof nbs[0]; a++) {
        int nb = nbs[a], bad = 0;
        for (int j = 0; j < NMAX + 16; j++) s[j] = 12345.0f;
        ks->index_scores(pan, nb, q, w, H, D, s);
        for (int j = 0; j < nb; j++) {
            double ref = 0, mag = 0;
            for (int h = 0; h < H; h++) {
                double d = 0, dm = 0;
                for (int k = 0; k < D; k++) {
                    double p = (double)bf16_to_f32(q[h * D + k]) * bf16_to_f32(keys[(size_t)j * D + k]);
                    d += p;
                    dm += fabs(p);
                }
                if (d > 0) ref += d * w[h];
                mag += dm * fabs(w[h]);
            }
            if (fabs(s[j] - ref) > 1e-5 * mag + 1e-6) bad++;
        }
        CHECK(!bad, "index_scores nb=%d: %d of %d scores off the model", nb, bad, nb);
        CHECK(s[nb] == 12345.0f, "index_scores nb=%d: wrote past nb", nb);
        if (nb > 256) {   /* keys [256, nb) alone, as the driver's second unit */
            ks->index_scores(pan + kern_index_panel_len(256, D), nb - 256, q, w, H, D, s2);
            CHECK(!memcmp(s + 256, s2, (size_t)(nb - 256) * sizeof(float)), "index_scores nb=%d: split differs", nb);
        }
    }
    free(keys); free(pan); free(s); free(s2);
}

/* pool_deal: the runs tile [0, n) in thread order, each within one unit's
 * weight of an even share; taken concurrently (a real pool, threads
 * stealing), every unit goes out exactly once, and one thread alone takes
 * everything, its own run first and in order. */
typedef struct {
    pool_deal *d;
    atomic_int *seen;
    atomic_int order_ok;
    int slow_tid;
} deal_run_job;

static void deal_worker(void *arg, int tid, int nth) {
    (void)nth;
    deal_run_job *j = arg;
    int own_next = pool_deal_start(j->d, tid % j->d->nth), own_end = tid % j->d->nth + 1 < j->d->nth ?
                   pool_deal_start(j->d, tid % j->d->nth + 1) : j->d->n;
    for (int u; (u = pool_deal_take(j->d, tid)) >= 0;) {
        if (u < 0 || u >= j->d->n) { atomic_store(&j->order_ok, 0); break; }
        atomic_fetch_add(&j->seen[u], 1);
        /* own units come in order, others' from the back */
        if (u >= own_next && u < own_end) {
            if (u != own_next) atomic_store(&j->order_ok, 0);
            own_next = u + 1;
        }
        if (tid == j->slow_tid)
            for (volatile int k = 0; k < 2000; k++) {}
    }
}

TEST(pool_deal_runs) {
    static const int ns[] = {0, 1, 2, 7, 64, 100, 1000, 4040};
    static const int nths[] = {1, 2, 3, 8};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++)
        for (size_t b = 0; b < sizeof nths / sizeof nths[0]; b++) {
            int n = ns[a], nth = nths[b];
            double *wt = malloc((size_t)(n ? n : 1) * sizeof(double)), total = 0, wmax = 0;
            for (int i = 0; i < n; i++) { wt[i] = 1 + (i * 7919) % 13; total += wt[i]; if (wt[i] > wmax) wmax = wt[i]; }
            pool_deal d;
            CHECK(pool_deal_init(&d, n, nth, wt) == 0, "init n=%d threads=%d", n, nth);
            int ok = pool_deal_start(&d, 0) == 0;
            for (int t = 0; t < nth; t++) {
                int lo = pool_deal_start(&d, t), hi = t + 1 < nth ? pool_deal_start(&d, t + 1) : n;
                double w = 0;
                for (int i = lo; i < hi; i++) w += wt[i];
                if (hi < lo || w > total / nth + wmax || w < total / nth - wmax) ok = 0;
            }
            CHECK(ok, "n=%d threads=%d: runs in order, each within a unit of an even share", n, nth);
            /* one thread alone takes every unit once, its own run first in order */
            int bad = 0, own_end = nth > 1 ? pool_deal_start(&d, 1) : n;
            char *got = calloc((size_t)(n ? n : 1), 1);
            for (int k = 0, u; (u = pool_deal_take(&d, 0)) >= 0; k++) {
                if (u >= n || got[u]++ || (k < own_end && u != k)) bad++;
            }
            for (int i = 0; i < n; i++) bad += !got[i];
            CHECK(bad == 0, "n=%d threads=%d: one thread takes every unit once (%d wrong)", n, nth, bad);
            CHECK(pool_deal_own(&d, 0) == -1 && pool_deal_take(&d, nth - 1) == -1, "n=%d threads=%d: nothing left", n, nth);
            free(got);
            pool_deal_free(&d);
            free(wt);
        }
    /* concurrent: real threads, one of them slow so that the others steal */
    for (int nth = 2; nth <= 4; nth++) {
        dsv4_pool *pool = pool_new(nth);
        for (int rep = 0; rep < 20; rep++) {
            int n = 37 + 101 * rep;
            pool_deal d;
            pool_deal_init(&d, n, nth, NULL);
            deal_run_job j = {.d = &d, .seen = calloc((size_t)n, sizeof(atomic_int)), .slow_tid = rep % nth};
            atomic_init(&j.order_ok, 1);
            pool_run(pool, deal_worker, &j);
            int bad = 0;
            for (int i = 0; i < n; i++) bad += atomic_load(&j.seen[i]) != 1;
            CHECK(bad == 0 && atomic_load(&j.order_ok), "threads=%d n=%d: %d units not taken exactly once (own runs in order: %d)",
                  nth, n, bad, atomic_load(&j.order_ok));
            free(j.seen);
            pool_deal_free(&d);
        }
        pool_free(pool);
    }
}

/* kern_phase_permute: step j of an n-step slice lands at
 * kern_phase_start(n, j % 4) + j / 4, every step exactly once, values
 * within a step untouched. */
TEST(phase_permute) {
    static const int ns[] = {1, 2, 3, 4, 5, 6, 7, 10, 32, 63, 64, 128};
    for (size_t a = 0; a < sizeof ns / sizeof ns[0]; a++) {
        int n = ns[a], kc = 32 * n;
        uint16_t *v = malloc((size_t)kc * sizeof(uint16_t));
        for (int k = 0; k < kc; k++) v[k] = (uint16_t)k;
        kern_phase_permute(v, kc);
        int total = 0, bad = 0;
        for (int p = 0; p < 4; p++) total += kern_phase_len(n, p);
        for (int j = 0; j < n; j++) {
            int at = kern_phase_start(n, j % 4) + j / 4;
            for (int c = 0; c < 32; c++) bad += v[at * 32 + c] != (uint16_t)(j * 32 + c);
        }
        CHECK(total == n, "n=%d: phase lengths sum to %d", n, total);
        CHECK(bad == 0, "n=%d: %d values out of place", n, bad);
        free(v);
    }
}

int main(void) {
    numfmt_init();
    pool2 = pool_new(2);
    fprintf(stderr, "cpu: %s; best kernel set %s\n", cpu_features_string(), cpu_isa_name(cpu_best_isa()));
    RUN(kernels_c);
    RUN(kernels_extreme_scales);
    RUN(kernels_avx2);
    RUN(kernels_avx512);
    RUN(dispatch);
    RUN(int8_activations);
    RUN(pool_deal_runs);
    RUN(multi_matches_single);
    RUN(index_scores);
    RUN(phase_permute);
    pool_free(pool2);
    return check_summary();
}

