/*
 * test_gguf.c - GGUF reader/writer (format/gguf.c), the deepseek4 model
 * mapping (format/gguf_model.c) and the tokenizer round trip
 * (format/gguf_tokenizer.c).
 *
 *  - files written by the writer read back with every value and tensor
 *  - malformed files (bad magic, wrong version, truncation at every byte,
 *    lying counts/lengths/offsets, unknown types, overlaps, misalignment,
 *    duplicates) give a one-line error and no crash
 *  - deepseek4 metadata -> dsv4_config, missing keys reported by name
 *  - the golden tiny checkpoint converted and loaded as a weight source
 *  - the V4 tokenizer.json -> tokenizer.ggml.* -> tokenizer.json encodes
 *    the golden tokenizer cases to the same ids
 */
#include "check.h"
#include "dsv4_tokenizer.h"
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "num/ggml_quants.h"
#include "util/util.h"
#include <jansson.h>
#include <stdint.h>
#include <unistd.h>

static char tmpdir[256];

static const char *tmp(const char *name) {
    static char buf[4][512];
    static int k;
    k = (k + 1) & 3;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static uint8_t *slurp(const char *path, size_t *len) {
    char err[256];
    return (uint8_t *)read_file(path, len, err, sizeof err);
}

/* A small file with every scalar type, arrays and three tensors. */
static float t_f32[64];
static uint8_t t_q8[2 * 34 * 4];
static int32_t t_i32[6];

static void write_sample(const char *path) {
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "test");
    gguf_w_u32(w, "u32", 4000000000u);
    gguf_w_i32(w, "i32", -7);
    gguf_w_u64(w, "u64", 1ull << 40);
    gguf_w_f32(w, "f32", 0.25f);
    gguf_w_bool(w, "bool", 1);
    int32_t arr[3] = {0, 4, 128};
    gguf_w_arr(w, "arr_i32", GGUF_I32, arr, 3);
    const char *strs[3] = {"a", "", "héllo"};
    gguf_w_arr_str(w, "arr_str", strs, NULL, 3);
    for (int i = 0; i < 64; i++) t_f32[i] = (float)i - 10.5f;
    float row[64];
    for (int i = 0; i < 64; i++) row[i] = (float)((i * 37) % 23) - 11.0f;
    for (int r = 0; r < 4; r++) ggml_quantize_row(W_Q8_0, row, t_q8 + r * 68, 64);
    for (int i = 0; i < 6; i++) t_i32[i] = i * i;
    int64_t ne1[1] = {64}, ne2[2] = {64, 4}, ne3[2] = {3, 2};
    gguf_w_tensor(w, "vec", GGML_TYPE_F32, 1, ne1, t_f32);
    gguf_w_tensor(w, "mat", GGML_TYPE_Q8_0, 2, ne2, t_q8);
    gguf_w_tensor(w, "ids", GGML_TYPE_I32, 2, ne3, t_i32);
    char err[256];
    int rc = gguf_writer_write(w, path, NULL, NULL, err, sizeof err);
    CHECK(rc == 0, "write: %s", err);
    gguf_writer_free(w);
}

TEST(roundtrip) {
    const char *p = tmp("sample.gguf");
    write_sample(p);
    char err[256] = "";
    gguf_file *f = gguf_open(p, err, sizeof err);
    CHECK(f != NULL, "open: %s", err);
    if (!f) return;
    CHECK(f->version == 3 && f->n_kv == 8 && f->n_tensors == 3, "counts");
    int64_t i64; int iv, b; float fv; const char *s; size_t sl;
    CHECK(!gguf_get_i64(f, "u32", &i64, err, sizeof err) && i64 == 4000000000ll, "u32");
    CHECK(gguf_get_int(f, "u32", &iv, err, sizeof err) == -1 && strstr(err, "out of range"), "u32 too big for int: %s", err);
    CHECK(!gguf_get_int(f, "i32", &iv, err, sizeof err) && iv == -7, "i32");
    CHECK(!gguf_get_i64(f, "u64", &i64, err, sizeof err) && i64 == 1ll << 40, "u64");
    CHECK(!gguf_get_f32(f, "f32", &fv, err, sizeof err) && fv == 0.25f, "f32");
    CHECK(!gguf_get_bool(f, "bool", &b, err, sizeof err) && b == 1, "bool");
    CHECK(!gguf_get_str(f, "general.architecture", &s, &sl, err, sizeof err) && sl == 4 && !memcmp(s, "test", 4), "str");
    CHECK(gguf_get_str(f, "f32", &s, &sl, err, sizeof err) == -1 && strstr(err, "should be a string"), "type mismatch: %s", err);
    CHECK(gguf_get_int(f, "nope", &iv, err, sizeof err) == -1 && strstr(err, "missing metadata key 'nope'"), "missing: %s", err);
    const gguf_kv *a = gguf_find_kv(f, "arr_i32");
    CHECK(a && a->n == 3 && !gguf_arr_i64(a, 2, &i64) && i64 == 128 && gguf_arr_i64(a, 3, &i64) == -1, "arr_i32");
    a = gguf_find_kv(f, "arr_str");
    CHECK(a && a->n == 3 && !gguf_arr_str(a, 2, &s, &sl) && sl == 6 && !memcmp(s, "héllo", 6) &&
          !gguf_arr_str(a, 1, &s, &sl) && sl == 0, "arr_str");
    const gguf_tensor *t = gguf_find_tensor(f, "vec");
    CHECK(t && t->type == GGML_TYPE_F32 && t->ndim == 1 && t->ne[0] == 64 && !memcmp(t->data, t_f32, sizeof t_f32), "vec");
    t = gguf_find_tensor(f, "mat");
    CHECK(t && t->type == GGML_TYPE_Q8_0 && t->ne[0] == 64 && t->ne[1] == 4 && t->nbytes == sizeof t_q8 &&
          !memcmp(t->data, t_q8, sizeof t_q8), "mat");
    CHECK(t && ((uintptr_t)t->data - (uintptr_t)f->buf) % 32 == 0, "aligned data");
    t = gguf_find_tensor(f, "ids");
    CHECK(t && t->type == GGML_TYPE_I32 && gguf_tensor_numel(t) == 6 && !memcmp(t->data, t_i32, sizeof t_i32), "ids");
    CHECK(gguf_find_tensor(f, "zzz") == NULL, "absent tensor");
    gguf_close(f);
}

/* Parse a mutated image; must fail with a message containing `want`. */
static void expect_fail(const uint8_t *img, size_t len, const char *want, const char *what) {
    char err[512] = "";
    gguf_file *f = gguf_parse(img, len, "bad.gguf", err, sizeof err);
    CHECK(f == NULL, "%s: accepted", what);
    if (f) { gguf_close(f); return; }
    CHECK(strstr(err, want) != NULL && strchr(err, '\n') == NULL, "%s: error '%s' lacks '%s'", what, err, want);
}

/* Find a byte string inside an image (to patch fields by locating names). */
static size_t find_bytes_n(const uint8_t *img, size_t len, const char *s, size_t n) {
    for (size_t i = 0; i + n <= len; i++) if (!memcmp(img + i, s, n)) return i;
    return (size_t)-1;
}
static size_t find_bytes(const uint8_t *img, size_t len, const char *s) { return find_bytes_n(img, len, s, strlen(s)); }
/* a GGUF string of 3 characters: u64 length 3 then the bytes */
static size_t find_str3(const uint8_t *img, size_t len, const char *s) {
    char pat[11] = {3, 0, 0, 0, 0, 0, 0, 0};
    memcpy(pat + 8, s, 3);
    return find_bytes_n(img, len, pat, 11);
}

TEST(malformed) {
    size_t len;
    uint8_t *img = slurp(tmp("sample.gguf"), &len);
    CHECK(img != NULL, "sample exists");
    if (!img) return;
    uint8_t *m = xmalloc(len);
    char err[512];
    gguf_file *ok = gguf_parse(img, len, "ok", err, sizeof err);
    CHECK(ok != NULL, "pristine image parses: %s", err);
    gguf_close(ok);

    memcpy(m, img, len); m[0] = 'X';
    expect_fail(m, len, "bad magic", "magic");
    memcpy(m, img, len); m[4] = 1;
    expect_fail(m, len, "version 1", "v1");
    memcpy(m, img, len); m[4] = 9;
    expect_fail(m, len, "unsupported GGUF version 9", "v9");
    memcpy(m, img, len); m[4] = 0; m[7] = 3;
    expect_fail(m, len, "big-endian", "big endian");
    memcpy(m, img, len); m[8] = 0xff; m[9] = 0xff; m[10] = 0xff;
    expect_fail(m, len, "tensors, more than the file holds", "tensor count");
    memcpy(m, img, len); m[16] = 0xff; m[17] = 0xff; m[18] = 0xff; m[19] = 0xff;
    expect_fail(m, len, "metadata entries", "kv count");

    /* truncation at every length: no crash, always an error; the header
     * parses up to the data section, then tensors fall outside */
    int trunc_ok = 1;
    for (size_t n = 0; n < len; n++) {
        gguf_file *f = gguf_parse(img, n, "t", err, sizeof err);
        if (f) { trunc_ok = 0; gguf_close(f); }
    }
    CHECK(trunc_ok, "every truncated prefix is rejected");

    /* string length of the first key claims more than the file */
    memcpy(m, img, len);
    size_t p = find_bytes(img, len, "general.architecture") - 8;
    m[p + 6] = 0x7f;
    expect_fail(m, len, "runs past the end", "key length");
    /* unknown value type */
    memcpy(m, img, len);
    p = find_bytes(img, len, "general.architecture") + 20;
    m[p] = 77;
    expect_fail(m, len, "unknown value type 77", "value type");
    /* bool that is not 0/1 */
    memcpy(m, img, len);
    p = find_bytes(img, len, "bool") + 4 + 4;
    m[p] = 2;
    expect_fail(m, len, "bool 'bool' has value 2", "bool value");
    /* array element count lying */
    memcpy(m, img, len);
    p = find_bytes(img, len, "arr_i32") + 7 + 4 + 4;
    m[p + 5] = 0x10;
    expect_fail(m, len, "more than the file holds", "array count");
    /* nested array */
    memcpy(m, img, len);
    p = find_bytes(img, len, "arr_i32") + 7 + 4;
    m[p] = GGUF_ARRAY;
    expect_fail(m, len, "unsupported element type", "nested array");
    /* duplicate key: rename "i32" to "u32" */
    memcpy(m, img, len);
    p = find_str3(img, len, "i32");
    m[p + 8] = 'u';
    expect_fail(m, len, "duplicate metadata key 'u32'", "dup key");
    /* tensor infos: locate "mat" info: name, ndim, ne0, ne1, type, offset */
    size_t ti = find_str3(img, len, "mat") + 11;
    memcpy(m, img, len); m[ti] = 5;
    expect_fail(m, len, "5 dimensions", "ndim");
    memcpy(m, img, len); m[ti + 4 + 16] = 99;
    expect_fail(m, len, "unknown ggml type 99", "tensor type");
    memcpy(m, img, len); m[ti + 4] = 65;          /* ne0 = 65: not a multiple of 32 */
    expect_fail(m, len, "not a multiple of the Q8_0 block", "block multiple");
    memcpy(m, img, len); memset(m + ti + 4, 0, 8);
    expect_fail(m, len, "dimension 0 = 0", "zero dim");
    memcpy(m, img, len); m[ti + 4 + 8] = 0xff; m[ti + 4 + 14] = 0x7f;   /* huge ne1 */
    expect_fail(m, len, "outside the file", "huge dim");
    memcpy(m, img, len); m[ti + 4 + 16 + 4] += 1;  /* misaligned offset */
    expect_fail(m, len, "not aligned", "alignment");
    memcpy(m, img, len); m[ti + 4 + 16 + 4 + 3] = 0x10;   /* offset far away */
    expect_fail(m, len, "lies outside the file", "lying offset");
    memcpy(m, img, len); memset(m + ti + 4 + 16 + 4, 0, 8);   /* overlaps "vec" at 0 */
    expect_fail(m, len, "overlaps", "overlap");
    /* duplicate tensor name: rename "ids" to "vec" */
    memcpy(m, img, len);
    p = find_str3(img, len, "ids");
    memcpy(m + p + 8, "vec", 3);
    expect_fail(m, len, "duplicate tensor name 'vec'", "dup tensor");
    /* bad alignment key */
    gguf_writer *w = gguf_writer_new();
    gguf_w_u32(w, "general.alignment", 48);
    CHECK(gguf_writer_write(w, tmp("align.gguf"), NULL, NULL, err, sizeof err) == 0, "write align");
    gguf_writer_free(w);
    gguf_file *f = gguf_open(tmp("align.gguf"), err, sizeof err);
    CHECK(!f && strstr(err, "not a power of two"), "alignment 48: %s", err);
    gguf_close(f);
    f = gguf_open(tmp("nonexistent.gguf"), err, sizeof err);
    CHECK(!f && strstr(err, "No such file"), "missing file: %s", err);

    /* random byte flips: never crash (errors or successes both fine) */
    uint64_t r = 12345;
    for (int it = 0; it < 3000; it++) {
        memcpy(m, img, len);
        for (int k = 0; k < 1 + it % 4; k++) {
            r = r * 6364136223846793005ull + 1442695040888963407ull;
            m[(r >> 33) % len] = (uint8_t)(r >> 13);
        }
        gguf_file *g = gguf_parse(m, len, "fuzz", err, sizeof err);
        gguf_close(g);
    }
    CHECK(1, "random flips survived");
    free(m);
    free(img);
}

#define TINY "tests/data/golden/tiny-a"

TEST(model_mapping) {
    char gn[256]; int ex;
    CHECK(!gguf_name_from_release("layers.3.attn.wq_b.weight", gn, sizeof gn, &ex) && !strcmp(gn, "blk.3.attn_q_b.weight") && ex == -1, "wq_b");
    CHECK(!gguf_name_from_release("layers.0.ffn.experts.7.w2.weight", gn, sizeof gn, &ex) && !strcmp(gn, "blk.0.ffn_down_exps.weight") && ex == 7, "w2");
    CHECK(!gguf_name_from_release("hc_head_fn", gn, sizeof gn, &ex) && !strcmp(gn, "output_hc_fn.weight"), "hc_head");
    CHECK(!gguf_name_from_release("layers.1.ffn.gate.bias", gn, sizeof gn, &ex) && !strcmp(gn, "blk.1.exp_probs_b.bias"), "bias");
    CHECK(gguf_name_from_release("mtp.0.e_proj.weight", gn, sizeof gn, &ex) == -1, "mtp unmapped");
    CHECK(gguf_name_from_release("layers.1.attn.wq_a.scale", gn, sizeof gn, &ex) == -1, "scale unmapped");

    char err[512];
    const char *p = tmp("tiny-bf16.gguf");
    CHECK(gguf_convert(TINY, p, "bf16", NULL, 2, NULL, NULL, err, sizeof err) == 0, "convert: %s", err);
    CHECK(gguf_convert(TINY, tmp("x.gguf"), "q4", NULL, 2, NULL, NULL, err, sizeof err) == -1 && strstr(err, "unknown output type"), "bad type: %s", err);
    dsv4_config c;
    wsource src;
    CHECK(gguf_model_open(p, &c, &src, err, sizeof err) == 0, "open model: %s", err);
    CHECK(c.vocab_size == 1024 && c.dim == 256 && c.n_layers == 4 && c.n_mtp_layers == 0 && c.n_heads == 4 &&
          c.head_dim == 128 && c.n_routed_experts == 8 && c.n_activated_experts == 2 && c.moe_inter_dim == 256 &&
          c.window_size == 8 && c.compress_ratios[2] == 16 && c.index_topk == 4 && c.hc_mult == 4 &&
          c.hc_sinkhorn_iters == 20 && c.route_scale == 1.5f && c.swiglu_limit == 10.0f && c.o_groups == 2 &&
          c.original_seq_len == 65536 && c.rope_factor == 16 && c.compress_rope_theta == 160000.0f, "config fields");
    dsv4_weight w;
    CHECK(src.matrix(src.ctx, "layers.1.ffn.experts.5.w1", 256, 256, &w, err, sizeof err) == 0 && w.type == W_BF16 &&
          w.rows == 256 && w.cols == 256, "expert matrix: %s", err);
    CHECK(src.matrix(src.ctx, "layers.1.attn.wq_a", 128, 255, &w, err, sizeof err) == -1 && strstr(err, "expected [255,128]"), "shape check: %s", err);
    CHECK(src.matrix(src.ctx, "layers.1.ffn.experts.8.w1", 256, 256, &w, err, sizeof err) == -1, "expert out of range");
    ws_vtype vt; const void *d;
    CHECK(src.vector(src.ctx, "layers.0.ffn.gate.tid2eid", 1024 * 2, &vt, &d, err, sizeof err) == 0 && vt == WS_I32, "tid2eid: %s", err);
    CHECK(src.vector(src.ctx, "layers.0.attn_norm.weight", 256, &vt, &d, err, sizeof err) == 0 && vt == WS_F32, "norm");
    CHECK(src.vector(src.ctx, "layers.0.attn_norm.weight", 255, &vt, &d, err, sizeof err) == -1 && strstr(err, "256 elements"), "numel: %s", err);
    CHECK(src.has(src.ctx, "layers.1.attn.indexer.wq_b") && !src.has(src.ctx, "layers.0.attn.indexer.wq_b"), "has");
    CHECK(src.unused(src.ctx) != NULL, "unused reports untouched tensors");
    src.close(src.ctx);

    /* the same bytes as the safetensors: compare a FP8 matrix dequantised
     * (bf16 conversion is exact) via the golden values of one element */
    gguf_file *f = gguf_open(p, err, sizeof err);
    const gguf_tensor *t = f ? gguf_find_tensor(f, "blk.2.attn_compressor_ape.weight") : NULL;
    CHECK(t && t->ne[0] == 128 && t->ne[1] == 16 && t->type == GGML_TYPE_F32, "ape layout [coff*d, ratio]");
    t = f ? gguf_find_tensor(f, "blk.0.ffn_gate_tid2eid.weight") : NULL;
    CHECK(t && t->ne[0] == 2 && t->ne[1] == 1024 && t->type == GGML_TYPE_I32, "tid2eid layout");
    CHECK(f && !gguf_find_tensor(f, "blk.0.exp_probs_b.bias") && gguf_find_tensor(f, "blk.1.exp_probs_b.bias"), "bias only on non-hash layers");
    gguf_close(f);

    /* missing keys are reported by name */
    gguf_writer *gw = gguf_writer_new();
    gguf_w_str(gw, "general.architecture", "deepseek4");
    gguf_w_u32(gw, "deepseek4.block_count", 4);
    CHECK(gguf_writer_write(gw, tmp("nokeys.gguf"), NULL, NULL, err, sizeof err) == 0, "write");
    gguf_writer_free(gw);
    CHECK(gguf_model_open(tmp("nokeys.gguf"), &c, &src, err, sizeof err) == -1 && strstr(err, "missing metadata key 'deepseek4.embedding_length'"),
          "missing key: %s", err);
    gw = gguf_writer_new();
    gguf_w_str(gw, "general.architecture", "llama");
    CHECK(gguf_writer_write(gw, tmp("llama.gguf"), NULL, NULL, err, sizeof err) == 0, "write");
    gguf_writer_free(gw);
    CHECK(gguf_model_open(tmp("llama.gguf"), &c, &src, err, sizeof err) == -1 && strstr(err, "is not deepseek4"), "arch: %s", err);
}

TEST(tokenizer_roundtrip) {
    size_t len;
    char err[512];
    char *js = read_file("data/tokenizer.json", &len, err, sizeof err);
    CHECK(js != NULL, "tokenizer.json: %s", err);
    if (!js) return;
    gguf_writer *w = gguf_writer_new();
    gguf_w_str(w, "general.architecture", "deepseek4");
    CHECK(gguf_tokenizer_write(w, js, len, 129280, 0, 1, err, sizeof err) == 0, "write tokenizer: %s", err);
    CHECK(gguf_writer_write(w, tmp("tok.gguf"), NULL, NULL, err, sizeof err) == 0, "write: %s", err);
    gguf_writer_free(w);
    gguf_file *f = gguf_open(tmp("tok.gguf"), err, sizeof err);
    const gguf_kv *toks = f ? gguf_find_kv(f, "tokenizer.ggml.tokens") : NULL;
    CHECK(toks && toks->n == 129280, "129280 tokens");
    const char *s; size_t sl;
    CHECK(toks && !gguf_arr_str(toks, 128803, &s, &sl) && sl == strlen("<｜User｜>") && !memcmp(s, "<｜User｜>", sl), "User token");
    gguf_close(f);
    dsv4_tokenizer *ref = dsv4_tokenizer_load_mem(js, len, err, sizeof err);
    dsv4_tokenizer *got = gguf_tokenizer_load(tmp("tok.gguf"), err, sizeof err);
    CHECK(ref && got, "both load: %s", err);
    free(js);
    if (!ref || !got) { dsv4_tokenizer_free(ref); dsv4_tokenizer_free(got); return; }
    CHECK(dsv4_tokenizer_vocab_size(ref) == dsv4_tokenizer_vocab_size(got), "vocab size %d vs %d",
          dsv4_tokenizer_vocab_size(ref), dsv4_tokenizer_vocab_size(got));
    /* every golden encode case gives the same ids */
    FILE *fp = fopen("tests/data/tokenizer/golden-encode.jsonl", "r");
    char line[1 << 16];
    int n = 0, same = 0;
    while (fp && fgets(line, sizeof line, fp)) {
        json_t *o = json_loads(line, 0, NULL);
        json_t *text = o ? json_object_get(o, "text") : NULL;
        if (json_is_string(text)) {
            int32_t *a = NULL, *b = NULL; size_t na = 0, nb = 0;
            dsv4_tokenize(ref, json_string_value(text), json_string_length(text), &a, &na);
            dsv4_tokenize(got, json_string_value(text), json_string_length(text), &b, &nb);
            n++;
            same += na == nb && (na == 0 || !memcmp(a, b, na * sizeof *a));
            free(a); free(b);
        }
        json_decref(o);
    }
    if (fp) fclose(fp);
    CHECK(n > 100 && same == n, "%d of %d golden texts encode identically", same, n);
    dsv4_tokenizer_free(ref);
    dsv4_tokenizer_free(got);
}

int main(void) {
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dsv4-test-gguf-%d", (int)getpid());
    char cmd[600];
    snprintf(cmd, sizeof cmd, "mkdir -p %s", tmpdir);
    if (system(cmd)) return 1;
    RUN(roundtrip);
    RUN(malformed);
    RUN(model_mapping);
    RUN(tokenizer_roundtrip);
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (system(cmd)) {}
    return check_summary();
}
