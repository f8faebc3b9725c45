/*
 * cmd_logits.c - `dsv4 logits`: run token ids through the model and write
 * the logits to a safetensors file (the interface of the correctness
 * checks).
 *
 *   dsv4 logits -m DIR --ids 1,2,3 [--prefill K] [--decode N]
 *               [--mode fast|exact|fp32] [--all] [--mtp] [--threads N]
 *               -o OUT.safetensors
 *
 * The first K ids go through one batched prefill, the remaining ids through
 * one decode step each (teacher forcing), then N ids are generated
 * greedily, each fed back except the last.  `logits` (F32) has one row per
 * prediction: every input position with --all (else from the last prefill
 * position on), then one row per generated id after the first.  `ids` (I32)
 * holds the generated ids.  --mtp adds `mtp_logits`: for every input
 * position s, the MTP head on the final streams at s and the id at s+1 (the
 * first generated id, or the greedy prediction, after the last).
 */
#include "cli/cli.h"
#include "dsv4.h"
#include "format/safetensors.h"
#include "model/model.h"
#include "util/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void usage(void) {
    fprintf(stderr, "usage: dsv4 logits -m DIR --ids 1,2,3 [--prefill K] [--decode N] [--mode fast|exact|fp32]\n"
                    "                   [--all] [--mtp] [--threads N] [--trace T.safetensors] -o OUT.safetensors\n");
}

int parse_mode(const char *s, dsv4_mode *mode);
int parse_mode(const char *s, dsv4_mode *mode) {
    if (!strcmp(s, "fast")) *mode = DSV4_MODE_FAST;
    else if (!strcmp(s, "exact")) *mode = DSV4_MODE_EXACT;
    else if (!strcmp(s, "fp32")) *mode = DSV4_MODE_FP32;
    else return -1;
    return 0;
}

/* "1,2,3" or "[1, 2, 3]" -> ids; returns count or -1. */
static int parse_ids(const char *s, int32_t **out) {
    int cap = 16, n = 0;
    int32_t *ids = xmalloc((size_t)cap * sizeof(int32_t));
    const char *p = s;
    while (*p == ' ' || *p == '[') p++;
    while (*p && *p != ']') {
        char *end;
        long v = strtol(p, &end, 10);
        if (end == p || v < 0 || v > 0x7fffffff) { free(ids); return -1; }
        if (n == cap) ids = xrealloc(ids, (size_t)(cap *= 2) * sizeof(int32_t));
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ') p++;
        if (*p == ',') p++;
        else if (*p && *p != ']') { free(ids); return -1; }
        while (*p == ' ') p++;
    }
    *out = ids;
    return n;
}

int cmd_logits(int argc, char **argv) {
    const char *dir = NULL, *ids_s = NULL, *out = NULL, *trace_out = NULL;
    int prefill = -1, decode = 0, all = 0, mtp = 0, threads = 0;
    dsv4_mode mode = DSV4_MODE_FAST;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
        if (!strcmp(a, "-m") && has) dir = argv[++i];
        else if (!strcmp(a, "--ids") && has) ids_s = argv[++i];
        else if (!strcmp(a, "--prefill") && has) prefill = atoi(argv[++i]);
        else if (!strcmp(a, "--decode") && has) decode = atoi(argv[++i]);
        else if (!strcmp(a, "--threads") && has) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--mode") && has) {
            if (parse_mode(argv[++i], &mode)) { fprintf(stderr, "dsv4 logits: unknown mode '%s' (fast, exact, fp32)\n", argv[i]); return 2; }
        } else if (!strcmp(a, "--all")) all = 1;
        else if (!strcmp(a, "--mtp")) mtp = 1;
        else if (!strcmp(a, "-o") && has) out = argv[++i];
        else if (!strcmp(a, "--trace") && has) trace_out = argv[++i];
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(); return 0; }
        else { fprintf(stderr, "dsv4 logits: unknown or incomplete option '%s'\n", a); usage(); return 2; }
    }
    if (!dir || !ids_s || !out) { usage(); return 2; }
    int32_t *ids;
    int L = parse_ids(ids_s, &ids);
    if (L <= 0) { fprintf(stderr, "dsv4 logits: --ids must be a non-empty comma-separated list of token ids\n"); return 2; }
    if (prefill < 0 || prefill > L) prefill = L;
    if (prefill == 0) prefill = 1;
    if (decode < 0) { fprintf(stderr, "dsv4 logits: --decode must be >= 0\n"); free(ids); return 2; }

    char err[1024];
    dsv4_model *m = dsv4_model_load(dir, err, sizeof err);
    if (!m) { fprintf(stderr, "dsv4 logits: %s\n", err); free(ids); return 1; }
    if (threads > 0) dsv4_model_set_threads(m, threads);
    dsv4_model_set_mode(m, mode);
    const dsv4_config *c = dsv4_model_config(m);
    int V = c->vocab_size, rc = 1;
    if (mtp && !c->n_mtp_layers) { fprintf(stderr, "dsv4 logits: %s has no MTP layer\n", dir); dsv4_model_free(m); free(ids); return 1; }
    dsv4_seq *s = dsv4_seq_new(m, L + decode + 8, err, sizeof err);
    if (!s) { fprintf(stderr, "dsv4 logits: %s\n", err); dsv4_model_free(m); free(ids); return 1; }
    if (mtp) seq_keep_streams(s, 1);
    if (trace_out) s->trace = trace_new();

    int in_rows = all ? L : L - prefill + 1;
    int rows = in_rows + (decode > 0 ? decode - 1 : 0);
    float *logits = xmalloc((size_t)rows * V * sizeof(float));
    int32_t *gen = xmalloc((size_t)(decode + 1) * sizeof(int32_t));
    float *cur = logits;
    /* prefill */
    if (dsv4_forward(s, ids, prefill, all ? cur : cur, all, err, sizeof err)) goto fail;
    cur += (size_t)(all ? prefill : 1) * V;
    /* teacher-forced decode of the remaining ids */
    for (int i = prefill; i < L; i++) {
        if (dsv4_forward(s, ids + i, 1, cur, 0, err, sizeof err)) goto fail;
        cur += V;
    }
    /* greedy generation */
    for (int i = 0; i < decode; i++) {
        gen[i] = dsv4_argmax(cur - V, V);
        if (i + 1 < decode) {
            if (dsv4_forward(s, gen + i, 1, cur, 0, err, sizeof err)) goto fail;
            cur += V;
        }
    }
    st_writer *w = st_writer_new();
    int64_t shape[2] = {rows, V};
    st_writer_add(w, "logits", ST_F32, 2, shape, logits, (size_t)rows * V * sizeof(float));
    int64_t gshape[1] = {decode};
    st_writer_add(w, "ids", ST_I32, 1, gshape, gen, (size_t)decode * sizeof(int32_t));
    float *ml = NULL;
    if (mtp) {
        int32_t *next = xmalloc((size_t)L * sizeof(int32_t));
        for (int i = 0; i + 1 < L; i++) next[i] = ids[i + 1];
        /* the id after the last input: the greedy prediction from it */
        next[L - 1] = decode > 0 ? gen[0] : dsv4_argmax(logits + (size_t)(in_rows - 1) * V, V);
        ml = xmalloc((size_t)L * V * sizeof(float));
        if (dsv4_mtp_logits(s, next, L, ml, err, sizeof err)) { free(next); st_writer_free(w); goto fail; }
        free(next);
        int64_t mshape[2] = {L, V};
        st_writer_add(w, "mtp_logits", ST_F32, 2, mshape, ml, (size_t)L * V * sizeof(float));
    }
    if (st_writer_write(w, out, err, sizeof err)) { st_writer_free(w); free(ml); goto fail; }
    st_writer_free(w);
    free(ml);
    if (trace_out && trace_write(s->trace, trace_out, err, sizeof err)) goto fail;
    rc = 0;
    goto done;
fail:
    fprintf(stderr, "dsv4 logits: %s\n", err);
done:
    free(logits);
    free(gen);
    free(ids);
    if (s) trace_free(s->trace);
    dsv4_seq_free(s);
    dsv4_model_free(m);
    return rc;
}
