/*
 * cmd_bench.c - `dsv4 bench`: how fast this machine runs a model, and how
 * close that is to what the hardware allows.  In one run:
 *
 *   1. read bandwidth (STREAM-like probe, num/kernels_probe.c), before and
 *      after the decode points, the higher reading: the roofline for
 *      decode, which streams every active weight once per token (readings
 *      more than 15% apart: the decode points are measured again, up to 3
 *      times in all);
 *   2. GEMM peak of the best tile kernel on an in-cache problem, before and
 *      after the prefill, the higher reading: the ceiling for prefill;
 *   3. decode tok/s at each context length, the context filled by a real
 *      prefill (--fill prefill) or with random cache entries of the right
 *      shapes (--fill random, seconds even at 64k); 16 untimed tokens after
 *      start-up and 2 per point are excluded, the median of the timed
 *      tokens is reported with min/max;
 *      bytes read per token (active dense weights, top-k routed + shared
 *      experts, one embedding row, the head, the KV state read) and their
 *      ratio to the bandwidth; the time of the output head (timed alone)
 *      and of a mean transformer layer ((token - head) / layers), and from
 *      them the rate of a 43-layer Flash;
 *   4. prefill tok/s of a --prompt token prompt (one untimed run for the
 *      buffers' first touch, then the mean of 2 timed runs, with min/max)
 *      and its matmul GFLOP/s;
 *   5. peak RSS.
 *
 * --json writes the figures as one JSON object on stdout (progress goes to
 * stderr), the form the held-out checks read.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include "cli/cli.h"
#include "dsv4.h"
#include "model/bench_fill.h"
#include "model/model.h"
#include "num/cpu.h"
#include "num/kernels.h"
#include "num/linear.h"
#include "util/util.h"

#define MAX_CTX_POINTS 16
#define FLASH_LAYERS 43
/* A cache-line round trip above this means the two threads are in separate
 * L3 domains (AMD CCDs): 53-92 ns within one, 317-372 ns across, on the
 * 2-vCPU EPYC this was measured on. */
#define RT_SEPARATE_NS 150
/* Probes before and after the decode points that differ by more than this
 * (relative to the higher) mean the host changed level during them. */
#define PROBES_AGREE 0.15
/* A decode point that read faster than this times the higher probe: the
 * host was at a higher level during the points than at either probe (a
 * brief move of the vCPUs to two CCDs, seen as 109% and 120% with both
 * probes and both round trips at one CCD).  The fastest products read at
 * 0.98-1.01 of a neighbouring probe (bench_inmodel). */
#define DECODE_OVER_PROBE 1.05
/* ... checked only for tokens that read at least this much: a smaller
 * model decodes partly from the caches, faster than any DRAM probe. */
#define DECODE_OVER_MIN_BYTES (256.0 * (1 << 20))
#define BENCH_ATTEMPTS 3

static const char *placement(double rt) {
    return rt <= 0 ? "not measured: a thread did not answer" : rt > RT_SEPARATE_NS ? "separate L3 domains" : "one L3";
}

/* CPU seconds (user + system) of the whole process so far. */
static double cpu_seconds(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_utime.tv_sec + ru.ru_utime.tv_usec * 1e-6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec * 1e-6;
}

/* 1-minute load average, to tell a busy machine from a slow engine. */
static double loadavg(void) {
    double l = -1;
    FILE *f = fopen("/proc/loadavg", "r");
    if (f) { if (fscanf(f, "%lf", &l) != 1) l = -1; fclose(f); }
    return l;
}

typedef struct {
    int ctx;
    double cpu_util;   /* CPU time / (wall time x threads) while timing */
    double tok_s, tok_s_min, tok_s_max, bytes_per_token, roofline, layer_ms, head_ms, flash_tok_s;
} decode_point;

/* The highest bandwidth any decode point read, as a fraction of bw (points
 * under DECODE_OVER_MIN_BYTES a token left out). */
static double decode_over_probes(const decode_point *dp, int n, double bw) {
    double mx = 0;
    for (int i = 0; i < n; i++)
        if (dp[i].bytes_per_token >= DECODE_OVER_MIN_BYTES)
            mx = fmax(mx, dp[i].bytes_per_token * dp[i].tok_s / (bw * 1e9));
    return mx;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv4 bench -m DIR [options]\n"
            "  --threads N         worker threads (default: all online CPUs)\n"
            "  --ctx LIST          decode context lengths (default 0,2048,16384,65536)\n"
            "  --prompt N          prefill prompt length (default 512; 0 = skip)\n"
            "  --fill random|prefill  how contexts are filled (default random)\n"
            "  --gen N             timed decode tokens per context (default 8, after 2 warm-up)\n"
            "  --mode fast|fp32|exact  numeric mode (default fast)\n"
            "  --bw-mb N           bandwidth probe buffer in MiB (default 1024)\n"
            "  --json              JSON on stdout\n");
}

/* Median time of the output head alone on a random hidden vector. */
static double head_ms(dsv4_model *m) {
    const dsv4_config *c = &m->cfg;
    float *x = xmalloc((size_t)c->dim * sizeof(float));
    float *y = xmalloc((size_t)c->vocab_size * sizeof(float));
    for (int i = 0; i < c->dim; i++) x[i] = (float)((i * 7919) % 200 - 100) * 0.01f;
    double t[7];
    linear(&m->head, x, 1, y, m->mode, 0, m->pool);
    for (int r = 0; r < 7; r++) {
        double t0 = now_sec();
        linear(&m->head, x, 1, y, m->mode, 0, m->pool);
        t[r] = now_sec() - t0;
    }
    qsort(t, 7, sizeof(double), cmp_double);
    free(x); free(y);
    return t[3] * 1e3;
}

static int fill_context(dsv4_seq *s, int ctx, int random_fill, int vocab, char *err, size_t errlen) {
    if (random_fill) return bench_fill_random(s, ctx, 1234 + (uint64_t)ctx, err, errlen);
    dsv4_seq_reset(s);
    int32_t ids[512];
    uint64_t r = 7;
    for (int done = 0; done < ctx;) {
        int n = ctx - done < 512 ? ctx - done : 512;
        for (int i = 0; i < n; i++) { r = r * 6364136223846793005ull + 1442695040888963407ull; ids[i] = (int32_t)((r >> 33) % (uint64_t)vocab); }
        if (dsv4_forward(s, ids, n, NULL, 0, err, errlen)) return -1;
        done += n;
    }
    return 0;
}

static int bench_decode(dsv4_model *m, dsv4_seq *s, int ctx, int random_fill, int ngen, double bw,
                        const model_account *A, double hms, decode_point *out, char *err, size_t errlen) {
    const dsv4_config *c = &m->cfg;
    if (fill_context(s, ctx, random_fill, c->vocab_size, err, errlen)) return -1;
    float *logits = xmalloc((size_t)c->vocab_size * sizeof(float));
    double *t = xmalloc((size_t)ngen * sizeof(double));
    int32_t id = 17;
    double cpu0 = 0, wall0 = 0;
    for (int i = 0; i < 2 + ngen; i++) {
        if (i == 2) { cpu0 = cpu_seconds(); wall0 = now_sec(); }
        double t0 = now_sec();
        if (dsv4_forward(s, &id, 1, logits, 0, err, errlen)) { free(logits); free(t); return -1; }
        double dt = now_sec() - t0;
        if (i >= 2) t[i - 2] = dt;
        id = dsv4_argmax(logits, c->vocab_size);
    }
    out->cpu_util = (cpu_seconds() - cpu0) / ((now_sec() - wall0) * m->n_threads);
    qsort(t, (size_t)ngen, sizeof(double), cmp_double);
    double med = ngen % 2 ? t[ngen / 2] : 0.5 * (t[ngen / 2 - 1] + t[ngen / 2]);
    out->ctx = ctx;
    out->tok_s = 1.0 / med;
    out->tok_s_min = 1.0 / t[ngen - 1];
    out->tok_s_max = 1.0 / t[0];
    out->bytes_per_token = A->bytes_per_token + bench_kv_bytes_read(m, ctx + 2 + ngen / 2);
    out->roofline = out->bytes_per_token * out->tok_s / (bw * 1e9);
    out->head_ms = hms;
    out->layer_ms = (med * 1e3 - hms) / c->n_layers;
    out->flash_tok_s = 1e3 / (FLASH_LAYERS * out->layer_ms + hms);
    free(logits); free(t);
    return 0;
}

/* Untimed decode tokens once after start-up (see cmd_bench). */
#define STARTUP_WARM_TOKENS 16
/* Timed prefill runs after one untimed run. */
#define PREFILL_RUNS 2

int cmd_bench(int argc, char **argv) {
    const char *dir = NULL, *ctxlist = "0,2048,16384,65536", *fillmode = "random", *mode = "fast";
    int threads = 0, prompt = 512, ngen = 8, json = 0, bw_mb = 1024;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--json")) json = 1;
        else if (!v) { fprintf(stderr, "dsv4 bench: %s needs a value or is unknown\n", a); usage(stderr); return 2; }
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) { dir = v; i++; }
        else if (!strcmp(a, "--threads")) { threads = atoi(v); i++; }
        else if (!strcmp(a, "--ctx")) { ctxlist = v; i++; }
        else if (!strcmp(a, "--prompt")) { prompt = atoi(v); i++; }
        else if (!strcmp(a, "--fill")) { fillmode = v; i++; }
        else if (!strcmp(a, "--gen")) { ngen = atoi(v); i++; }
        else if (!strcmp(a, "--mode")) { mode = v; i++; }
        else if (!strcmp(a, "--bw-mb")) { bw_mb = atoi(v); i++; }
        else { fprintf(stderr, "dsv4 bench: unknown option %s\n", a); usage(stderr); return 2; }
    }
    if (!dir) { fprintf(stderr, "dsv4 bench: -m DIR is required\n"); usage(stderr); return 2; }
    if (strcmp(fillmode, "random") && strcmp(fillmode, "prefill")) {
        fprintf(stderr, "dsv4 bench: --fill must be random or prefill\n"); return 2;
    }
    dsv4_mode md = !strcmp(mode, "fast") ? DSV4_MODE_FAST : !strcmp(mode, "fp32") ? DSV4_MODE_FP32
                 : !strcmp(mode, "exact") ? DSV4_MODE_EXACT : (dsv4_mode)-1;
    if ((int)md < 0) { fprintf(stderr, "dsv4 bench: --mode must be fast, fp32 or exact\n"); return 2; }
    if (ngen < 1 || ngen > 10000 || prompt < 0 || bw_mb < 16 || threads < 0) {
        fprintf(stderr, "dsv4 bench: bad --gen, --prompt, --bw-mb or --threads value\n"); return 2;
    }
    int ctxs[MAX_CTX_POINTS], nctx = 0;
    for (const char *p = ctxlist; *p;) {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 1 << 24 || nctx == MAX_CTX_POINTS) {
            fprintf(stderr, "dsv4 bench: bad --ctx list '%s'\n", ctxlist); return 2;
        }
        ctxs[nctx++] = (int)v;
        p = *end == ',' ? end + 1 : end;
        if (*end && *end != ',') { fprintf(stderr, "dsv4 bench: bad --ctx list '%s'\n", ctxlist); return 2; }
    }

    char err[512];
    dsv4_model *m = dsv4_model_load(dir, err, sizeof err);
    if (!m) { fprintf(stderr, "dsv4 bench: %s\n", err); return 1; }
    dsv4_model_set_threads(m, threads);
    dsv4_model_prefault(m);
    double huge = dsv4_model_hugepage_fraction(m);
    dsv4_model_set_mode(m, md);
    const dsv4_config *c = dsv4_model_config(m);
    model_account A;
    model_account_compute(m, &A);
    int nth = m->n_threads;
    fprintf(stderr, "bench: %s, %d layers, %d threads, kernels %s, mode %s\n", dir, c->n_layers, nth,
            cpu_isa_name(cpu_isa()), mode);

    if (huge >= 0) {
        fprintf(stderr, "weights     %.0f%% in 2 MiB pages\n", 100 * huge);
        /* the products read weights in 4 KiB pages more slowly (one core:
         * 23-26 against 28-30 GB/s, util.h); a share of them, left by
         * eviction and re-reading, goes unnoticed without this note */
        if (huge < 0.5)
            fprintf(stderr, "warning: most weights are in 4 KiB pages (their page cache was filled by writing or "
                            "copying the files); DSV4_REREAD=1 reads them back in 2 MiB pages, about 15%% faster "
                            "per core\n");
        else if (huge < 0.95)
            fprintf(stderr, "note: %.0f%% of the weights are in 4 KiB pages (parts of the page cache were evicted "
                            "and read back in smaller folios); DSV4_REREAD=1 reads the files back in 2 MiB pages\n",
                    100 * (1 - huge));
    }
    double load0 = loadavg();
    double bw = kern_probe_bandwidth(m->pool, (size_t)bw_mb << 20, 5);
    fprintf(stderr, "bandwidth   %.2f GB/s (read, %d threads, %d MiB buffer)\n", bw, nth, bw_mb);
    /* Where the threads sit explains the bandwidth: one thread's share, and
     * how far apart the first two are (num/kernels_probe.c) */
    double bw_1t = nth > 1 ? kern_probe_bandwidth(NULL, (size_t)bw_mb << 20, 3) : bw;
    double rt1 = kern_probe_core_round_trip(m->pool);
    if (nth > 1)
        fprintf(stderr, "bandwidth   %.2f GB/s with 1 thread; threads 0 and 1: cache line round trip %.0f ns (%s)\n",
                bw_1t, rt1, placement(rt1));
    int peak_bf16 = 0;
    double peak = kern_probe_gemm_peak(m->pool, &peak_bf16);
    fprintf(stderr, "gemm peak   %.1f GFLOP/s (%s tile, in cache)\n", peak, peak_bf16 ? "bf16" : "fp32");

    int maxctx = 0;
    for (int i = 0; i < nctx; i++) if (ctxs[i] > maxctx) maxctx = ctxs[i];
    int cap = maxctx + ngen + 16;
    if (cap < prompt + 16) cap = prompt + 16;
    dsv4_seq *s = dsv4_seq_new(m, cap, err, sizeof err);
    if (!s) { fprintf(stderr, "dsv4 bench: %s\n", err); dsv4_model_free(m); return 1; }

    /* Start-up warm-up, untimed: the first dozen decode tokens of a process
     * run up to 5x slower (the activation buffers' first touch, huge-page
     * collapse), which the 2 warm-up tokens of each point do not cover. */
    {
        float *lg = xmalloc((size_t)c->vocab_size * sizeof(float));
        int32_t id = 17;
        dsv4_seq_reset(s);
        for (int i = 0; i < STARTUP_WARM_TOKENS; i++) {
            if (dsv4_forward(s, &id, 1, lg, 0, err, sizeof err)) {
                fprintf(stderr, "dsv4 bench: warm-up: %s\n", err);
                free(lg); dsv4_seq_free(s); dsv4_model_free(m); return 1;
            }
            id = dsv4_argmax(lg, c->vocab_size);
        }
        free(lg);
    }
    double hms = head_ms(m);
    decode_point dp[MAX_CTX_POINTS];
    double dsecs[MAX_CTX_POINTS];
    /* The host's bandwidth drifts (35-75 GB/s seen on this VM within
     * minutes; cloud vCPUs moved between one AMD CCD and two): probe again
     * after the decode points and take the higher reading as the
     * roofline, so a dip during the first probe cannot flatter the ratio.
     * When the two readings disagree by more than PROBES_AGREE the host
     * changed level during the points, and their ratio would compare
     * decode at one level with bandwidth at the other: the points are
     * measured again, between the last probe and a new one (at most
     * BENCH_ATTEMPTS times; the JSON's "attempts" says how many). */
    double bw1 = bw, bw2 = 0, rt2 = 0, agree = PROBES_AGREE, over = 0;
    const char *agree_env = getenv("DSV4_BENCH_AGREE");   /* tests: 0 forces every attempt */
    if (agree_env && *agree_env) agree = atof(agree_env);
    int attempts = 0;
    for (;;) {
        attempts++;
        linear_profile_reset();
        for (int i = 0; i < nctx; i++) {
            double t0 = now_sec();
            if (bench_decode(m, s, ctxs[i], !strcmp(fillmode, "random"), ngen, bw1, &A, hms, &dp[i], err, sizeof err)) {
                fprintf(stderr, "dsv4 bench: decode at %d: %s\n", ctxs[i], err);
                dsv4_seq_free(s); dsv4_model_free(m); return 1;
            }
            dsecs[i] = now_sec() - t0;
        }
        linear_profile_report(stderr, "decode points");
        bw2 = kern_probe_bandwidth(m->pool, (size_t)bw_mb << 20, 5);
        rt2 = kern_probe_core_round_trip(m->pool);
        over = decode_over_probes(dp, nctx, fmax(bw1, bw2));
        int probes_agree = fabs(bw2 - bw1) <= agree * fmax(bw1, bw2), under = over <= DECODE_OVER_PROBE;
        if ((probes_agree && under) || attempts == BENCH_ATTEMPTS) break;
        if (!probes_agree)
            fprintf(stderr, "warning: the bandwidth probes before and after the decode points differ by %.0f%% (%.2f, "
                            "%.2f GB/s; round trip %.0f then %.0f ns): the host changed during the run; measuring the "
                            "decode points again (attempt %d of %d)\n",
                    100.0 * fabs(bw2 - bw1) / fmax(bw1, bw2), bw1, bw2, rt1, rt2, attempts + 1, BENCH_ATTEMPTS);
        else
            fprintf(stderr, "warning: a decode point read %.0f%% of the higher bandwidth probe (%.2f, %.2f GB/s): the "
                            "host was faster during the points than at either probe; measuring the decode points "
                            "again (attempt %d of %d)\n",
                    100.0 * over, bw1, bw2, attempts + 1, BENCH_ATTEMPTS);
        bw1 = bw2;
        rt1 = rt2;
    }
    if (rt1 > 0 && rt2 > 0 && (rt1 > RT_SEPARATE_NS) != (rt2 > RT_SEPARATE_NS))
        fprintf(stderr, "warning: the threads moved between L3 domains during the run (round trip %.0f then %.0f ns)\n",
                rt1, rt2);
    bw = fmax(bw1, bw2);
    fprintf(stderr, "bandwidth   %.2f GB/s after the decode points; roofline: the higher, %.2f GB/s\n", bw2, bw);
    if (fabs(bw2 - bw1) > agree * bw)
        fprintf(stderr, "warning: the two bandwidth probes differ by %.0f%% after %d attempts; the decode ratios are "
                        "against the higher one\n", 100.0 * fabs(bw2 - bw1) / bw, attempts);
    if (over > DECODE_OVER_PROBE)   /* of the last attempt, against the same bw */
        fprintf(stderr, "warning: a decode point still read %.0f%% of the higher probe after %d attempts: the host's "
                        "bandwidth moved during the points, and their ratios are not to be trusted\n",
                100.0 * over, attempts);
    for (int i = 0; i < nctx; i++) {
        dp[i].roofline = dp[i].bytes_per_token * dp[i].tok_s / (bw * 1e9);
        fprintf(stderr, "decode ctx %-6d %7.2f tok/s (min %.2f max %.2f)  %.3f GB/token  %5.1f%% of bandwidth  "
                        "layer %.2f ms  head %.2f ms  -> Flash (%d layers) %.2f tok/s  cpu %.0f%%  [%.1f s]\n",
                dp[i].ctx, dp[i].tok_s, dp[i].tok_s_min, dp[i].tok_s_max, dp[i].bytes_per_token / 1e9,
                100 * dp[i].roofline, dp[i].layer_ms, dp[i].head_ms, FLASH_LAYERS, dp[i].flash_tok_s,
                100 * dp[i].cpu_util, dsecs[i]);
    }

    double pf_tok_s = 0, pf_gflops = 0, pf_cpu = 0, pf_min = 0, pf_max = 0;
    if (prompt > 0) {
        int32_t *ids = xmalloc((size_t)prompt * sizeof(int32_t));
        for (int i = 0; i < prompt; i++) ids[i] = (int32_t)((i * 2654435761u) % (unsigned)c->vocab_size);
        float *logits = xmalloc((size_t)c->vocab_size * sizeof(float));
        /* one untimed run (first-touch of the activation buffers, like the
         * decode warm-up), then PREFILL_RUNS timed ones: their mean */
        int rc = 0;
        double dt = 0, cpu = 0;
        for (int r = 0; r <= PREFILL_RUNS && !rc; r++) {
            if (r == 1) linear_profile_reset();
            dsv4_seq_reset(s);
            double t0 = now_sec(), c0 = cpu_seconds();
            rc = dsv4_forward(s, ids, prompt, logits, 0, err, sizeof err);
            double d = now_sec() - t0;
            if (r == 0) continue;
            dt += d / PREFILL_RUNS;
            cpu += cpu_seconds() - c0;
            pf_min = r == 1 || prompt / d < pf_min ? prompt / d : pf_min;
            pf_max = prompt / d > pf_max ? prompt / d : pf_max;
        }
        pf_cpu = cpu / (dt * PREFILL_RUNS * nth);
        free(ids); free(logits);
        if (rc) { fprintf(stderr, "dsv4 bench: prefill: %s\n", err); dsv4_seq_free(s); dsv4_model_free(m); return 1; }
        linear_profile_report(stderr, "prefill runs");
        /* the GEMM peak again after the prefill: the higher reading counts */
        double peak2 = kern_probe_gemm_peak(m->pool, &peak_bf16);
        fprintf(stderr, "gemm peak   %.1f GFLOP/s after the prefill; ceiling: the higher, %.1f GFLOP/s\n", peak2,
                peak2 > peak ? peak2 : peak);
        if (peak2 > peak) peak = peak2;
        /* matmul FLOPs: every active weight once per token, the head once */
        double flops = 2.0 * (A.params_active - A.params_head) * prompt + 2.0 * A.params_head;
        pf_tok_s = prompt / dt;
        pf_gflops = flops / dt / 1e9;
        fprintf(stderr, "prefill %d  %.2f tok/s (min %.2f max %.2f)  %.1f GFLOP/s (%.1f%% of GEMM peak)  cpu %.0f%%  [%.1f s]\n",
                prompt, pf_tok_s, pf_min, pf_max, pf_gflops, 100 * pf_gflops / peak, 100 * pf_cpu, dt);
    }
    double rss = peak_rss_mb();
    fprintf(stderr, "peak RSS %.0f MB\n", rss);

    if (json) {
        printf("{\"model\": \"%s\", \"threads\": %d, \"kernels\": \"%s\", \"mode\": \"%s\", \"fill\": \"%s\",\n",
               dir, nth, cpu_isa_name(cpu_isa()), mode, fillmode);
        printf(" \"bandwidth_gbs\": %.3f,\n \"bandwidth_probes_gbs\": [%.3f, %.3f],\n \"bandwidth_1thread_gbs\": %.3f,\n"
               " \"core_round_trip_ns\": [%.1f, %.1f],\n \"attempts\": %d,\n \"decode\": [", bw, bw1, bw2, bw_1t, rt1, rt2,
               attempts);
        for (int i = 0; i < nctx; i++)
            printf("%s\n  {\"ctx\": %d, \"tok_s\": %.4f, \"tok_s_min\": %.4f, \"tok_s_max\": %.4f, \"bytes_per_token\": %.0f, "
                   "\"roofline_fraction\": %.4f, \"layer_ms\": %.4f, \"head_ms\": %.4f, \"flash_equiv_tok_s\": %.4f, "
                   "\"cpu_util\": %.3f}",
                   i ? "," : "", dp[i].ctx, dp[i].tok_s, dp[i].tok_s_min, dp[i].tok_s_max, dp[i].bytes_per_token,
                   dp[i].roofline, dp[i].layer_ms, dp[i].head_ms, dp[i].flash_tok_s, dp[i].cpu_util);
        printf("],\n \"prefill\": {\"tokens\": %d, \"tok_s\": %.4f, \"gflops\": %.3f, \"gemm_peak_gflops\": %.3f, "
               "\"gemm_peak_kernel\": \"%s\", \"cpu_util\": %.3f, \"tok_s_min\": %.4f, \"tok_s_max\": %.4f},\n",
               prompt, pf_tok_s, pf_gflops, peak, peak_bf16 ? "bf16" : "fp32", pf_cpu, pf_min, pf_max);
        printf(" \"bytes_per_token_ctx0\": %.0f, \"params_active\": %.0f, \"loadavg_start\": %.2f, \"loadavg_end\": %.2f, "
               "\"rss_mb\": %.1f, \"weights_hugepage_fraction\": %.3f}\n", A.bytes_per_token, A.params_active, load0,
               loadavg(), rss, huge);
    }
    dsv4_seq_free(s);
    dsv4_model_free(m);
    return 0;
}
