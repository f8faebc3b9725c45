/*
 * gguf_convert.c - a release checkpoint directory (config.json +
 * safetensors) -> a deepseek4 GGUF that llama.cpp loads.
 *
 * Output types (--type):
 *   mxfp4-moe  the official ggml-org layout: routed experts MXFP4 (a
 *              lossless repack of the release's FP4), FP8 matrices Q8_0,
 *              BF16 matrices kept BF16, F32 kept, vectors F32
 *   q8_0       as mxfp4-moe but the routed experts Q8_0 too
 *   bf16       every matrix BF16 (lossless: FP8 and FP4 values are exact in
 *              BF16)
 *   f32        everything F32 (lossless)
 * MTP tensors are left out, as llama.cpp's converter does.  Tensors are
 * produced straight into the mmap'd output, row blocks split across
 * threads.
 */
#include "format/gguf_model.h"
#include "format/safetensors.h"
#include "num/ggml_quants.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include "util/util.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { SRC_F32, SRC_BF16, SRC_FP8, SRC_FP4, SRC_I64 };

typedef struct {
    int kind;
    int rows, cols;              /* logical per matrix (per expert) */
    int n_mat;                   /* 1, or experts stacked */
    const void **data;           /* n_mat pointers */
    const uint8_t **scale;       /* FP8/FP4 scales */
    uint32_t out_type;           /* ggml type */
    dsv4_pool *pool;
} job;

typedef struct {
    job *jobs;
    int n, cap;
    dsv4_pool *pool;
} jobs_t;

/* One source row as exact floats. */
static void src_row(const job *j, int m, int r, float *out) {
    int K = j->cols;
    switch (j->kind) {
    case SRC_F32: memcpy(out, (const float *)j->data[m] + (size_t)r * K, (size_t)K * 4); break;
    case SRC_BF16: {
        const uint16_t *p = (const uint16_t *)j->data[m] + (size_t)r * K;
        for (int c = 0; c < K; c++) out[c] = bf16_to_f32(p[c]);
        break;
    }
    case SRC_FP8: {
        const uint8_t *p = (const uint8_t *)j->data[m] + (size_t)r * K;
        const uint8_t *s = j->scale[m] + (size_t)(r / 128) * ((K + 127) / 128);
        for (int c = 0; c < K; c++) out[c] = e4m3_to_f32(p[c]) * e8m0_to_f32(s[c / 128]);
        break;
    }
    case SRC_FP4: {
        const uint8_t *p = (const uint8_t *)j->data[m] + (size_t)r * (K / 2);
        const uint8_t *s = j->scale[m] + (size_t)r * (K / 32);
        for (int c = 0; c < K; c += 2) {
            float sc = e8m0_to_f32(s[c / 32]);
            out[c] = e2m1_table[p[c / 2] & 15] * sc;
            out[c + 1] = e2m1_table[p[c / 2] >> 4] * sc;
        }
        break;
    }
    default: memset(out, 0, (size_t)K * 4);
    }
}

/* Release FP4 row (element 2i low nibble, 2i+1 high, e8m0 per 32) -> ggml
 * MXFP4 blocks (byte j: element j low, j+16 high).  The E2M1 codes and
 * the exponent byte carry over unchanged: ggml doubles the code values and
 * halves the scale. */
static void repack_fp4_row(const uint8_t *p, const uint8_t *s, int K, uint8_t *out) {
    for (int b = 0; b < K / 32; b++, out += 17) {
        uint8_t code[32];
        for (int i = 0; i < 16; i++) { code[2 * i] = p[16 * b + i] & 15; code[2 * i + 1] = p[16 * b + i] >> 4; }
        out[0] = s[b];
        for (int j = 0; j < 16; j++) out[1 + j] = (uint8_t)(code[j] | (code[j + 16] << 4));
    }
}

typedef struct { job *j; uint8_t *dst; size_t row_bytes; } fill_arg;

static void fill_worker(void *a, int tid, int nth) {
    fill_arg *fa = a;
    job *j = fa->j;
    int total = j->rows * j->n_mat, lo, hi;
    pool_range(total, tid, nth, &lo, &hi);
    float *row = xmalloc((size_t)j->cols * sizeof(float));
    for (int i = lo; i < hi; i++) {
        int m = i / j->rows, r = i % j->rows;
        uint8_t *out = fa->dst + (size_t)i * fa->row_bytes;
        if (j->kind == SRC_FP4 && j->out_type == GGML_TYPE_MXFP4) {
            repack_fp4_row((const uint8_t *)j->data[m] + (size_t)r * (j->cols / 2),
                           j->scale[m] + (size_t)r * (j->cols / 32), j->cols, out);
            continue;
        }
        if (j->kind == SRC_BF16 && j->out_type == GGML_TYPE_BF16) {
            memcpy(out, (const uint16_t *)j->data[m] + (size_t)r * j->cols, (size_t)j->cols * 2);
            continue;
        }
        if (j->kind == SRC_I64) {
            const int64_t *p = (const int64_t *)j->data[m] + (size_t)r * j->cols;
            for (int c = 0; c < j->cols; c++) { int32_t v = (int32_t)p[c]; memcpy(out + 4 * c, &v, 4); }
            continue;
        }
        src_row(j, m, r, row);
        switch (j->out_type) {
        case GGML_TYPE_F32: memcpy(out, row, (size_t)j->cols * 4); break;
        case GGML_TYPE_BF16:
            for (int c = 0; c < j->cols; c++) { uint16_t h = f32_to_bf16(row[c]); memcpy(out + 2 * c, &h, 2); }
            break;
        case GGML_TYPE_F16: ggml_quantize_row(W_F16, row, out, j->cols); break;
        case GGML_TYPE_Q8_0: ggml_quantize_row(W_Q8_0, row, out, j->cols); break;
        case GGML_TYPE_MXFP4: ggml_quantize_row(W_GG_MXFP4, row, out, j->cols); break;
        }
    }
    free(row);
}

static int fill_job(void *ctx, void *dst, size_t nbytes, char *err, size_t errlen) {
    job *j = ctx;
    fill_arg fa = {j, dst, (size_t)gguf_type_row_bytes(j->out_type, j->cols)};
    if (fa.row_bytes * (size_t)j->rows * (size_t)j->n_mat != nbytes)
        return errf(err, errlen, "internal: tensor size mismatch (%zu vs %zu)", fa.row_bytes * (size_t)j->rows * (size_t)j->n_mat, nbytes);
    pool_run(j->pool, fill_worker, &fa);
    return 0;
}

/* ---- building the tensor list -------------------------------------------- */

typedef struct {
    const st_set *set;
    gguf_writer *w;
    const char *mode;            /* "mxfp4-moe", "q8_0", "bf16", "f32" */
    job *jobs;                   /* fixed array, sized up front */
    int n_jobs;
    dsv4_pool *pool;
    unsigned char *used;         /* per st tensor */
    char *err;
    size_t errlen;
} conv;

static const st_tensor *find(conv *cv, const char *name) {
    const st_tensor *t = st_find(cv->set, name);
    if (t) cv->used[t - cv->set->tensors] = 1;
    return t;
}

static uint32_t pick_type(conv *cv, int kind, int expert, int ndim) {
    if (ndim == 1 || kind == SRC_F32) return GGML_TYPE_F32;
    if (kind == SRC_I64) return GGML_TYPE_I32;
    if (!strcmp(cv->mode, "f32")) return GGML_TYPE_F32;
    if (!strcmp(cv->mode, "bf16")) return GGML_TYPE_BF16;
    if (kind == SRC_BF16) return GGML_TYPE_BF16;
    if (expert && !strcmp(cv->mode, "mxfp4-moe")) return GGML_TYPE_MXFP4;
    return GGML_TYPE_Q8_0;
}

static int kind_of(const st_tensor *t) {
    switch (t->dtype) {
    case ST_F32: return SRC_F32;
    case ST_BF16: return SRC_BF16;
    case ST_F8_E4M3: return SRC_FP8;
    case ST_I8: case ST_U8: return SRC_FP4;
    case ST_I64: return SRC_I64;
    default: return -1;
    }
}

static job *new_job(conv *cv) { return &cv->jobs[cv->n_jobs++]; }

/* One release tensor (or n_exp experts of one projection) -> one GGUF
 * tensor.  rel: name of the first; for experts a printf pattern with %d. */
static int add(conv *cv, const char *rel, int n_exp, const char *gname) {
    char name[512], sname[600];
    job *j = new_job(cv);
    memset(j, 0, sizeof *j);
    j->n_mat = n_exp ? n_exp : 1;
    j->data = xcalloc((size_t)j->n_mat, sizeof *j->data);
    j->scale = xcalloc((size_t)j->n_mat, sizeof *j->scale);
    j->pool = cv->pool;
    const st_tensor *first = NULL;
    for (int m = 0; m < j->n_mat; m++) {
        if (n_exp) snprintf(name, sizeof name, rel, m); else snprintf(name, sizeof name, "%s", rel);
        const st_tensor *t = find(cv, name);
        if (!t) return errf(cv->err, cv->errlen, "%s: tensor '%s' is missing", cv->set->files[0].path, name);
        int kind = kind_of(t);
        if (kind < 0) return errf(cv->err, cv->errlen, "tensor '%s': dtype %s cannot be converted", name, st_dtype_name(t->dtype));
        if (!first) {
            first = t;
            j->kind = kind;
            j->rows = t->ndim >= 2 ? (int)t->shape[0] : 1;
            j->cols = t->ndim >= 2 ? (int)(t->shape[1] * (kind == SRC_FP4 ? 2 : 1)) : (int)t->shape[0];
            if (t->ndim > 2) return errf(cv->err, cv->errlen, "tensor '%s' has %d dims", name, t->ndim);
        } else if (t->dtype != first->dtype || t->ndim != first->ndim || t->shape[0] != first->shape[0] ||
                   (t->ndim > 1 && t->shape[1] != first->shape[1])) {
            return errf(cv->err, cv->errlen, "tensor '%s' differs in dtype or shape from '%s'", name, first->name);
        }
        j->data[m] = t->data;
        if (kind == SRC_FP8 || kind == SRC_FP4) {
            char base[512];
            snprintf(base, sizeof base, "%s", name);
            char *dot = strrchr(base, '.');
            if (dot && !strcmp(dot, ".weight")) *dot = 0;
            snprintf(sname, sizeof sname, "%s.scale", base);
            const st_tensor *s = find(cv, sname);
            int64_t want = kind == SRC_FP8 ? (int64_t)((j->rows + 127) / 128) * ((j->cols + 127) / 128)
                                           : (int64_t)j->rows * (j->cols / 32);
            if (!s || s->dtype != ST_F8_E8M0 || st_numel(s) != want)
                return errf(cv->err, cv->errlen, "tensor '%s': scale '%s' missing or not F8_E8M0 with %lld values",
                            name, sname, (long long)want);
            j->scale[m] = s->data;
        }
    }
    int ndim = first->ndim;
    j->out_type = pick_type(cv, j->kind, n_exp > 0, ndim);
    if ((j->out_type == GGML_TYPE_Q8_0 || j->out_type == GGML_TYPE_MXFP4) && j->cols % 32)
        j->out_type = GGML_TYPE_BF16;   /* cannot block-quantise: keep exact-ish */
    if (j->kind == SRC_FP4 && j->cols % 32) return errf(cv->err, cv->errlen, "tensor '%s': FP4 rows must be a multiple of 32", first->name);
    int64_t ne[3] = {j->cols, j->rows, j->n_mat};
    int gnd = n_exp ? 3 : (ndim == 1 ? 1 : 2);
    gguf_w_tensor_fill(cv->w, gname, j->out_type, gnd, ne, fill_job, j);
    return 0;
}

static int add_layer(conv *cv, const dsv4_config *c, int i) {
    char rel[512], gn[512];
    int ex;
    static const char *always[] = {
        "hc_attn_fn", "hc_attn_base", "hc_attn_scale", "hc_ffn_fn", "hc_ffn_base", "hc_ffn_scale",
        "attn_norm.weight", "attn.attn_sink", "attn.wq_a.weight", "attn.q_norm.weight", "attn.wq_b.weight",
        "attn.wkv.weight", "attn.kv_norm.weight", "attn.wo_a.weight", "attn.wo_b.weight", NULL};
    static const char *comp[] = {"attn.compressor.wkv.weight", "attn.compressor.wgate.weight",
                                 "attn.compressor.ape", "attn.compressor.norm.weight", NULL};
    static const char *idx[] = {"attn.indexer.wq_b.weight", "attn.indexer.weights_proj.weight",
                                "attn.indexer.compressor.wkv.weight", "attn.indexer.compressor.wgate.weight",
                                "attn.indexer.compressor.ape", "attn.indexer.compressor.norm.weight", NULL};
    static const char *ffn[] = {"ffn_norm.weight", "ffn.gate.weight", NULL};
    static const char *shared[] = {"ffn.shared_experts.w1.weight", "ffn.shared_experts.w2.weight",
                                   "ffn.shared_experts.w3.weight", NULL};
    const char **groups[5] = {always, c->compress_ratios[i] ? comp : NULL, c->compress_ratios[i] == 4 ? idx : NULL,
                              ffn, c->n_shared_experts ? shared : NULL};
    for (int g = 0; g < 5; g++) {
        for (const char **n = groups[g]; n && *n; n++) {
            snprintf(rel, sizeof rel, "layers.%d.%s", i, *n);
            gguf_name_from_release(rel, gn, sizeof gn, &ex);
            if (add(cv, rel, 0, gn)) return -1;
        }
    }
    if (i < c->n_hash_layers) {
        snprintf(rel, sizeof rel, "layers.%d.ffn.gate.tid2eid", i);
        gguf_name_from_release(rel, gn, sizeof gn, &ex);
        if (add(cv, rel, 0, gn)) return -1;
        snprintf(rel, sizeof rel, "layers.%d.ffn.gate.bias", i);
        find(cv, rel);   /* a hash layer's bias is unused (llama.cpp drops it too) */
    } else {
        snprintf(rel, sizeof rel, "layers.%d.ffn.gate.bias", i);
        gguf_name_from_release(rel, gn, sizeof gn, &ex);
        if (add(cv, rel, 0, gn)) return -1;
    }
    static const char *proj[] = {"w1", "w2", "w3"};
    for (int p = 0; p < 3; p++) {
        char pat[512];
        snprintf(rel, sizeof rel, "layers.%d.ffn.experts.0.%s.weight", i, proj[p]);
        gguf_name_from_release(rel, gn, sizeof gn, &ex);
        snprintf(pat, sizeof pat, "layers.%d.ffn.experts.%%d.%s.weight", i, proj[p]);
        if (add(cv, pat, c->n_routed_experts, gn)) return -1;
    }
    return 0;
}

typedef struct { gguf_progress_fn fn; void *ctx; } prog;

int gguf_convert(const char *dir, const char *out, const char *mode, const char *tokenizer_path,
                 int n_threads, gguf_progress_fn progress, void *pctx, char *err, size_t errlen) {
    numfmt_init();
    if (strcmp(mode, "mxfp4-moe") && strcmp(mode, "q8_0") && strcmp(mode, "bf16") && strcmp(mode, "f32"))
        return errf(err, errlen, "unknown output type '%s' (mxfp4-moe, q8_0, bf16, f32)", mode);
    char path[4096];
    size_t len;
    char *txt = read_file(path_join(path, sizeof path, dir, "config.json"), &len, err, errlen);
    if (!txt) return -1;
    dsv4_config c;
    char e2[512];
    int rc = dsv4_config_parse(txt, len, &c, e2, sizeof e2);
    free(txt);
    if (rc) return errf(err, errlen, "%s: %s", path, e2);
    st_set set = {0};
    if (st_open_dir(&set, dir, err, errlen)) { st_close(&set); return -1; }
    conv cv = {.set = &set, .mode = mode, .err = err, .errlen = errlen};
    int max_jobs = 16 + c.n_layers * 64;
    cv.jobs = xcalloc((size_t)max_jobs, sizeof *cv.jobs);
    cv.used = xcalloc((size_t)set.n_tensors + 1, 1);
    cv.pool = pool_new(n_threads);
    cv.w = gguf_writer_new();
    rc = -1;
    int ftype = !strcmp(mode, "mxfp4-moe") ? 38 : !strcmp(mode, "q8_0") ? 7 : !strcmp(mode, "bf16") ? 32 : 0;
    const char *base = strrchr(dir, '/');
    base = base && base[1] ? base + 1 : dir;
    gguf_model_write_metadata(cv.w, &c, base, ftype);
    /* tokenizer: --tokenizer FILE, else DIR/tokenizer.json, else none */
    char tpath[4096];
    if (!tokenizer_path) {
        path_join(tpath, sizeof tpath, dir, "tokenizer.json");
        FILE *tf = fopen(tpath, "rb");
        if (tf) { fclose(tf); tokenizer_path = tpath; }
    }
    if (tokenizer_path) {
        char *tj = read_file(tokenizer_path, &len, err, errlen);
        if (!tj) goto out;
        int trc = gguf_tokenizer_write(cv.w, tj, len, c.vocab_size, c.bos_token_id, c.eos_token_id, err, errlen);
        free(tj);
        if (trc) goto out;
    } else {
        gguf_w_str(cv.w, "tokenizer.ggml.model", "none");
        gguf_w_u32(cv.w, "deepseek4.vocab_size", (uint32_t)c.vocab_size);
        gguf_w_u32(cv.w, "tokenizer.ggml.bos_token_id", (uint32_t)c.bos_token_id);
        gguf_w_u32(cv.w, "tokenizer.ggml.eos_token_id", (uint32_t)c.eos_token_id);
    }
    if (add(&cv, "embed.weight", 0, "token_embd.weight")) goto out;
    for (int i = 0; i < c.n_layers; i++)
        if (add_layer(&cv, &c, i)) goto out;
    if (add(&cv, "norm.weight", 0, "output_norm.weight") || add(&cv, "head.weight", 0, "output.weight") ||
        add(&cv, "hc_head_fn", 0, "output_hc_fn.weight") || add(&cv, "hc_head_base", 0, "output_hc_base.weight") ||
        add(&cv, "hc_head_scale", 0, "output_hc_scale.weight"))
        goto out;
    /* anything left over must be MTP (left out on purpose) */
    for (int i = 0; i < set.n_tensors; i++)
        if (!cv.used[i] && strncmp(set.tensors[i].name, "mtp.", 4)) {
            errf(err, errlen, "%s: tensor '%s' is not part of the model the config describes", dir, set.tensors[i].name);
            goto out;
        }
    rc = gguf_writer_write(cv.w, out, progress, pctx, err, errlen);
out:
    for (int i = 0; i < cv.n_jobs; i++) { free(cv.jobs[i].data); free(cv.jobs[i].scale); }
    free(cv.jobs);
    free(cv.used);
    gguf_writer_free(cv.w);
    pool_free(cv.pool);
    st_close(&set);
    return rc;
}
