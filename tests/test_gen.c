/*
 * test_gen.c - `dsv4 gen` checkpoints: the tiny preset against the golden
 * tiny-a inventory (names, dtypes, shapes, shard split, index, config keys),
 * the release's Flash/Pro tensor counts and sizes, value sanity (no NaN
 * codes, power-of-two scales, distinct hash ids, weight statistics and a
 * logit-spread proxy), determinism per seed and thread count, the default
 * preset with its embedded tokenizer, and the concurrent first use of the
 * default-model cache.
 */
#include "check.h"
#include "dsv4.h"
#include "format/safetensors.h"
#include "model/gen.h"
#include "num/numfmt.h"
#include "util/util.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define GOLDEN DATA("golden/tiny-a")

static char tmproot[256];

static const char *tmpdir(const char *name) {
    static char buf[8][512];
    static int k;
    char *b = buf[k++ & 7];
    snprintf(b, 512, "%s/%s", tmproot, name);
    return b;
}

static void rm_rf(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    char p[1024];
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (!lstat(p, &st) && S_ISDIR(st.st_mode)) rm_rf(p);
        else unlink(p);
    }
    closedir(d);
    rmdir(dir);
}

static int gen(const char *preset, uint64_t seed, int threads, const char *dir) {
    dsv4_gen_opts o;
    char err[256];
    if (dsv4_gen_preset(preset, &o, err, sizeof err)) { fprintf(stderr, "%s\n", err); return -1; }
    o.seed = seed;
    o.threads = threads;
    if (dsv4_gen_write(&o, dir, err, sizeof err)) { fprintf(stderr, "gen %s: %s\n", preset, err); return -1; }
    return 0;
}

static float tensor_value(const st_tensor *t, const st_set *set, int64_t i);

TEST(e4m3_encoder) {
    numfmt_init();
    int bad = 0;
    for (int b = 0; b < 256; b++) {
        if ((b & 0x7f) == 0x7f) continue;
        if (dsv4_gen_e4m3_encode(e4m3_table[b]) != b) bad++;
    }
    CHECK(bad == 0, "%d E4M3 values do not round-trip through the encoder", bad);
    CHECK(dsv4_gen_e4m3_encode(1e6f) == 0x7e && dsv4_gen_e4m3_encode(-1e6f) == 0xfe, "saturation at +-448");
    CHECK(dsv4_gen_e4m3_encode(464.0f) == 0x7e, "464 must saturate, not become the NaN code");
    CHECK(dsv4_gen_e4m3_encode(0.3f) == 0x2a, "0.3 -> 0x2a (0.3125), got 0x%02x", dsv4_gen_e4m3_encode(0.3f));
}

/* The release inventory: exact tensor count and byte size of V4-Flash
 * (docs §2.1: 69,187 tensors, total_size 159,609,485,896) and Pro's count. */
TEST(release_inventory_sizes) {
    dsv4_gen_opts o;
    char err[256];
    int n = 0;
    CHECK(!dsv4_gen_preset("flash", &o, err, sizeof err), "flash preset");
    CHECK(dsv4_gen_total_bytes(&o, &n) == 159609485896ull && n == 69187, "flash: %d tensors %llu bytes", n,
          (unsigned long long)dsv4_gen_total_bytes(&o, NULL));
    CHECK(!dsv4_gen_preset("pro", &o, err, sizeof err), "pro preset");
    dsv4_gen_total_bytes(&o, &n);
    CHECK(n == 145116, "pro: %d tensors, release has 145116", n);
    CHECK(!dsv4_gen_preset("tiny", &o, err, sizeof err), "tiny preset");
    CHECK(dsv4_gen_total_bytes(&o, &n) == 10055884ull && n == 427, "tiny: %d tensors (golden 427, 10055884 bytes)", n);
}

TEST(flash_slice_geometry) {
    dsv4_gen_opts o;
    char err[256];
    CHECK(!dsv4_gen_preset("flash", &o, err, sizeof err), "flash preset");
    CHECK(!dsv4_gen_override(&o, 4, 32, 0, 0, 0, err, sizeof err), "override: %s", err);
    const dsv4_config *c = &o.cfg;
    CHECK(c->n_layers == 4 && c->compress_ratios[0] == 0 && c->compress_ratios[1] == 4 && c->compress_ratios[2] == 128 &&
              c->compress_ratios[3] == 4 && c->compress_ratios[4] == 0,
          "flash --layers 4 ratios %d,%d,%d,%d,%d", c->compress_ratios[0], c->compress_ratios[1], c->compress_ratios[2],
          c->compress_ratios[3], c->compress_ratios[4]);
    CHECK(c->n_hash_layers == 3 && c->n_routed_experts == 32 && c->n_activated_experts == 6, "hash %d experts %d",
          c->n_hash_layers, c->n_routed_experts);
    CHECK(!dsv4_gen_override(&o, 2, 8, 0, 0, 0, err, sizeof err) && o.cfg.n_hash_layers == 2, "2 layers: hash = 2");
    CHECK(dsv4_gen_override(&o, 0, 4, 0, 0, 0, err, sizeof err) == -1 && strstr(err, "top-k"),
          "4 experts with top-6 must be refused: %s", err);
    CHECK(!dsv4_gen_preset("flash", &o, err, sizeof err) && dsv4_gen_override(&o, 0, 0, 0, 0, 200, err, sizeof err) == -1,
          "dim 200 must be refused");
    /* the config text round-trips through the loader's parser */
    CHECK(!dsv4_gen_preset("pro", &o, err, sizeof err) && !dsv4_gen_override(&o, 4, 16, 0, 0, 0, err, sizeof err), "pro");
    char *js = dsv4_gen_config_json(&o);
    dsv4_config pc;
    CHECK(!dsv4_config_parse(js, strlen(js), &pc, err, sizeof err) && pc.n_layers == 4 && pc.compress_ratios[0] == 128 &&
              pc.compress_ratios[2] == 4 && pc.route_scale == 2.5f && pc.dim == 7168,
          "pro slice config: %s", err);
    free(js);
}

/* Generated tiny == golden tiny-a in every name, dtype, shape and shard. */
TEST(tiny_matches_golden_inventory) {
    const char *dir = tmpdir("tiny");
    CHECK(gen("tiny", 0, 2, dir) == 0, "generate tiny");
    st_set g = {0}, t = {0};
    char err[512];
    CHECK(!st_open_dir(&g, GOLDEN, err, sizeof err), "open golden: %s", err);
    int ok = !st_open_dir(&t, dir, err, sizeof err);
    CHECK(ok, "open generated: %s", err);
    if (!ok) { st_close(&g); return; }
    CHECK(g.n_tensors == t.n_tensors, "tensor count %d vs golden %d", t.n_tensors, g.n_tensors);
    CHECK(g.n_files == t.n_files, "shards %d vs golden %d", t.n_files, g.n_files);
    int missing = 0, mism = 0;
    for (int i = 0; i < g.n_tensors; i++) {
        const st_tensor *a = &g.tensors[i], *b = st_find(&t, a->name);
        if (!b) { if (missing++ < 3) fprintf(stderr, "missing %s\n", a->name); continue; }
        int same = a->dtype == b->dtype && a->ndim == b->ndim && a->nbytes == b->nbytes;
        for (int d = 0; same && d < a->ndim; d++) same = a->shape[d] == b->shape[d];
        if (!same && mism++ < 3) fprintf(stderr, "differs: %s\n", a->name);
    }
    CHECK(missing == 0 && mism == 0, "%d missing, %d with other dtype/shape", missing, mism);
    st_close(&g);
    st_close(&t);
}

static json_t *load_json(const char *dir, const char *name) {
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    return json_load_file(p, 0, NULL);
}

TEST(tiny_index_and_config) {
    const char *dir = tmpdir("tiny");
    json_t *gi = load_json(GOLDEN, "model.safetensors.index.json"), *ti = load_json(dir, "model.safetensors.index.json");
    CHECK(gi && ti, "index files parse");
    if (!gi || !ti) return;
    CHECK(json_integer_value(json_object_get(json_object_get(ti, "metadata"), "total_size")) == 10055884,
          "total_size");
    /* same weight_map, in the same (module) order */
    json_t *gw = json_object_get(gi, "weight_map"), *tw = json_object_get(ti, "weight_map");
    CHECK(json_object_size(gw) == json_object_size(tw), "weight_map sizes");
    void *ga = json_object_iter(gw), *ta = json_object_iter(tw);
    int order = 0;
    for (; ga && ta; ga = json_object_iter_next(gw, ga), ta = json_object_iter_next(tw, ta))
        order += strcmp(json_object_iter_key(ga), json_object_iter_key(ta)) != 0;
    CHECK(order == 0, "weight_map: %d names out of order", order);
    /* total_size equals the data in the shards */
    st_set t = {0};
    char err[512];
    if (!st_open_dir(&t, dir, err, sizeof err)) {
        uint64_t sum = 0;
        for (int i = 0; i < t.n_tensors; i++) sum += t.tensors[i].nbytes;
        CHECK(sum == 10055884, "sum of tensor bytes %llu", (unsigned long long)sum);
        st_close(&t);
    }
    json_decref(gi);
    json_decref(ti);

    /* config.json: the golden key set, in order, and the same parsed config */
    json_t *gc = load_json(GOLDEN, "config.json"), *tc = load_json(dir, "config.json");
    CHECK(gc && tc, "config files parse");
    if (!gc || !tc) return;
    CHECK(json_object_size(gc) == json_object_size(tc), "config key count %zu vs %zu", json_object_size(tc),
          json_object_size(gc));
    int keys = 0;
    for (ga = json_object_iter(gc), ta = json_object_iter(tc); ga && ta;
         ga = json_object_iter_next(gc, ga), ta = json_object_iter_next(tc, ta))
        keys += strcmp(json_object_iter_key(ga), json_object_iter_key(ta)) != 0;
    CHECK(keys == 0, "%d config keys differ from tiny-a's", keys);
    CHECK(json_equal(gc, tc), "config.json values equal tiny-a's");
    json_decref(gc);
    json_decref(tc);
    size_t la, lb;
    char pa[1024];
    snprintf(pa, sizeof pa, "%s/config.json", dir);
    char *a = read_file(GOLDEN "/config.json", &la, err, sizeof err), *b = read_file(pa, &lb, err, sizeof err);
    dsv4_config ca, cb;
    CHECK(a && b && !dsv4_config_parse(a, la, &ca, err, sizeof err) && !dsv4_config_parse(b, lb, &cb, err, sizeof err) &&
              !memcmp(&ca, &cb, sizeof ca),
          "parsed configs equal");
    free(a);
    free(b);
    struct stat st;
    snprintf(pa, sizeof pa, "%s/tokenizer.json", dir);
    CHECK(stat(pa, &st) != 0, "no tokenizer.json for vocab 1024");
}

static float tensor_value(const st_tensor *t, const st_set *set, int64_t i) {
    switch (t->dtype) {
    case ST_BF16: return bf16_to_f32(((const uint16_t *)t->data)[i]);
    case ST_F32: return ((const float *)t->data)[i];
    case ST_F8_E4M3: {
        char sn[160];
        snprintf(sn, sizeof sn, "%.*s.scale", (int)(strlen(t->name) - 7), t->name);
        const st_tensor *s = st_find(set, sn);
        int64_t cols = t->shape[1], r = i / cols, c = i % cols;
        return e4m3_to_f32(((const uint8_t *)t->data)[i]) *
               e8m0_to_f32(((const uint8_t *)s->data)[(r / 128) * s->shape[1] + c / 128]);
    }
    case ST_I8: {   /* FP4: logical element i of [out, 2*cols] */
        char sn[160];
        snprintf(sn, sizeof sn, "%.*s.scale", (int)(strlen(t->name) - 7), t->name);
        const st_tensor *s = st_find(set, sn);
        int64_t lc = 2 * t->shape[1], r = i / lc, c = i % lc;
        uint8_t b = ((const uint8_t *)t->data)[r * t->shape[1] + c / 2];
        return e2m1_table[c & 1 ? b >> 4 : b & 15] * e8m0_to_f32(((const uint8_t *)s->data)[r * s->shape[1] + c / 32]);
    }
    default: return 0;
    }
}

static double tensor_std(const st_set *set, const char *name) {
    const st_tensor *t = st_find(set, name);
    if (!t) return -1;
    int64_t n = st_numel(t) * (t->dtype == ST_I8 ? 2 : 1);
    double s = 0, s2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double v = tensor_value(t, set, i);
        s += v, s2 += v * v;
    }
    return sqrt(s2 / n - (s / n) * (s / n));
}

/* Every stored value: finite floats, no E4M3 NaN codes, sane UE8M0
 * exponents, distinct in-range hash ids. */
static void check_values(const st_set *set, int n_experts) {
    int nan = 0, e4nan = 0, badscale = 0, badids = 0, misaligned = 0;
    for (int i = 0; i < set->n_tensors; i++) {
        const st_tensor *t = &set->tensors[i];
        misaligned += (uintptr_t)t->data % st_dtype_size(t->dtype) != 0;
        int64_t n = st_numel(t);
        const uint8_t *b = t->data;
        if (t->dtype == ST_BF16)   /* exponent all ones = Inf/NaN */
            for (int64_t k = 0; k < n; k++) nan += (((const uint16_t *)t->data)[k] & 0x7f80) == 0x7f80;
        if (t->dtype == ST_F32)
            for (int64_t k = 0; k < n; k++) nan += !isfinite(((const float *)t->data)[k]);
        if (t->dtype == ST_F8_E4M3)
            for (int64_t k = 0; k < n; k++) e4nan += (b[k] & 0x7f) == 0x7f;
        if (t->dtype == ST_F8_E8M0)
            for (int64_t k = 0; k < n; k++) badscale += b[k] == 255 || b[k] < 127 - 40 || b[k] > 127 + 8;
        if (t->dtype == ST_I64) {
            const int64_t *id = t->data;
            int64_t k = t->shape[1];
            for (int64_t r = 0; r < t->shape[0]; r++)
                for (int64_t a = 0; a < k; a++) {
                    badids += id[r * k + a] < 0 || id[r * k + a] >= n_experts;
                    for (int64_t c = 0; c < a; c++) badids += id[r * k + a] == id[r * k + c];
                }
        }
    }
    CHECK(misaligned == 0, "%d tensors not aligned to their element size", misaligned);
    CHECK(nan == 0, "%d non-finite BF16/F32 values", nan);
    CHECK(e4nan == 0, "%d E4M3 NaN codes", e4nan);
    CHECK(badscale == 0, "%d UE8M0 scales outside 2^-40..2^8", badscale);
    CHECK(badids == 0, "%d bad tid2eid entries", badids);
}

/* head . rmsnorm(embed[v]) over a few tokens: its std, and the mean |cos|
 * between head rows and the mean embedding row (the common direction). */
static double logit_proxy(const st_set *t, double *cos_out) {
    const st_tensor *E = st_find(t, "embed.weight"), *H = st_find(t, "head.weight");
    int V = (int)E->shape[0], D = (int)E->shape[1];
    float *x = xmalloc((size_t)D * sizeof(float)), *mean = xcalloc((size_t)D, sizeof(float));
    for (int v = 0; v < V; v++)
        for (int j = 0; j < D; j++) mean[j] += tensor_value(E, t, (int64_t)v * D + j) / V;
    double lsum = 0, lsq = 0, cdot = 0;
    int nl = 0;
    for (int v = 0; v < 8; v++) {
        double ss = 0;
        for (int j = 0; j < D; j++) x[j] = tensor_value(E, t, (int64_t)(v * 97) * D + j), ss += x[j] * x[j];
        for (int j = 0; j < D; j++) x[j] /= (float)sqrt(ss / D);
        for (int o = 0; o < V; o++) {
            double l = 0;
            for (int j = 0; j < D; j++) l += tensor_value(H, t, (int64_t)o * D + j) * x[j];
            lsum += l, lsq += l * l, nl++;
        }
    }
    for (int o = 0; o < V; o++) {
        double d = 0, nm = 0, nh = 0;
        for (int j = 0; j < D; j++) {
            float h = tensor_value(H, t, (int64_t)o * D + j);
            d += h * mean[j], nm += mean[j] * mean[j], nh += h * h;
        }
        cdot += fabs(d / sqrt(nm * nh)) / V;
    }
    free(x);
    free(mean);
    *cos_out = cdot;
    return sqrt(lsq / nl - (lsum / nl) * (lsum / nl));
}

TEST(tiny_values) {
    st_set t = {0};
    char err[512];
    int ok = !st_open_dir(&t, tmpdir("tiny"), err, sizeof err);
    CHECK(ok, "open: %s", err);
    if (!ok) return;
    check_values(&t, 8);
    /* fan-in scaled weights, as in tiny-a: 1/sqrt(256), 1/sqrt(128), 0.6/sqrt(256), hot experts x5 / x0.1 */
    struct { const char *name; double want; } w[] = {
        {"layers.0.attn.wq_a.weight", 0.0625}, {"layers.1.attn.wq_b.weight", 0.0884},
        {"layers.2.attn.wo_b.weight", 0.0375}, {"layers.3.ffn.experts.0.w1.weight", 0.0625},
        {"layers.3.ffn.experts.1.w3.weight", 0.3125}, {"layers.3.ffn.experts.5.w2.weight", 0.00375},
        {"mtp.0.ffn.shared_experts.w2.weight", 0.0375}, {"layers.1.attn.compressor.wkv.weight", 0.0625},
        {"layers.0.hc_attn_fn", 0.03125}, {"head.weight", 0.1875},
    };
    for (size_t i = 0; i < sizeof w / sizeof w[0]; i++) {
        double s = tensor_std(&t, w[i].name);
        CHECK(fabs(s / w[i].want - 1) < 0.1, "%s std %.4g, want %.4g", w[i].name, s, w[i].want);
    }
    /* the embedding/head structure of tiny-a: a logit proxy of the same
     * spread and head rows orthogonal to the common embedding direction */
    st_set g = {0};
    CHECK(!st_open_dir(&g, GOLDEN, err, sizeof err), "golden: %s", err);
    double gcos, tcos, gl = logit_proxy(&g, &gcos), tl = logit_proxy(&t, &tcos);
    CHECK(fabs(tl / gl - 1) < 0.2, "logit proxy std %.3f, tiny-a %.3f", tl, gl);
    CHECK(tcos < 0.05 && gcos < 0.05, "head rows vs the mean embedding: mean |cos| %.3f (tiny-a %.3f)", tcos, gcos);
    st_close(&g);
    st_close(&t);
}

static int files_equal(const char *a, const char *b) {
    size_t la, lb;
    char err[256];
    char *x = read_file(a, &la, err, sizeof err), *y = read_file(b, &lb, err, sizeof err);
    int eq = x && y && la == lb && !memcmp(x, y, la);
    free(x);
    free(y);
    return eq;
}

TEST(determinism) {
    const char *a = tmpdir("tiny"), *b = tmpdir("tiny-t1"), *c = tmpdir("tiny-s1");
    CHECK(gen("tiny", 0, 1, b) == 0 && gen("tiny", 1, 2, c) == 0, "generate");
    const char *files[] = {"model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors",
                           "model.safetensors.index.json", "config.json"};
    char pa[1024], pb[1024], pc[1024];
    for (int i = 0; i < 4; i++) {
        snprintf(pa, sizeof pa, "%s/%s", a, files[i]);
        snprintf(pb, sizeof pb, "%s/%s", b, files[i]);
        snprintf(pc, sizeof pc, "%s/%s", c, files[i]);
        CHECK(files_equal(pa, pb), "%s: 1 and 2 threads give different bytes", files[i]);
        if (i < 2) CHECK(!files_equal(pa, pc), "%s: seeds 0 and 1 give the same bytes", files[i]);
    }
    /* regenerating into an existing directory replaces it cleanly */
    CHECK(gen("tiny", 0, 2, c) == 0, "regenerate");
    snprintf(pa, sizeof pa, "%s/model-00001-of-00002.safetensors", a);
    snprintf(pc, sizeof pc, "%s/model-00001-of-00002.safetensors", c);
    CHECK(files_equal(pa, pc), "regenerated seed 0 equals seed 0");
    rm_rf(b);
    rm_rf(c);
}

TEST(default_preset) {
    const char *dir = tmpdir("default");
    double t0 = now_sec();
    CHECK(gen("default", 0, 2, dir) == 0, "generate default");
    double el = now_sec() - t0;
    CHECK(el < 10, "default preset took %.1f s", el);
    st_set t = {0};
    char err[512], p[1024];
    CHECK(!st_open_dir(&t, dir, err, sizeof err), "open: %s", err);
    dsv4_gen_opts o;
    int n = 0;
    dsv4_gen_preset("default", &o, err, sizeof err);
    dsv4_gen_total_bytes(&o, &n);
    CHECK(t.n_tensors == n, "%d tensors, plan has %d", t.n_tensors, n);
    const st_tensor *e = st_find(&t, "embed.weight");
    CHECK(e && e->shape[0] == 129280, "real vocabulary");
    CHECK(st_find(&t, "layers.1.ffn.gate.tid2eid") && !st_find(&t, "layers.2.ffn.gate.tid2eid") &&
              st_find(&t, "layers.2.attn.compressor.ape") && st_find(&t, "mtp.0.e_proj.weight") &&
              !st_find(&t, "layers.2.attn.indexer.wq_b.weight") && st_find(&t, "layers.3.attn.indexer.wq_b.weight"),
          "layer types and MTP present");
    check_values(&t, 16);
    st_close(&t);
    snprintf(p, sizeof p, "%s/tokenizer.json", dir);
    CHECK(files_equal(p, "data/tokenizer.json"), "tokenizer.json is the embedded copy of data/tokenizer.json");
    snprintf(p, sizeof p, "%s/tokenizer_config.json", dir);
    CHECK(files_equal(p, "data/tokenizer_config.json"), "tokenizer_config.json");
    snprintf(p, sizeof p, "%s/config.json", dir);
    size_t len;
    char *js = read_file(p, &len, err, sizeof err);
    dsv4_config c;
    CHECK(js && !dsv4_config_parse(js, len, &c, err, sizeof err) && c.vocab_size == 129280 && c.n_layers == 5 &&
              c.compress_ratios[2] == 128 && c.compress_ratios[4] == 16,
          "default config: %s", err);
    free(js);
}

/* Two processes use the default model for the first time at once: both get
 * the same complete directory and no temporary directory is left. */
TEST(default_model_dir_concurrent) {
    const char *cache = tmpdir("cache");
    setenv("DSV4_CACHE_DIR", cache, 1);
    pid_t kids[2];
    for (int i = 0; i < 2; i++) {
        kids[i] = fork();
        if (kids[i] == 0) {
            char out[1024], err[256];
            _exit(dsv4_default_model_dir(out, sizeof out, err, sizeof err) == 0 ? 0 : 1);
        }
    }
    int okk = 0;
    for (int i = 0; i < 2; i++) {
        int st;
        waitpid(kids[i], &st, 0);
        okk += WIFEXITED(st) && WEXITSTATUS(st) == 0;
    }
    CHECK(okk == 2, "both first uses succeed (%d)", okk);
    char out[1024], err[256], want[1024];
    double t0 = now_sec();
    CHECK(!dsv4_default_model_dir(out, sizeof out, err, sizeof err), "default dir: %s", err);
    CHECK(now_sec() - t0 < 0.5, "the second use must not regenerate");
    snprintf(want, sizeof want, "%s/%s", cache, DSV4_DEFAULT_MODEL_NAME);
    CHECK(!strcmp(out, want), "path %s", out);
    st_set t = {0};
    CHECK(!st_open_dir(&t, out, err, sizeof err), "complete: %s", err);
    st_close(&t);
    int left = 0;
    DIR *d = opendir(cache);
    struct dirent *e;
    while (d && (e = readdir(d))) left += e->d_name[0] == '.' && strcmp(e->d_name, ".") && strcmp(e->d_name, "..");
    if (d) closedir(d);
    CHECK(left == 0, "%d temporary directories left", left);
    /* the same bytes as `dsv4 gen --preset default` */
    char pa[1200], pb[1200];
    snprintf(pa, sizeof pa, "%s/model-00001-of-00002.safetensors", out);
    snprintf(pb, sizeof pb, "%s/model-00001-of-00002.safetensors", tmpdir("default"));
    CHECK(files_equal(pa, pb), "default model dir equals the default preset");
    unsetenv("DSV4_CACHE_DIR");
}

/* The engine on generated checkpoints: finite logits with a healthy spread
 * (std ~2-3 as in tiny-a) over a prompt and greedy decoding. */
static void engine_check(const char *dir, const char *what) {
    char err[512];
    dsv4_model *m = dsv4_model_load(dir, err, sizeof err);
    CHECK(m != NULL, "%s: load: %s", what, err);
    if (!m) return;
    dsv4_model_set_threads(m, 2);
    int V = dsv4_model_config(m)->vocab_size;
    dsv4_seq *sq = dsv4_seq_new(m, 256, err, sizeof err);
    CHECK(sq != NULL, "%s: seq: %s", what, err);
    if (!sq) { dsv4_model_free(m); return; }
    float *lg = xmalloc((size_t)V * 24 * sizeof(float));
    int32_t ids[24];
    for (int i = 0; i < 24; i++) ids[i] = (int32_t)((i * 7919 + 13) % V);
    int rc = dsv4_forward(sq, ids, 24, lg, 1, err, sizeof err);
    CHECK(rc == 0, "%s: forward: %s", what, err);
    int nonfinite = 0;
    double smin = 1e9, smax = 0;
    for (int r = 0; r < 24 + 16 && rc == 0; r++) {
        const float *row = r < 24 ? lg + (size_t)r * V : lg;
        if (r >= 24) {   /* greedy decode step, logits into row 0 */
            int32_t next = dsv4_argmax(r == 24 ? lg + (size_t)23 * V : lg, V);
            if ((rc = dsv4_forward(sq, &next, 1, lg, 0, err, sizeof err))) break;
        }
        double s = 0, s2 = 0;
        for (int j = 0; j < V; j++) nonfinite += !isfinite(row[j]), s += row[j], s2 += (double)row[j] * row[j];
        double sd = sqrt(s2 / V - (s / V) * (s / V));
        smin = sd < smin ? sd : smin, smax = sd > smax ? sd : smax;
    }
    CHECK(rc == 0 && nonfinite == 0, "%s: %d non-finite logits (%s)", what, nonfinite, rc ? err : "");
    CHECK(smin > 1.5 && smax < 4.5, "%s: logit std %.2f..%.2f", what, smin, smax);
    free(lg);
    dsv4_seq_free(sq);
    dsv4_model_free(m);
}

TEST(engine_logits) {
    engine_check(tmpdir("tiny"), "tiny");
    engine_check(tmpdir("default"), "default");
}

int main(void) {
    snprintf(tmproot, sizeof tmproot, "/tmp/dsv4-test-gen-XXXXXX");
    if (!mkdtemp(tmproot)) { perror("mkdtemp"); return 1; }
    RUN(e4m3_encoder);
    RUN(release_inventory_sizes);
    RUN(flash_slice_geometry);
    RUN(tiny_matches_golden_inventory);
    RUN(tiny_index_and_config);
    RUN(tiny_values);
    RUN(determinism);
    RUN(default_preset);
    RUN(default_model_dir_concurrent);
    RUN(engine_logits);
    rm_rf(tmproot);
    return check_summary();
}
