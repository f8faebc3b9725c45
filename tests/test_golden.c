/*
 * test_golden.c - the engine against DeepSeek's reference on the tiny-a
 * golden checkpoint (tests/data/golden, see its README):
 *
 *  fp32 mode   every prompt row and every teacher-forced decode row within
 *              relative L2 1e-4 and max |diff| 1e-3 of the reference, the
 *              same greedy ids, per-layer intermediates within 1e-4, and the
 *              MTP head's logits;
 *  exact mode  median per-position relative L2 <= 0.1 and argmax agreement
 *              >= 85% over all prompt positions;
 *  both        prefill(N) == prefill(N-1) + decode(1); a sequence reset
 *              reproduces its first run (state fully cleared).
 */
#include "check.h"
#include "dsv4.h"
#include "format/safetensors.h"
#include "model/model.h"
#include <jansson.h>
#include <math.h>
#include <unistd.h>

#define GOLD DATA("golden/tiny-a")

static dsv4_model *model;
static json_t *golden;
static st_set lf32, lexact, inter32;
static int V;

static const float *tensor_f32(const st_set *s, const char *name, int64_t *rows) {
    const st_tensor *t = st_find(s, name);
    if (!t || t->dtype != ST_F32) return NULL;
    if (rows) *rows = t->shape[0];
    return t->data;
}

static double rel_l2(const float *a, const float *b, int n, double *maxabs) {
    double num = 0, den = 0, mx = 0;
    for (int i = 0; i < n; i++) {
        double d = (double)a[i] - b[i];
        num += d * d;
        den += (double)b[i] * b[i];
        if (fabs(d) > mx) mx = fabs(d);
    }
    if (maxabs) *maxabs = mx;
    return sqrt(num / (den > 0 ? den : 1));
}

static int prompt_ids(const char *L, int32_t *ids) {
    json_t *a = json_object_get(json_object_get(json_object_get(golden, "prompts"), L), "ids");
    int n = (int)json_array_size(a);
    for (int i = 0; i < n; i++) ids[i] = (int32_t)json_integer_value(json_array_get(a, (size_t)i));
    return n;
}

static const char *lengths[] = {"1", "3", "4", "5", "17", "64", "100"};

/* fp32: prompt rows, teacher-forced decode rows, greedy ids */
TEST(fp32_logits_match_reference) {
    dsv4_model_set_mode(model, DSV4_MODE_FP32);
    char err[256], name[64];
    for (size_t p = 0; p < sizeof lengths / sizeof *lengths; p++) {
        int32_t ids[128];
        int L = prompt_ids(lengths[p], ids);
        dsv4_seq *s = dsv4_seq_new(model, 256, err, sizeof err);
        float *lg = malloc((size_t)L * V * sizeof(float));
        CHECK(dsv4_forward(s, ids, L, lg, 1, err, sizeof err) == 0, "forward: %s", err);
        /* prompt rows: all of them, or the stored positions for long prompts */
        snprintf(name, sizeof name, "p%s.prompt_logits", lengths[p]);
        int64_t nrows;
        const float *g = tensor_f32(&lf32, name, &nrows);
        const int32_t *posv = NULL;
        if (!g) {
            snprintf(name, sizeof name, "p%s.prompt_logits_at", lengths[p]);
            g = tensor_f32(&lf32, name, &nrows);
            snprintf(name, sizeof name, "p%s.prompt_logits_positions", lengths[p]);
            posv = st_find(&lf32, name)->data;
        }
        CHECK(g != NULL, "golden prompt logits for p%s", lengths[p]);
        double worst = 0, worst_abs = 0;
        for (int r = 0; g && r < nrows; r++) {
            int pos = posv ? posv[r] : r;
            double mx, rl = rel_l2(lg + (size_t)pos * V, g + (size_t)r * V, V, &mx);
            if (rl > worst) worst = rl;
            if (mx > worst_abs) worst_abs = mx;
        }
        CHECK(worst <= 1e-4 && worst_abs <= 1e-3, "p%s prompt rows: rel L2 %.3g, max |diff| %.3g", lengths[p], worst, worst_abs);
        /* greedy generation, teacher-forced on the golden ids */
        snprintf(name, sizeof name, "p%s.gen_ids", lengths[p]);
        const int32_t *gen = st_find(&lf32, name)->data;
        snprintf(name, sizeof name, "p%s.decode_logits", lengths[p]);
        const float *gd = tensor_f32(&lf32, name, &nrows);
        CHECK(dsv4_argmax(lg + (size_t)(L - 1) * V, V) == gen[0], "p%s first greedy id", lengths[p]);
        float *row = malloc((size_t)V * sizeof(float));
        int ids_ok = 1;
        worst = worst_abs = 0;
        for (int i = 0; i < 32; i++) {
            CHECK(dsv4_forward(s, &gen[i], 1, row, 0, err, sizeof err) == 0, "decode: %s", err);
            double mx, rl = rel_l2(row, gd + (size_t)i * V, V, &mx);
            if (rl > worst) worst = rl;
            if (mx > worst_abs) worst_abs = mx;
            if (dsv4_argmax(row, V) != gen[i + 1]) ids_ok = 0;
        }
        CHECK(worst <= 1e-4 && worst_abs <= 1e-3, "p%s decode rows: rel L2 %.3g, max |diff| %.3g", lengths[p], worst, worst_abs);
        CHECK(ids_ok, "p%s greedy ids differ from the reference", lengths[p]);
        free(row);
        free(lg);
        dsv4_seq_free(s);
    }
}

/* fp32 intermediates of the 64-token prompt, layer by layer */
TEST(fp32_intermediates_match_reference) {
    dsv4_model_set_mode(model, DSV4_MODE_FP32);
    char err[256];
    int32_t ids[128];
    int L = prompt_ids("64", ids);
    dsv4_seq *s = dsv4_seq_new(model, 256, err, sizeof err);
    s->trace = trace_new();
    CHECK(dsv4_forward(s, ids, L, NULL, 0, err, sizeof err) == 0, "forward: %s", err);
    char path[] = "/tmp/dsv4_test_trace_XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    CHECK(trace_write(s->trace, path, err, sizeof err) == 0, "trace write: %s", err);
    st_set tr = {0};
    CHECK(st_open_file(&tr, path, err, sizeof err) == 0 && st_finish(&tr, err, sizeof err) == 0, "trace read: %s", err);
    /* the trace holds every row; final_hc_head only for logit rows (last) */
    const char *what[] = {"attn_in", "attn_out", "h_mid", "ffn_in", "ffn_out", "h_out"};
    int nl = dsv4_model_config(model)->n_layers;
    for (int l = 0; l < nl; l++)
        for (int w = 0; w < 6; w++) {
            char name[64];
            snprintf(name, sizeof name, "layer%d.%s", l, what[w]);
            const st_tensor *a = st_find(&tr, name), *b = st_find(&inter32, name);
            CHECK(a && b && a->nbytes == b->nbytes, "%s present with the same size", name);
            if (!a || !b || a->nbytes != b->nbytes) continue;
            double rl = rel_l2(a->data, b->data, (int)(a->nbytes / 4), NULL);
            CHECK(rl <= 1e-4, "%s rel L2 %.3g", name, rl);
        }
    st_close(&tr);
    unlink(path);
    trace_free(s->trace);
    dsv4_seq_free(s);
}

/* MTP head on the final streams, paired with the next ids (golden README 4) */
TEST(fp32_mtp_matches_reference) {
    dsv4_model_set_mode(model, DSV4_MODE_FP32);
    char err[256];
    int32_t ids[128];
    int L = prompt_ids("64", ids);
    dsv4_seq *s = dsv4_seq_new(model, 256, err, sizeof err);
    seq_keep_streams(s, 1);
    CHECK(dsv4_forward(s, ids, L, NULL, 0, err, sizeof err) == 0, "forward: %s", err);
    const st_tensor *nid = st_find(&inter32, "mtp_input_ids");
    int64_t rows;
    const float *g = tensor_f32(&inter32, "mtp_logits", &rows);
    CHECK(nid && g && rows == L, "golden MTP data present");
    if (!nid || !g) { dsv4_seq_free(s); return; }
    float *out = malloc((size_t)L * V * sizeof(float));
    CHECK(dsv4_mtp_logits(s, nid->data, L, out, err, sizeof err) == 0, "mtp: %s", err);
    double worst = 0;
    for (int r = 0; r < L; r++) {
        double rl = rel_l2(out + (size_t)r * V, g + (size_t)r * V, V, NULL);
        if (rl > worst) worst = rl;
    }
    CHECK(worst <= 1e-4, "MTP rows: worst rel L2 %.3g", worst);
    free(out);
    dsv4_seq_free(s);
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* exact mode: the loose check of the golden README 7 */
TEST(exact_mode_close_to_reference) {
    dsv4_model_set_mode(model, DSV4_MODE_EXACT);
    char err[256], name[64];
    double rels[512];
    int n = 0, agree = 0, bitexact = 0;
    for (size_t p = 0; p < sizeof lengths / sizeof *lengths; p++) {
        int32_t ids[128];
        int L = prompt_ids(lengths[p], ids);
        dsv4_seq *s = dsv4_seq_new(model, 256, err, sizeof err);
        float *lg = malloc((size_t)L * V * sizeof(float));
        CHECK(dsv4_forward(s, ids, L, lg, 1, err, sizeof err) == 0, "forward: %s", err);
        snprintf(name, sizeof name, "p%s.prompt_logits", lengths[p]);
        const float *g = tensor_f32(&lexact, name, NULL);
        for (int t = 0; g && t < L; t++) {
            rels[n] = rel_l2(lg + (size_t)t * V, g + (size_t)t * V, V, NULL);
            bitexact += rels[n] == 0;
            n++;
            agree += dsv4_argmax(lg + (size_t)t * V, V) == dsv4_argmax(g + (size_t)t * V, V);
        }
        free(lg);
        dsv4_seq_free(s);
    }
    qsort(rels, (size_t)n, sizeof(double), cmp_double);
    double median = rels[n / 2];
    fprintf(stderr, "exact mode: %d positions, median rel L2 %.4f, argmax agreement %.1f%%, bit-exact rows %d\n", n,
            median, 100.0 * agree / n, bitexact);
    CHECK(n == 194, "all prompt positions compared (%d)", n);
    CHECK(median <= 0.1, "median per-position rel L2 %.4f > 0.1", median);
    CHECK(agree >= 0.85 * n, "argmax agreement %d/%d < 85%%", agree, n);
}

/* prefill(N) against prefill(N-1) + decode(1), and reset reproducibility */
static void prefill_decode_equivalence(dsv4_mode mode, double tol) {
    dsv4_model_set_mode(model, mode);
    char err[256];
    int32_t ids[128];
    int L = prompt_ids("100", ids);
    int cuts[] = {2, 4, 9, 17, 33, 64, 100};
    float *a = malloc((size_t)V * sizeof(float)), *b = malloc((size_t)V * sizeof(float));
    dsv4_seq *s = dsv4_seq_new(model, 256, err, sizeof err);
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        int N = cuts[i] <= L ? cuts[i] : L;
        dsv4_seq_reset(s);
        CHECK(dsv4_forward(s, ids, N, a, 0, err, sizeof err) == 0, "%s", err);
        dsv4_seq_reset(s);
        CHECK(dsv4_forward(s, ids, N - 1, NULL, 0, err, sizeof err) == 0, "%s", err);
        CHECK(dsv4_forward(s, ids + N - 1, 1, b, 0, err, sizeof err) == 0, "%s", err);
        double rl = rel_l2(b, a, V, NULL);
        CHECK(rl <= tol, "mode %d: prefill(%d) vs prefill(%d)+decode: rel L2 %.3g", mode, N, N - 1, rl);
    }
    /* chunked prefill: 3 chunks of a 100-token prompt == one prefill */
    dsv4_seq_reset(s);
    CHECK(dsv4_forward(s, ids, L, a, 0, err, sizeof err) == 0, "%s", err);
    dsv4_seq_reset(s);
    CHECK(dsv4_forward(s, ids, 30, NULL, 0, err, sizeof err) == 0 &&
          dsv4_forward(s, ids + 30, 41, NULL, 0, err, sizeof err) == 0 &&
          dsv4_forward(s, ids + 71, L - 71, b, 0, err, sizeof err) == 0, "%s", err);
    double rl = rel_l2(b, a, V, NULL);
    CHECK(rl <= (tol > 0 ? tol : 1e-6) * 10 + (mode == DSV4_MODE_EXACT ? 0.05 : 0), "mode %d: chunked prefill rel L2 %.3g", mode, rl);
    free(a);
    free(b);
    dsv4_seq_free(s);
}

TEST(prefill_decode_equivalence_fp32) { prefill_decode_equivalence(DSV4_MODE_FP32, 1e-5); }
TEST(prefill_decode_equivalence_exact) { prefill_decode_equivalence(DSV4_MODE_EXACT, 0.0); }
TEST(prefill_decode_equivalence_fast) { prefill_decode_equivalence(DSV4_MODE_FAST, 2e-2); }

/* Two sequences on one model do not interfere; batched decode equals
 * separate decode. */
TEST(independent_sequences_and_batch) {
    dsv4_model_set_mode(model, DSV4_MODE_FP32);
    char err[256];
    int32_t a_ids[128], b_ids[128];
    int La = prompt_ids("17", a_ids), Lb = prompt_ids("5", b_ids);
    dsv4_seq *a = dsv4_seq_new(model, 256, err, sizeof err), *b = dsv4_seq_new(model, 256, err, sizeof err);
    dsv4_seq *a2 = dsv4_seq_new(model, 256, err, sizeof err), *b2 = dsv4_seq_new(model, 256, err, sizeof err);
    float *ref = malloc((size_t)2 * V * sizeof(float)), *bat = malloc((size_t)2 * V * sizeof(float));
    dsv4_forward(a, a_ids, La, NULL, 0, err, sizeof err);
    dsv4_forward(b, b_ids, Lb, NULL, 0, err, sizeof err);
    dsv4_seq_copy(a2, a);
    dsv4_seq_copy(b2, b);
    int32_t next[2] = {7, 9};
    dsv4_forward(a, &next[0], 1, ref, 0, err, sizeof err);
    dsv4_forward(b, &next[1], 1, ref + V, 0, err, sizeof err);
    dsv4_seq *pair[2] = {a2, b2};
    CHECK(dsv4_forward_batch(pair, next, 2, bat, err, sizeof err) == 0, "batch: %s", err);
    CHECK(rel_l2(bat, ref, V, NULL) <= 1e-6 && rel_l2(bat + V, ref + V, V, NULL) <= 1e-6,
          "batched decode differs from single decode");
    CHECK(dsv4_seq_pos(a2) == La + 1 && dsv4_seq_pos(b2) == Lb + 1, "positions advance");
    free(ref); free(bat);
    dsv4_seq_free(a); dsv4_seq_free(b); dsv4_seq_free(a2); dsv4_seq_free(b2);
}

TEST(errors_are_reported) {
    char err[256];
    dsv4_seq *s = dsv4_seq_new(model, 8, err, sizeof err);
    int32_t bad = V + 5, ids[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9};
    CHECK(dsv4_forward(s, &bad, 1, NULL, 0, err, sizeof err) == -1 && strstr(err, "out of range"), "bad id: %s", err);
    CHECK(dsv4_forward(s, ids, 9, NULL, 0, err, sizeof err) == -1 && strstr(err, "context"), "overflow: %s", err);
    CHECK(dsv4_seq_pos(s) == 0, "a failed call consumes nothing");
    dsv4_seq_free(s);
}

int main(void) {
    char err[512];
    model = dsv4_model_load(GOLD, err, sizeof err);
    if (!model) { fprintf(stderr, "load: %s\n", err); return 1; }
    V = dsv4_model_config(model)->vocab_size;
    json_error_t je;
    golden = json_load_file(GOLD "/golden.json", 0, &je);
    if (!golden || st_open_file(&lf32, GOLD "/logits_fp32.safetensors", err, sizeof err) || st_finish(&lf32, err, sizeof err) ||
        st_open_file(&lexact, GOLD "/logits_exact.safetensors", err, sizeof err) || st_finish(&lexact, err, sizeof err) ||
        st_open_file(&inter32, GOLD "/intermediates_fp32.safetensors", err, sizeof err) || st_finish(&inter32, err, sizeof err)) {
        fprintf(stderr, "golden data: %s\n", err);
        return 1;
    }
    RUN(fp32_logits_match_reference);
    RUN(fp32_intermediates_match_reference);
    RUN(fp32_mtp_matches_reference);
    RUN(exact_mode_close_to_reference);
    RUN(prefill_decode_equivalence_fp32);
    RUN(prefill_decode_equivalence_exact);
    RUN(prefill_decode_equivalence_fast);
    RUN(independent_sequences_and_batch);
    RUN(errors_are_reported);
    st_close(&lf32); st_close(&lexact); st_close(&inter32);
    json_decref(golden);
    dsv4_model_free(model);
    return check_summary();
}
