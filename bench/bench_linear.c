/*
 * bench_linear.c - one linear() product, or N of them, timed as the model
 * calls them (FAST mode, the pool, random weights in the stored format):
 *
 *   bench_linear ROWS COLS T TYPE [--threads N] [--reps N] [--slices N]
 *
 * TYPE: fp8, mxfp4, bf16, gguf-mxfp4, gguf-q8_0.  Prints the best time
 * over --reps calls, GFLOP/s and GB/s of weight bytes.  With --slices N the
 * weight is N separate ROWS x COLS products called one after another
 * (streaming from memory: each is cold), then the same bytes as one
 * (N*ROWS) x COLS product: the cost of small products.
 */
#include "num/ggml_quants.h"
#include "num/linear.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

static int parse_type(const char *s, wtype *t) {
    if (!strcmp(s, "fp8")) *t = W_FP8;
    else if (!strcmp(s, "mxfp4")) *t = W_MXFP4;
    else if (!strcmp(s, "bf16")) *t = W_BF16;
    else if (!strcmp(s, "gguf-mxfp4")) *t = W_GG_MXFP4;
    else if (!strcmp(s, "gguf-q8_0")) *t = W_Q8_0;
    else return -1;
    return 0;
}

static size_t data_bytes(wtype t, int R, int K) {
    switch (t) {
    case W_BF16: return (size_t)R * K * 2;
    case W_MXFP4: return (size_t)R * K / 2;
    case W_GG_MXFP4: case W_Q8_0: return ggml_row_size(t, K) * (size_t)R;
    default: return (size_t)R * K;
    }
}

int main(int argc, char **argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s ROWS COLS T TYPE [--threads N] [--reps N] [--slices N]\n"
                        "  TYPE: fp8 mxfp4 bf16 gguf-mxfp4 gguf-q8_0\n", argv[0]);
        return 2;
    }
    int R = atoi(argv[1]), K = atoi(argv[2]), T = atoi(argv[3]), threads = 2, reps = 5, slices = 0;
    wtype type;
    if (R <= 0 || K <= 0 || K % 128 || T <= 0 || parse_type(argv[4], &type)) {
        fprintf(stderr, "bad arguments (COLS must be a multiple of 128)\n");
        return 2;
    }
    for (int i = 5; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--threads")) threads = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--reps")) reps = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--slices")) slices = atoi(argv[i + 1]);
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    numfmt_init();
    dsv4_pool *pool = pool_new(threads);
    int n = slices > 0 ? slices : 1;
    size_t nb = data_bytes(type, R, K), tot = nb * n;
    uint8_t *d = malloc(tot);
    if (!d) { fprintf(stderr, "out of memory\n"); return 1; }
    srand(1);
    for (size_t i = 0; i < tot; i++) {
        uint8_t b = (uint8_t)rand();
        if (type == W_FP8 && (b & 0x7f) == 0x7f) b = 0x30;   /* no NaN */
        d[i] = b;
    }
    if (type == W_Q8_0 || type == W_GG_MXFP4) {   /* sane block scales */
        size_t bb = type == W_Q8_0 ? 34 : 17;
        for (size_t b = 0; b < tot / bb; b++) {
            if (type == W_Q8_0) { d[b * bb] = 0x00; d[b * bb + 1] = 0x20; }   /* fp16 ~0.008 */
            else d[b * bb] = 120;
        }
    }
    int sc = type == W_FP8 ? (K + 127) / 128 : K / 32;
    size_t ns = type == W_FP8 ? (size_t)((R + 127) / 128) * sc : type == W_MXFP4 ? (size_t)R * sc : 0;
    uint8_t *s = ns ? malloc(ns * n) : NULL;
    if (s) memset(s, 125, ns * n);
    float *x = malloc((size_t)T * K * sizeof(float)), *y = malloc((size_t)T * R * n * sizeof(float));
    for (size_t i = 0; i < (size_t)T * K; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    dsv4_weight *w = calloc((size_t)n, sizeof *w);
    for (int i = 0; i < n; i++)
        w[i] = (dsv4_weight){.type = type, .rows = R, .cols = K, .data = d + nb * i,
                             .scale = s ? s + ns * i : NULL, .scale_cols = sc, .name = "w"};
    if (slices > 0) {
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now();
            for (int i = 0; i < n; i++) linear(&w[i], x, T, y + (size_t)R * T * i, DSV4_MODE_FAST, 0, pool);
            double dt = now() - t0;
            printf("%d x (%dx%d %s, T=%d): %.1f us/product, %.1f GB/s\n", n, R, K, argv[4], T, dt / n * 1e6, tot / dt / 1e9);
        }
        if (type == W_FP8 && R % 128) return 0;   /* scale rows would not line up */
        dsv4_weight big = w[0];
        big.rows = R * n;
        for (int rep = 0; rep < reps; rep++) {
            double t0 = now();
            linear(&big, x, T, y, DSV4_MODE_FAST, 0, pool);
            double dt = now() - t0;
            printf("1 x (%dx%d %s, T=%d): %.1f GB/s\n", R * n, K, argv[4], T, tot / dt / 1e9);
        }
        return 0;
    }
    linear(&w[0], x, T, y, DSV4_MODE_FAST, 0, pool);   /* warm-up */
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now();
        linear(&w[0], x, T, y, DSV4_MODE_FAST, 0, pool);
        double dt = now() - t0;
        if (dt < best) best = dt;
    }
    printf("%dx%d %s T=%d, %d threads: %.3f ms  %.1f GFLOP/s  %.1f GB/s of weights\n", R, K, argv[4], T, threads,
           best * 1e3, 2.0 * R * K * T / best / 1e9, nb / best / 1e9);
    free(d); free(s); free(x); free(y); free(w);
    pool_free(pool);
    return 0;
}
