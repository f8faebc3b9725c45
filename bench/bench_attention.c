/*
 * bench_attention.c - the attention's inner loops on one core, the way
 * attend_four (src/model/attention.c) drives them for one decode row of
 * V4-Flash: 64 heads in groups of four, head_dim 512, keys in blocks of 64,
 * every key also the value vector (one shared KV).
 *
 *   build/bench/bench_attention [--keys N] [--heads H] [--hd D] [--reps R]
 *
 * Two ways of doing the same arithmetic, bit for bit (checked each run):
 *   per key   vec_dot4 per key for the scores, vec_axpy4 per key for P V
 *             (attend_four before 2026-12-05)
 *   blocked   vec_dot4x2 for two keys at a time, vec_axpy4_xs for a whole
 *             block of values with the four accumulators in registers
 * Scores (QK) and P V are timed apart and together; best of R rounds, wall
 * time of one thread.  Keys are visited in a scattered order, as the top-k
 * selection leaves them.  A decode row of the Flash slice at 2048 tokens
 * or more attends over 128 (window) + 512 (top-k) keys in its CSA layers,
 * 128 + 16 in the HCA layer, 128 in the sliding-window one.
 */
#include "num/cpu.h"
#include "num/vecops.h"
#include "util/util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { BLOCK = 64, ACC_PAD = 48 };   /* as attention.c: no 4 KiB aliasing */

typedef struct {
    int nk, heads, hd;
    const float *q;          /* [heads][hd] */
    const float **keys;      /* nk pointers into the cache */
    float *acc;              /* [4][hd + ACC_PAD] accumulators */
    float *scores;           /* [heads][nk] */
    float p[4][BLOCK];       /* softmax weights of one block */
} attn_case;

/* One pass over all head groups and key blocks; qk / pv: which half runs
 * (scores into c->scores, values into c->acc). */
static void run_pass(attn_case *c, int blocked, int qk, int pv) {
    for (int g = 0; g < c->heads / 4; g++) {
        const float *qh[4];
        float *ah[4];
        for (int h = 0; h < 4; h++) {
            qh[h] = c->q + (size_t)(g * 4 + h) * c->hd;
            ah[h] = c->acc + (size_t)h * (c->hd + ACC_PAD);
        }
        for (int b = 0; b < c->nk; b += BLOCK) {
            int e = b + BLOCK < c->nk ? b + BLOCK : c->nk, j = b;
            float d[8], *sc = c->scores + (size_t)g * 4 * c->nk;
            if (qk && blocked)
                for (; j + 2 <= e; j += 2) {
                    vec_dot4x2(qh, c->keys + j, c->hd, d);
                    for (int h = 0; h < 4; h++) { sc[h * c->nk + j] = d[h * 2]; sc[h * c->nk + j + 1] = d[h * 2 + 1]; }
                }
            if (qk)
                for (; j < e; j++) {
                    vec_dot4(qh, c->keys[j], c->hd, d);
                    for (int h = 0; h < 4; h++) sc[h * c->nk + j] = d[h];
                }
            if (pv && blocked) vec_axpy4_xs(ah, &c->p[0][0], BLOCK, c->keys + b, e - b, c->hd);
            if (pv && !blocked)
                for (j = b; j < e; j++) {
                    float pj[4] = {c->p[0][j - b], c->p[1][j - b], c->p[2][j - b], c->p[3][j - b]};
                    vec_axpy4(ah, pj, c->keys[j], c->hd);
                }
        }
    }
}

static double best_ms(attn_case *c, int blocked, int qk, int pv, int reps) {
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        memset(c->acc, 0, (size_t)4 * (c->hd + ACC_PAD) * sizeof(float));
        double t0 = now_sec();
        run_pass(c, blocked, qk, pv);
        double dt = now_sec() - t0;
        if (dt < best) best = dt;
    }
    return best * 1e3;
}

int main(int argc, char **argv) {
    attn_case c = {.nk = 640, .heads = 64, .hd = 512};
    int reps = 20;
    for (int i = 1; i < argc; i++) {
        if (i + 1 < argc && !strcmp(argv[i], "--keys")) c.nk = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--heads")) c.heads = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--hd")) c.hd = atoi(argv[++i]);
        else if (i + 1 < argc && !strcmp(argv[i], "--reps")) reps = atoi(argv[++i]);
        else {
            fprintf(stderr, "usage: bench_attention [--keys N] [--heads H (multiple of 4)] [--hd D] [--reps R]\n");
            return 2;
        }
    }
    if (c.nk < 1 || c.heads < 4 || c.heads % 4 || c.hd < 1 || reps < 1) {
        fprintf(stderr, "bench_attention: keys >= 1, heads a positive multiple of 4, hd >= 1, reps >= 1\n");
        return 2;
    }
    float *cache = xmalloc((size_t)c.nk * c.hd * sizeof(float));
    float *q = xmalloc((size_t)c.heads * c.hd * sizeof(float));
    size_t acc_bytes = (size_t)4 * (c.hd + ACC_PAD) * sizeof(float), sc_bytes = (size_t)c.heads * c.nk * sizeof(float);
    c.acc = xmalloc(acc_bytes);
    c.scores = xmalloc(sc_bytes);
    c.keys = xmalloc((size_t)c.nk * sizeof(float *));
    uint32_t s = 12345;
    for (size_t i = 0; i < (size_t)c.nk * c.hd; i++) { s = s * 1664525u + 1013904223u; cache[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    for (size_t i = 0; i < (size_t)c.heads * c.hd; i++) { s = s * 1664525u + 1013904223u; q[i] = (float)(s >> 8) / 16777216.0f - 0.5f; }
    for (int j = 0; j < c.nk; j++) c.keys[j] = cache + (size_t)((j * 37ull) % (unsigned)c.nk) * c.hd;
    for (int h = 0; h < 4; h++)
        for (int j = 0; j < BLOCK; j++) c.p[h][j] = 1.0f / (float)(1 + j + h);
    c.q = q;

    /* the two ways must agree bit for bit: scores and accumulated values */
    best_ms(&c, 0, 1, 1, 1);
    float *acc0 = xmalloc(acc_bytes), *sc0 = xmalloc(sc_bytes);
    memcpy(acc0, c.acc, acc_bytes);
    memcpy(sc0, c.scores, sc_bytes);
    best_ms(&c, 1, 1, 1, 1);
    int same = !memcmp(acc0, c.acc, acc_bytes) && !memcmp(sc0, c.scores, sc_bytes);

    double fma = (double)c.heads * c.nk * c.hd;   /* per half */
    printf("attention, one core (%s): %d heads x %d keys x %d, best of %d\n", cpu_isa_name(cpu_isa()), c.heads, c.nk,
           c.hd, reps);
    printf("%-9s %10s %10s %10s %12s\n", "", "QK ms", "PV ms", "both ms", "GFLOP/s");
    double t[2][3];
    for (int b = 0; b < 2; b++) {
        t[b][0] = best_ms(&c, b, 1, 0, reps);
        t[b][1] = best_ms(&c, b, 0, 1, reps);
        t[b][2] = best_ms(&c, b, 1, 1, reps);
        printf("%-9s %10.3f %10.3f %10.3f %12.1f\n", b ? "blocked" : "per key", t[b][0], t[b][1], t[b][2],
               4 * fma / (t[b][2] * 1e-3) / 1e9);
    }
    printf("blocked / per key: QK x%.2f, PV x%.2f, both x%.2f; results %s\n", t[0][0] / t[1][0], t[0][1] / t[1][1],
           t[0][2] / t[1][2], same ? "bit-identical" : "DIFFER");
    free(cache); free(q); free(c.acc); free(c.keys); free(c.scores); free(acc0); free(sc0);
    return same ? 0 : 1;
}
