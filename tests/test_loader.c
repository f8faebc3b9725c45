/*
 * test_loader.c - every way a checkpoint can be wrong gives a one-line
 * error naming the file and tensor, and never a crash: missing files,
 * truncated shards, headers that lie (offsets out of bounds or
 * overlapping, sizes that do not match dtype x shape), missing and extra
 * tensors, wrong shapes and dtypes, unsupported later releases, malformed
 * configs.  Each case is made by rewriting a copy of the golden checkpoint.
 */
#include "check.h"
#include "dsv4.h"
#include "format/safetensors.h"
#include "util/util.h"
#include <jansson.h>
#include <stdint.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define GOLD DATA("golden/tiny-a")
#define SHARD1 "model-00001-of-00002.safetensors"
#define SHARD2 "model-00002-of-00002.safetensors"

static char tmpdir[256];

static void cp(const char *name, const char *dstname) {
    char src[512], dst[512];
    size_t len;
    snprintf(src, sizeof src, "%s/%s", GOLD, name);
    snprintf(dst, sizeof dst, "%s/%s", tmpdir, dstname ? dstname : name);
    char *d = read_file(src, &len, NULL, 0);
    write_file(dst, d, len, NULL, 0);
    free(d);
}

/* Fresh copy of the golden checkpoint in tmpdir. */
static void fresh(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tmpdir, tmpdir);
    CHECK(system(cmd) == 0, "mkdir");
    cp("config.json", NULL);
    cp("model.safetensors.index.json", NULL);
    cp(SHARD1, NULL);
    cp(SHARD2, NULL);
}

static char *path_in(const char *name) {
    static char p[512];
    snprintf(p, sizeof p, "%s/%s", tmpdir, name);
    return p;
}

/* Rewrite one shard: f(header) edits the JSON header; the data section is
 * kept (optionally truncated or extended). */
static void rewrite(const char *shard, void (*f)(json_t *h), long data_delta) {
    size_t len;
    char *b = read_file(path_in(shard), &len, NULL, 0);
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = n << 8 | (uint8_t)b[i];
    json_t *h = json_loadb(b + 8, n, 0, NULL);
    f(h);
    char *hs = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    size_t hl = strlen(hs), dl = len - 8 - n;
    size_t ndl = (size_t)((long)dl + data_delta);
    char *out = calloc(1, 8 + hl + ndl);
    for (int i = 0; i < 8; i++) out[i] = (char)((uint64_t)hl >> (8 * i));
    memcpy(out + 8, hs, hl);
    memcpy(out + 8 + hl, b + 8 + n, ndl < dl ? ndl : dl);
    write_file(path_in(shard), out, 8 + hl + ndl, NULL, 0);
    free(out); free(hs); free(b);
    json_decref(h);
}

/* Load must fail, with every expected fragment in the message. */
static void expect_fail(const char *what, const char *frag1, const char *frag2) {
    char err[1024] = "";
    dsv4_model *m = dsv4_model_load(tmpdir, err, sizeof err);
    CHECK(m == NULL, "%s: load should fail", what);
    if (m) { dsv4_model_free(m); return; }
    CHECK(!strchr(err, '\n'), "%s: one-line message: %s", what, err);
    CHECK(!frag1 || strstr(err, frag1), "%s: message '%s' lacks '%s'", what, err, frag1);
    CHECK(!frag2 || strstr(err, frag2), "%s: message '%s' lacks '%s'", what, err, frag2);
}

static const char *victim = "layers.1.attn.wq_a.weight";

static void hdr_oob(json_t *h) {
    json_t *o = json_object_get(json_object_get(h, victim), "data_offsets");
    json_array_set_new(o, 1, json_integer(json_integer_value(json_array_get(o, 1)) + 100000000));
}
static void hdr_overlap(json_t *h) {
    /* point wq_a at the data of another tensor of the same size */
    json_t *t = json_object_get(h, victim), *o = json_object_get(t, "data_offsets");
    json_int_t b = json_integer_value(json_array_get(o, 0)), e = json_integer_value(json_array_get(o, 1));
    json_t *u = json_object_get(h, "layers.1.attn.wkv.weight");
    json_t *uo = json_object_get(u, "data_offsets");
    json_int_t ub = json_integer_value(json_array_get(uo, 0));
    json_array_set_new(o, 0, json_integer(ub + 1));
    json_array_set_new(o, 1, json_integer(ub + 1 + (e - b)));
}
static void hdr_size(json_t *h) {
    json_t *s = json_object_get(json_object_get(h, victim), "shape");
    json_array_set_new(s, 0, json_integer(json_integer_value(json_array_get(s, 0)) + 1));
}
static void hdr_shape(json_t *h) {
    /* same byte count, wrong shape: [128,256] -> [256,128] */
    json_t *s = json_object_get(json_object_get(h, victim), "shape");
    json_int_t a = json_integer_value(json_array_get(s, 0)), b = json_integer_value(json_array_get(s, 1));
    json_array_set_new(s, 0, json_integer(b));
    json_array_set_new(s, 1, json_integer(a));
}
static void hdr_dtype(json_t *h) {
    /* same size, wrong type: F8_E4M3 -> I8 */
    json_object_set_new(json_object_get(h, victim), "dtype", json_string("U8"));
}
static void hdr_unknown_dtype(json_t *h) { json_object_set_new(json_object_get(h, victim), "dtype", json_string("F4_XX")); }
static void hdr_remove(json_t *h) { json_object_del(h, victim); }
static void hdr_bad_json(json_t *h) { json_object_set_new(h, victim, json_string("nope")); }

static void index_remove(void) {
    json_t *ix = json_load_file(path_in("model.safetensors.index.json"), 0, NULL);
    json_object_del(json_object_get(ix, "weight_map"), victim);
    json_dump_file(ix, path_in("model.safetensors.index.json"), JSON_INDENT(2));
    json_decref(ix);
}

static void hdr_add_extra(json_t *h) {
    /* 4 bytes appended after the last tensor's data (rewrite(.., 4)) */
    json_int_t end = 0;
    const char *k;
    json_t *v;
    json_object_foreach(h, k, v) {
        json_t *o = json_object_get(v, "data_offsets");
        if (o && json_integer_value(json_array_get(o, 1)) > end) end = json_integer_value(json_array_get(o, 1));
    }
    json_t *t = json_pack("{s:s,s:[i],s:[I,I]}", "dtype", "F32", "shape", 1, "data_offsets", end, end + 4);
    json_object_set_new(h, "layers.1.attn.bogus", t);
}
static void index_add_extra(void) {
    json_t *ix = json_load_file(path_in("model.safetensors.index.json"), 0, NULL);
    json_object_set_new(json_object_get(ix, "weight_map"), "layers.1.attn.bogus", json_string(SHARD1));
    json_dump_file(ix, path_in("model.safetensors.index.json"), JSON_INDENT(2));
    json_decref(ix);
}

static void set_config(const char *key, json_t *value) {
    json_t *c = json_load_file(path_in("config.json"), 0, NULL);
    if (value) json_object_set_new(c, key, value);
    else json_object_del(c, key);
    json_dump_file(c, path_in("config.json"), JSON_INDENT(2));
    json_decref(c);
}

TEST(missing_files) {
    fresh();
    char err[512];
    CHECK(dsv4_model_load("/nonexistent/model", err, sizeof err) == NULL && strstr(err, "/nonexistent/model"), "missing dir: %s", err);
    unlink(path_in("config.json"));
    expect_fail("missing config", "config.json", NULL);
    fresh();
    unlink(path_in(SHARD2));
    expect_fail("missing shard", SHARD2, NULL);
    fresh();
    unlink(path_in("model.safetensors.index.json"));
    expect_fail("no index and no single file", "model.safetensors", NULL);
}

TEST(truncated_shard) {
    fresh();
    size_t len;
    char *b = read_file(path_in(SHARD2), &len, NULL, 0);
    write_file(path_in(SHARD2), b, len - 1000, NULL, 0);
    free(b);
    expect_fail("truncated shard", SHARD2, "truncated");
    fresh();
    write_file(path_in(SHARD1), "\x10\0\0\0\0\0\0\0{}", 10, NULL, 0);
    expect_fail("header length beyond file", SHARD1, "header");
    fresh();
    write_file(path_in(SHARD1), "", 0, NULL, 0);
    expect_fail("empty shard", SHARD1, NULL);
}

TEST(lying_headers) {
    /* victim lives in shard 1 */
    fresh(); rewrite(SHARD1, hdr_oob, 0);
    expect_fail("offset out of bounds", SHARD1, victim);
    fresh(); rewrite(SHARD1, hdr_overlap, 0);
    expect_fail("overlapping tensors", SHARD1, "overlap");
    fresh(); rewrite(SHARD1, hdr_size, 0);
    expect_fail("size != dtype x shape", SHARD1, victim);
    fresh(); rewrite(SHARD1, hdr_unknown_dtype, 0);
    expect_fail("unknown dtype", SHARD1, "F4_XX");
    fresh(); rewrite(SHARD1, hdr_bad_json, 0);
    expect_fail("entry not an object", SHARD1, victim);
    fresh();
    write_file(path_in(SHARD1), "\x04\0\0\0\0\0\0\0{{{{", 12, NULL, 0);
    expect_fail("header not JSON", SHARD1, "JSON");
}

TEST(inventory_errors) {
    fresh(); rewrite(SHARD1, hdr_remove, 0); index_remove();
    expect_fail("missing tensor", victim, "missing");
    fresh(); rewrite(SHARD1, hdr_remove, 0);
    expect_fail("index lists a tensor the shard lacks", victim, NULL);
    fresh(); rewrite(SHARD1, hdr_add_extra, 4); index_add_extra();
    expect_fail("extra tensor", "layers.1.attn.bogus", "unexpected");
    fresh(); rewrite(SHARD1, hdr_add_extra, 4);
    expect_fail("tensor not in the index", "layers.1.attn.bogus", NULL);
    fresh(); rewrite(SHARD1, hdr_shape, 0);
    expect_fail("wrong shape", victim, "shape");
    fresh(); rewrite(SHARD1, hdr_dtype, 0);
    expect_fail("wrong dtype", victim, NULL);
}

TEST(config_errors) {
    fresh(); set_config("dspark_num_layers", json_integer(2));
    expect_fail("DSpark release", "dspark_num_layers", "not support");
    fresh(); set_config("engram_size", json_integer(2));
    expect_fail("V4.1 engram", "engram_size", NULL);
    fresh(); set_config("text_config", json_object());
    expect_fail("V4.1 text_config", "text_config", NULL);
    fresh(); set_config("hidden_size", NULL);
    expect_fail("missing key", "hidden_size", "config.json");
    fresh(); set_config("hidden_size", json_string("256"));
    expect_fail("wrong type", "hidden_size", NULL);
    fresh(); set_config("compress_ratios", json_pack("[i,i]", 0, 4));
    expect_fail("wrong ratio count", "compress_ratios", NULL);
    fresh(); set_config("o_groups", json_integer(3));
    expect_fail("o_groups not dividing heads", "o_groups", NULL);
    fresh(); set_config("hidden_size", json_integer(384));
    expect_fail("geometry not matching tensors", "shape", NULL);
    fresh(); write_file(path_in("config.json"), "{\"vocab_size\": 10,", 18, NULL, 0);
    expect_fail("malformed JSON", "config.json", "JSON");
    fresh(); write_file(path_in("model.safetensors.index.json"), "[1,2]", 5, NULL, 0);
    expect_fail("malformed index", "index", "weight_map");
}

/* After all the failures, the untouched copy still loads (nothing leaked
 * into global state) and single-file checkpoints work too. */
TEST(valid_copy_loads) {
    fresh();
    char err[512];
    dsv4_model *m = dsv4_model_load(tmpdir, err, sizeof err);
    CHECK(m != NULL, "fresh copy loads: %s", err);
    dsv4_model_free(m);
}

/* The weight file mapping (util.h map_file_readonly): 2 MiB-aligned, the
 * file's bytes, the page-cache drop of a writer loses nothing, DSV4_REREAD
 * and DSV4_HUGEPAGE=0 still map the same bytes, and the 2 MiB-page measure
 * answers in [0, 1] for the mapping and -1 for an address not mapped. */
TEST(file_mapping) {
    char path[512];
    snprintf(path, sizeof path, "%s_map.bin", tmpdir);
    size_t len = (size_t)5 << 20;   /* over 2 MiB, not a multiple */
    len += 12345;
    uint8_t *buf = malloc(len);
    for (size_t i = 0; i < len; i++) buf[i] = (uint8_t)(i * 2654435761u >> 13);
    FILE *f = fopen(path, "wb");
    CHECK(f && fwrite(buf, 1, len, f) == len, "write %s", path);
    if (f) fclose(f);
    int fd = open(path, O_RDONLY);
    file_drop_cache(fd);
    static const char *modes[3][2] = {{NULL, NULL}, {"DSV4_REREAD", "1"}, {"DSV4_HUGEPAGE", "0"}};
    for (int k = 0; k < 3; k++) {
        if (modes[k][0]) setenv(modes[k][0], modes[k][1], 1);
        void *map = map_file_readonly(fd, len);
        CHECK(map != MAP_FAILED, "map %d", k);
        if (map == MAP_FAILED) continue;
        if (k < 2) CHECK(((uintptr_t)map & (((uintptr_t)2 << 20) - 1)) == 0, "mapping %d at a 2 MiB boundary", k);
        CHECK(!memcmp(map, buf, len), "mapping %d holds the file's bytes", k);
        map_prefault(map, len);
        double h = map_hugepage_fraction(map, len);
        CHECK(h >= 0 && h <= 1, "2 MiB share of mapping %d: %g", k, h);
        munmap(map, len);
        if (modes[k][0]) unsetenv(modes[k][0]);
    }
    CHECK(map_hugepage_fraction(buf, len) <= 0, "anonymous memory is not a file's 2 MiB pages");
    close(fd);
    unlink(path);
    free(buf);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dsv4_test_loader_%d", (int)getpid());
    RUN(missing_files);
    RUN(truncated_shard);
    RUN(lying_headers);
    RUN(inventory_errors);
    RUN(config_errors);
    RUN(valid_copy_loads);
    RUN(file_mapping);
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return check_summary();
}
