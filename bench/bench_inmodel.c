/*
 * bench_inmodel.c - one group of a model's decode products, timed in the
 * model's own weights (mmap'd, as `dsv4 bench` reads them), alternating
 * with a read probe of 1 GiB so that each timing has a bandwidth reading
 * on either side:
 *
 *   bench_inmodel MODEL_DIR ITERS GROUP
 *
 * GROUP: head, attn (wq_a, wq_b, wkv, wo_a, wo_b of every layer, one call
 * each), woa (the grouped wo_a, one linear_multi of its groups per layer,
 * as attention.c calls it), wqb (wq_b with the indexer's, one
 * linear_multi), w1 (w1 and w3 of 6 routed experts per layer), w2 (w2 of
 * 6 routed experts).  One token, FAST mode, 2 threads.
 *
 * Why: on a host whose bandwidth moves (cloud vCPUs placed on one AMD CCD
 * or two, other tenants) a product's GB/s from separate runs mixes kernel
 * and host; the ratio to the probes read just before and just after it
 * does not.  Prints, per placement (both probes above 45 GB/s: two CCDs;
 * both below 40: one), the mean fraction of the neighbouring probes and
 * the mean GB/s.  The first iteration (cold) is left out.
 */
#include "dsv4.h"
#include "model/model.h"
#include "num/kernels.h"
#include "num/linear.h"
#include "num/pool.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec * 1e-9;
}

#define PROBE_BYTES ((size_t)1 << 30)
static char *probe_buf;
static volatile unsigned long long probe_sink;

/* Each thread sums its half with the probe's own loop. */
static void probe_worker(void *arg, int tid, int nth) {
    (void)arg;
    size_t h = PROBE_BYTES / (size_t)nth;
    probe_sink += kern_probe_read((const uint64_t *)(probe_buf + (size_t)tid * h), h / 8);
}

static void fill_worker(void *arg, int tid, int nth) {
    (void)arg;
    size_t h = PROBE_BYTES / (size_t)nth;
    memset(probe_buf + (size_t)tid * h, 1, h);
}

static double probe(dsv4_pool *pool) {
    double t0 = now();
    pool_run(pool, probe_worker, NULL);
    return (double)PROBE_BYTES / (now() - t0) / 1e9;
}

#define MAXW 512
#define MAXITER 1000

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: %s MODEL_DIR ITERS GROUP   (GROUP: head attn woa wqb w1 w2)\n", argv[0]);
        return 2;
    }
    int iters = atoi(argv[2]);
    const char *group = argv[3];
    if (iters < 2 || iters > MAXITER) {
        fprintf(stderr, "ITERS: 2..%d\n", MAXITER);
        return 2;
    }
    char err[256];
    dsv4_model *m = dsv4_model_load(argv[1], err, sizeof err);
    if (!m) { fprintf(stderr, "%s\n", err); return 1; }
    dsv4_model_set_threads(m, 2);
    dsv4_model_prefault(m);
    const dsv4_config *c = &m->cfg;

    /* the products, in calls of `per` items each (1: plain linear) */
    static dsv4_weight sub[MAXW];
    const dsv4_weight *ws[MAXW];
    int nw = 0, per = 1;
    for (int l = 0; l < c->n_layers; l++) {
        layer_w *lw = &m->layers[l];
        if (nw + 2 * c->n_routed_experts + c->o_groups + 8 > MAXW) break;
        if (!strcmp(group, "head")) {
            if (l == 0) ws[nw++] = &m->head;
        } else if (!strcmp(group, "attn")) {
            const dsv4_weight *a[] = {&lw->wq_a, &lw->wq_b, &lw->wkv, &lw->wo_a, &lw->wo_b};
            for (int i = 0; i < 5; i++) ws[nw++] = a[i];
        } else if (!strcmp(group, "wqb")) {
            per = lw->idx_wq_b.data ? 2 : 1;
            ws[nw++] = &lw->wq_b;
            if (per == 2) ws[nw++] = &lw->idx_wq_b;
        } else if (!strcmp(group, "woa")) {
            int G = c->o_groups, R = c->o_lora_rank;
            per = G;
            for (int g = 0; g < G; g++) {   /* as attention.c slices it */
                dsv4_weight wg = lw->wo_a;
                size_t roff = (size_t)g * R;
                wg.rows = R;
                if (wg.type == W_FP8) {
                    wg.data = (const uint8_t *)wg.data + roff * wg.cols;
                    wg.scale += roff / 128 * wg.scale_cols;
                } else {
                    wg.data = (const uint8_t *)wg.data + roff * (weight_bytes(&lw->wo_a) / lw->wo_a.rows);
                }
                sub[nw] = wg;
                ws[nw] = &sub[nw];
                nw++;
            }
        } else if (!strcmp(group, "w1") || !strcmp(group, "w2")) {
            int w1 = group[1] == '1', E = c->n_routed_experts < 6 ? c->n_routed_experts : 6;
            if (!lw->w1 || !lw->w2) continue;
            per = w1 ? 2 * E : E;
            for (int e = 0; e < E; e++) {
                if (w1) { ws[nw++] = &lw->w1[e]; ws[nw++] = &lw->w3[e]; }
                else ws[nw++] = &lw->w2[e];
            }
        } else {
            fprintf(stderr, "unknown GROUP %s\n", group);
            return 2;
        }
    }
    if (!nw) { fprintf(stderr, "no products in group %s\n", group); return 1; }
    double bytes = 0;
    int maxrows = 0, maxcols = 0;
    for (int i = 0; i < nw; i++) {
        bytes += (double)weight_bytes(ws[i]);
        if (ws[i]->rows > maxrows) maxrows = ws[i]->rows;
        if (ws[i]->cols > maxcols) maxcols = ws[i]->cols;
    }
    float *x = malloc(sizeof(float) * (size_t)maxcols * per), *y = malloc(sizeof(float) * (size_t)maxrows * per);
    probe_buf = aligned_alloc((size_t)2 << 20, PROBE_BYTES);
    if (!x || !y || !probe_buf) { fprintf(stderr, "out of memory\n"); return 1; }
    madvise(probe_buf, PROBE_BYTES, MADV_HUGEPAGE);
    pool_run(m->pool, fill_worker, NULL);
    for (int i = 0; i < maxcols * per; i++) x[i] = (float)((i * 7919) % 13 - 6) / 6.0f;

    static double r[MAXITER][3];   /* probe before, product GB/s, probe after */
    linear_item it[MAXW];
    for (int k = 0; k < iters; k++) {
        r[k][0] = probe(m->pool);
        double t0 = now();
        for (int i0 = 0; i0 < nw; i0 += per) {
            if (per == 1) { linear(ws[i0], x, 1, y, DSV4_MODE_FAST, 0, m->pool); continue; }
            for (int i = 0; i < per; i++)
                it[i] = (linear_item){ws[i0 + i], x + (size_t)i * maxcols, 1, y + (size_t)i * maxrows, 0};
            linear_multi(it, per, DSV4_MODE_FAST, m->pool);
        }
        r[k][1] = bytes / (now() - t0) / 1e9;
        r[k][2] = probe(m->pool);
    }
    printf("%s: %d products in calls of %d, %.1f MB\n", group, nw, per, bytes / 1e6);
    for (int cls = 0; cls < 2; cls++) {
        int n = 0;
        double frac = 0, gbs = 0, pr = 0;
        for (int k = 1; k < iters; k++) {
            int two = r[k][0] > 45 && r[k][2] > 45, one = r[k][0] < 40 && r[k][2] < 40;
            if (cls == 0 ? !two : !one) continue;
            double p = (r[k][0] + r[k][2]) / 2;
            n++; frac += r[k][1] / p; gbs += r[k][1]; pr += p;
        }
        printf("%-8s %4d timings  probe %5.1f GB/s  products %5.1f GB/s  fraction %.3f\n", cls ? "one CCD" : "two CCDs",
               n, n ? pr / n : 0, n ? gbs / n : 0, n ? frac / n : 0);
    }
    free(x); free(y); free(probe_buf);
    dsv4_model_free(m);
    return 0;
}
