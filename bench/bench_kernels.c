/*
 * bench_kernels.c - microbenchmarks of the matrix kernels on weights of
 * DeepSeek-V4-Flash shapes built in memory (random bytes in the release
 * formats), so they run without any checkpoint:
 *
 *   bandwidth   the STREAM-like read probe (the decode roofline)
 *   gemv        T=1 products over a working set far larger than the caches:
 *               GB/s of weight bytes and % of the probe
 *   gemm        prefill-sized products: GFLOP/s, FP32 and FAST (BF16) modes,
 *               and the in-cache GEMM peak
 *
 *   --cpu       single-thread CPU-time figures of the FAST few-token kernels
 *               (T = 1..4) and the FAST GEMM, in cache and out of cache:
 *               thread CPU time is what a loaded machine does not distort
 *
 * usage: bench_kernels [--threads N] [--isa c|avx2|avx512] [--quick] [--cpu]
 */
#include "num/cpu.h"
#include "num/kernels.h"
#include "num/linear.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include "util/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static uint64_t rng = 88172645463325252ull;
static uint8_t rb(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint8_t)(rng >> 24); }

static dsv4_weight mk(wtype t, int rows, int cols) {
    dsv4_weight w = {.type = t, .rows = rows, .cols = cols, .name = "bench"};
    size_t n = (size_t)rows * cols, bytes = t == W_F32 ? n * 4 : t == W_BF16 ? n * 2 : t == W_FP8 ? n : n / 2;
    uint8_t *d = malloc(bytes);
    for (size_t i = 0; i < bytes; i++) d[i] = rb() & 0x77;   /* no NaN/Inf patterns */
    if (t == W_BF16) for (size_t i = 0; i < n; i++) ((uint16_t *)d)[i] = (uint16_t)(0x3c00 | (((uint16_t *)d)[i] & 0x80ff));
    if (t == W_F32) for (size_t i = 0; i < n; i++) ((float *)d)[i] = (float)(i % 7) * 0.01f;
    w.data = d;
    if (t == W_FP8) w.scale_cols = (cols + 127) / 128;
    if (t == W_MXFP4) w.scale_cols = cols / 32;
    if (t == W_FP8 || t == W_MXFP4) {
        size_t ns = t == W_FP8 ? (size_t)((rows + 127) / 128) * w.scale_cols : (size_t)rows * w.scale_cols;
        uint8_t *s = malloc(ns);
        for (size_t i = 0; i < ns; i++) s[i] = 124;
        w.scale = s;
    }
    return w;
}

static const char *fmtname(wtype t) {
    return t == W_F32 ? "f32" : t == W_BF16 ? "bf16" : t == W_FP8 ? "fp8" : "mxfp4";
}

/* GEMV over `copies` distinct matrices of one shape (total >> cache). */
static void bench_gemv(dsv4_pool *pool, wtype t, int rows, int cols, int copies, double bw, int T) {
    dsv4_weight *ws = malloc(sizeof *ws * copies);
    for (int i = 0; i < copies; i++) ws[i] = mk(t, rows, cols);
    float *x = malloc((size_t)T * cols * 4), *y = malloc((size_t)T * rows * 4);
    for (int i = 0; i < T * cols; i++) x[i] = 0.001f * (i % 100);
    for (int i = 0; i < copies; i++) linear(&ws[i], x, T, y, DSV4_MODE_FAST, 0, pool);  /* warm */
    double best = 1e30;
    for (int rep = 0; rep < 5; rep++) {
        double t0 = now_sec();
        for (int i = 0; i < copies; i++) linear(&ws[i], x, T, y, DSV4_MODE_FAST, 0, pool);
        double dt = now_sec() - t0;
        if (dt < best) best = dt;
    }
    double bytes = (double)weight_bytes(&ws[0]) * copies;
    printf("gemv %-6s %6dx%-6d T=%d x%-3d %8.1f MB  %7.2f GB/s  %5.1f%% of bandwidth\n", fmtname(t),
           rows, cols, T, copies, bytes / 1e6, bytes / best / 1e9, 100 * bytes / best / 1e9 / bw);
    for (int i = 0; i < copies; i++) { free((void *)ws[i].data); free((void *)ws[i].scale); }
    free(ws); free(x); free(y);
}

static void bench_gemm(dsv4_pool *pool, wtype t, int rows, int cols, int T, dsv4_mode mode, double peak) {
    dsv4_weight w = mk(t, rows, cols);
    float *x = malloc((size_t)T * cols * 4), *y = malloc((size_t)T * rows * 4);
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = 0.001f * (float)(i % 100);
    linear(&w, x, T, y, mode, 0, pool);
    double best = 1e30;
    for (int rep = 0; rep < 3; rep++) {
        double t0 = now_sec();
        linear(&w, x, T, y, mode, 0, pool);
        double dt = now_sec() - t0;
        if (dt < best) best = dt;
    }
    double gf = 2.0 * rows * cols * T / best / 1e9;
    printf("gemm %-6s %6dx%-6d T=%-4d %-5s %8.1f GFLOP/s  %5.1f%% of peak\n", fmtname(t), rows, cols, T,
           mode == DSV4_MODE_FAST ? "fast" : "fp32", gf, 100 * gf / peak);
    free((void *)w.data); free((void *)w.scale); free(x); free(y);
}

static double cpu_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Single thread (no pool), CPU time, FAST mode: `copies` matrices of one
 * shape are cycled (1 copy = in cache), best of many short passes (the least disturbed). */
static void cpu_gemv(wtype t, int rows, int cols, int copies, int T) {
    dsv4_weight *ws = malloc(sizeof *ws * copies);
    for (int i = 0; i < copies; i++) ws[i] = mk(t, rows, cols);
    float *x = malloc((size_t)T * cols * 4), *y = malloc((size_t)T * rows * 4);
    for (int i = 0; i < T * cols; i++) x[i] = 0.001f * (i % 100) - 0.04f;
    const kern_set *ks = kern_for_isa(cpu_isa());
    double bytes = (double)weight_bytes(&ws[0]) * copies, best = 1e30;
    /* in cache: many passes of ~0.1 ms, so that some run undisturbed by
     * the other processes of a loaded machine; streaming: 25 passes */
    int reps = copies == 1 ? (int)(2e6 / bytes) + 1 : 1, passes = copies == 1 ? 400 : 25;
    for (int pass = 0; pass < passes; pass++) {
        double t0 = cpu_sec();
        for (int r = 0; r < reps; r++)
            for (int i = 0; i < copies; i++) kern_linear(ks, &ws[i], x, T, y, 1, NULL);
        double dt = cpu_sec() - t0;
        if (pass && dt < best) best = dt;
    }
    printf("cpu gemv %-6s %5dx%-5d T=%d x%-3d %7.1f MB %s  %6.2f GB/s weights per core\n", fmtname(t),
           rows, cols, T, copies, bytes / 1e6, copies == 1 ? "in-cache " : "streaming", bytes * reps / best / 1e9);
    for (int i = 0; i < copies; i++) { free((void *)ws[i].data); free((void *)ws[i].scale); }
    free(ws); free(x); free(y);
}

static void cpu_gemm(wtype t, int rows, int cols, int T) {
    dsv4_weight w = mk(t, rows, cols);
    float *x = malloc((size_t)T * cols * 4), *y = malloc((size_t)T * rows * 4);
    for (size_t i = 0; i < (size_t)T * cols; i++) x[i] = 0.001f * (float)(i % 100) - 0.04f;
    const kern_set *ks = kern_for_isa(cpu_isa());
    double best = 1e30;
    for (int pass = 0; pass < 4; pass++) {
        double t0 = cpu_sec();
        kern_linear(ks, &w, x, T, y, 1, NULL);
        double dt = cpu_sec() - t0;
        if (pass && dt < best) best = dt;
    }
    printf("cpu gemm %-6s %5dx%-5d T=%-4d fast  %7.1f GFLOP/s per core\n", fmtname(t), rows, cols, T,
           2.0 * rows * cols * T / best / 1e9);
    free((void *)w.data); free((void *)w.scale); free(x); free(y);
}

static void cpu_bench(int quick) {
    printf("cpu: %s; kernels: %s; single thread, CPU time\n", cpu_features_string(), cpu_isa_name(cpu_isa()));
    for (int T = 1; T <= 4; T++) {
        if (quick && T == 3) continue;
        cpu_gemv(W_FP8, 256, 1024, 1, T);
        cpu_gemv(W_MXFP4, 256, 2048, 1, T);
        cpu_gemv(W_BF16, 128, 1024, 1, T);
    }
    cpu_gemv(W_FP8, 4096, 4096, quick ? 2 : 4, 1);
    cpu_gemv(W_MXFP4, 2048, 4096, quick ? 4 : 8, 1);
    cpu_gemv(W_BF16, 4096, 4096, quick ? 1 : 2, 1);
    cpu_gemm(W_FP8, 1024, 4096, 256);
    cpu_gemm(W_MXFP4, 1024, 4096, 256);
    cpu_gemm(W_BF16, 1024, 4096, 256);
}

int main(int argc, char **argv) {
    int threads = 0, quick = 0, cpu = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--isa") && i + 1 < argc) {
            const char *s = argv[++i];
            cpu_set_isa(!strcmp(s, "c") ? ISA_C : !strcmp(s, "avx2") ? ISA_AVX2 : ISA_AVX512);
        } else if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--cpu")) cpu = 1;
        else if (!strcmp(argv[i], "--one") && i + 2 < argc) {
            /* one in-cache FAST product, 20 calls: for callgrind/valgrind */
            const char *f = argv[++i];
            int T = atoi(argv[++i]);
            wtype t = !strcmp(f, "fp8") ? W_FP8 : !strcmp(f, "mxfp4") ? W_MXFP4 : W_BF16;
            numfmt_init();
            dsv4_weight w = mk(t, 256, t == W_MXFP4 ? 2048 : 1024);
            float *x = calloc((size_t)T * w.cols, 4), *y = malloc((size_t)T * w.rows * 4);
            for (int r = 0; r < 20; r++) kern_linear(kern_for_isa(cpu_isa()), &w, x, T, y, 1, NULL);
            printf("%s T=%d: %zu bytes x 20\n", f, T, weight_bytes(&w));
            return 0;
        }
        else { fprintf(stderr, "usage: %s [--threads N] [--isa c|avx2|avx512] [--quick] [--cpu]\n", argv[0]); return 2; }
    }
    numfmt_init();
    if (cpu) { cpu_bench(quick); return 0; }
    dsv4_pool *pool = pool_new(threads);
    printf("cpu: %s; kernels: %s; threads: %d\n", cpu_features_string(), cpu_isa_name(cpu_isa()), pool_size(pool));
    double bw = kern_probe_bandwidth(pool, quick ? (256u << 20) : (1u << 30), 5);
    printf("bandwidth %.2f GB/s (read, %d threads)\n", bw, pool_size(pool));
    int bf;
    double peak = kern_probe_gemm_peak(pool, &bf);
    printf("gemm peak %.1f GFLOP/s (%s tile, in cache)\n", peak, bf ? "bf16" : "fp32");
    int c = quick ? 2 : 1;
    bench_gemv(pool, W_FP8, 32768, 1024, 16 / c, bw, 1);      /* wq_b */
    bench_gemv(pool, W_FP8, 4096, 8192, 16 / c, bw, 1);       /* wo_b */
    bench_gemv(pool, W_FP8, 1024, 4096, 64 / c, bw, 1);       /* wq_a */
    bench_gemv(pool, W_MXFP4, 2048, 4096, 64 / c, bw, 1);     /* expert w1/w3 */
    bench_gemv(pool, W_MXFP4, 4096, 2048, 64 / c, bw, 1);     /* expert w2 */
    bench_gemv(pool, W_BF16, 32768, 4096, 4 / c, bw, 1);      /* head slice */
    bench_gemv(pool, W_BF16, 256, 4096, 256 / c, bw, 1);      /* gate */
    bench_gemv(pool, W_F32, 24, 16384, 256 / c, bw, 1);       /* hc_fn */
    bench_gemv(pool, W_FP8, 4096, 8192, 16 / c, bw, 4);       /* batched decode */
    bench_gemm(pool, W_FP8, 4096, 4096, 512, DSV4_MODE_FP32, peak);
    bench_gemm(pool, W_FP8, 4096, 4096, 512, DSV4_MODE_FAST, peak);
    bench_gemm(pool, W_MXFP4, 2048, 4096, 96, DSV4_MODE_FAST, peak);
    bench_gemm(pool, W_MXFP4, 4096, 2048, 96, DSV4_MODE_FAST, peak);
    bench_gemm(pool, W_BF16, 4096, 4096, 512, DSV4_MODE_FAST, peak);
    bench_gemm(pool, W_FP8, 1024, 4096, 16, DSV4_MODE_FAST, peak);
    pool_free(pool);
    return 0;
}
