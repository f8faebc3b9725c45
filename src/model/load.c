/*
 * load.c - build a dsv4_model from a config and a weight source.
 *
 * Every tensor the config implies is requested with its exact expected
 * shape; anything missing, mis-shaped or of the wrong dtype fails the load
 * with a message naming the file and the tensor, and so does any tensor in
 * the checkpoint that the model does not use.
 */
#include "model/model.h"
#include "num/numfmt.h"
#include "util/util.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Optional GGUF support (format/gguf_model.c): weak so that the engine
 * links without it. */
int gguf_model_open(const char *path, dsv4_config *cfg, wsource *src, char *err, size_t errlen)
    __attribute__((weak));

typedef struct {
    dsv4_model *m;
    char *err;
    size_t errlen;
    int failed;
} loader;

static void *own(dsv4_model *m, void *p) {
    m->owned = xrealloc(m->owned, (size_t)(m->n_owned + 1) * sizeof(void *));
    m->owned[m->n_owned++] = p;
    return p;
}

/* An F32 view of a stored vector: the mmap itself for F32, else a copy. */
static const float *vec(loader *L, const char *name, int64_t numel) {
    if (L->failed) return NULL;
    ws_vtype t;
    const void *d;
    if (L->m->src.vector(L->m->src.ctx, name, numel, &t, &d, L->err, L->errlen)) { L->failed = 1; return NULL; }
    /* safetensors gives no alignment guarantee: F32 data is used in place
     * only when it is 4-byte aligned */
    if (t == WS_F32 && (uintptr_t)d % 4 == 0) return d;
    float *f = own(L->m, xmalloc((size_t)numel * sizeof(float)));
    const uint8_t *b = d;
    for (int64_t i = 0; i < numel; i++) {
        uint16_t h;
        memcpy(&h, b + 2 * i, 2);
        if (t == WS_F32) memcpy(&f[i], b + 4 * i, 4);
        else if (t == WS_BF16) f[i] = bf16_to_f32(h);
        else if (t == WS_F16) {
            int e = (h >> 10) & 31, mnt = h & 1023;
            float v = e == 0 ? ldexpf((float)mnt, -24) : e == 31 ? (mnt ? NAN : INFINITY) : ldexpf((float)(mnt | 1024), e - 25);
            f[i] = (h & 0x8000) ? -v : v;
        } else { L->failed = 1; errf(L->err, L->errlen, "tensor '%s': integer type where floats are expected", name); return NULL; }
    }
    return f;
}

static void mat(loader *L, const char *name, int rows, int cols, dsv4_weight *w) {
    if (L->failed) return;
    if (L->m->src.matrix(L->m->src.ctx, name, rows, cols, w, L->err, L->errlen)) L->failed = 1;
}

static void load_compressor(loader *L, const char *pfx, int ratio, int d, int rotate, compressor_w *c) {
    const dsv4_config *cfg = &L->m->cfg;
    char n[512];
    c->ratio = ratio;
    c->d = d;
    c->overlap = ratio == 4;
    c->coff = 1 + c->overlap;
    c->rotate = rotate;
    snprintf(n, sizeof n, "%s.wkv", pfx);    mat(L, n, c->coff * d, cfg->dim, &c->wkv);
    snprintf(n, sizeof n, "%s.wgate", pfx);  mat(L, n, c->coff * d, cfg->dim, &c->wgate);
    snprintf(n, sizeof n, "%s.ape", pfx);    c->ape = vec(L, n, (int64_t)ratio * c->coff * d);
    snprintf(n, sizeof n, "%s.norm.weight", pfx); c->norm = vec(L, n, d);
}

static void load_layer(loader *L, int li, layer_w *l) {
    dsv4_model *m = L->m;
    const dsv4_config *c = &m->cfg;
    int D = c->dim, H = c->n_heads, hd = c->head_dim, hc = c->hc_mult, mix = (2 + hc) * hc;
    int is_mtp = li >= c->n_layers;
    char p[64], n[512];
    if (is_mtp) snprintf(p, sizeof p, "mtp.%d.", li - c->n_layers);
    else snprintf(p, sizeof p, "layers.%d.", li);
#define N(fmt) (snprintf(n, sizeof n, "%s" fmt, p), n)
    l->ratio = c->compress_ratios[li];
    l->is_hash = !is_mtp && li < c->n_hash_layers;
    l->hc_attn_fn = vec(L, N("hc_attn_fn"), (int64_t)mix * hc * D);
    l->hc_attn_base = vec(L, N("hc_attn_base"), mix);
    l->hc_attn_scale = vec(L, N("hc_attn_scale"), 3);
    l->hc_ffn_fn = vec(L, N("hc_ffn_fn"), (int64_t)mix * hc * D);
    l->hc_ffn_base = vec(L, N("hc_ffn_base"), mix);
    l->hc_ffn_scale = vec(L, N("hc_ffn_scale"), 3);
    l->attn_norm = vec(L, N("attn_norm.weight"), D);
    l->ffn_norm = vec(L, N("ffn_norm.weight"), D);
    l->attn_sink = vec(L, N("attn.attn_sink"), H);
    mat(L, N("attn.wq_a"), c->q_lora_rank, D, &l->wq_a);
    l->q_norm = vec(L, N("attn.q_norm.weight"), c->q_lora_rank);
    mat(L, N("attn.wq_b"), H * hd, c->q_lora_rank, &l->wq_b);
    mat(L, N("attn.wkv"), hd, D, &l->wkv);
    l->kv_norm = vec(L, N("attn.kv_norm.weight"), hd);
    mat(L, N("attn.wo_a"), c->o_groups * c->o_lora_rank, H * hd / c->o_groups, &l->wo_a);
    mat(L, N("attn.wo_b"), D, c->o_groups * c->o_lora_rank, &l->wo_b);
    if (l->ratio) {
        load_compressor(L, N("attn.compressor"), l->ratio, hd, 0, &l->comp);
        if (l->ratio == 4) {
            l->has_indexer = 1;
            mat(L, N("attn.indexer.wq_b"), c->index_n_heads * c->index_head_dim, c->q_lora_rank, &l->idx_wq_b);
            mat(L, N("attn.indexer.weights_proj"), c->index_n_heads, D, &l->idx_weights_proj);
            load_compressor(L, N("attn.indexer.compressor"), 4, c->index_head_dim, 1, &l->idx_comp);
        }
    }
    int E = c->n_routed_experts, I = c->moe_inter_dim;
    mat(L, N("ffn.gate"), E, D, &l->gate);
    if (l->is_hash) {
        ws_vtype t;
        const void *d;
        if (!L->failed && m->src.vector(m->src.ctx, N("ffn.gate.tid2eid"), (int64_t)c->vocab_size * c->n_activated_experts,
                                        &t, &d, L->err, L->errlen)) L->failed = 1;
        else if (!L->failed && t != WS_I64 && t != WS_I32) { L->failed = 1; errf(L->err, L->errlen, "tensor '%s' must be I64 or I32", n); }
        else if (!L->failed) {
            /* held as int32 like the reference (and aligned: the file's
             * offsets need not be); every id is checked once here */
            int64_t cnt = (int64_t)c->vocab_size * c->n_activated_experts;
            int32_t *ids = own(m, xmalloc((size_t)cnt * sizeof(int32_t)));
            for (int64_t i = 0; i < cnt; i++) {
                int64_t e;
                if (t == WS_I64) memcpy(&e, (const uint8_t *)d + 8 * i, 8);
                else { int32_t e32; memcpy(&e32, (const uint8_t *)d + 4 * i, 4); e = e32; }
                if (e < 0 || e >= E) { L->failed = 1; errf(L->err, L->errlen, "tensor '%s': expert id %lld out of range", n, (long long)e); break; }
                ids[i] = (int32_t)e;
            }
            l->tid2eid = ids;
            l->tid2eid_i64 = t == WS_I64;
        }
    } else {
        l->gate_bias = vec(L, N("ffn.gate.bias"), E);
    }
    l->w1 = xcalloc((size_t)E, sizeof(dsv4_weight));
    l->w2 = xcalloc((size_t)E, sizeof(dsv4_weight));
    l->w3 = xcalloc((size_t)E, sizeof(dsv4_weight));
    for (int e = 0; e < E && !L->failed; e++) {
        snprintf(n, sizeof n, "%sffn.experts.%d.w1", p, e); mat(L, n, I, D, &l->w1[e]);
        snprintf(n, sizeof n, "%sffn.experts.%d.w2", p, e); mat(L, n, D, I, &l->w2[e]);
        snprintf(n, sizeof n, "%sffn.experts.%d.w3", p, e); mat(L, n, I, D, &l->w3[e]);
    }
    l->has_shared = c->n_shared_experts > 0;
    if (l->has_shared) {
        mat(L, N("ffn.shared_experts.w1"), I, D, &l->sw1);
        mat(L, N("ffn.shared_experts.w2"), D, I, &l->sw2);
        mat(L, N("ffn.shared_experts.w3"), I, D, &l->sw3);
    }
    if (is_mtp) {
        mat(L, N("e_proj"), D, D, &l->e_proj);
        mat(L, N("h_proj"), D, D, &l->h_proj);
        l->enorm = vec(L, N("enorm.weight"), D);
        l->hnorm = vec(L, N("hnorm.weight"), D);
        l->norm = vec(L, N("norm.weight"), D);
        l->hc_head_fn = vec(L, N("hc_head_fn"), (int64_t)hc * hc * D);
        l->hc_head_base = vec(L, N("hc_head_base"), hc);
        l->hc_head_scale = vec(L, N("hc_head_scale"), 1);
    }
#undef N
}

/* RoPE inverse frequencies, with YaRN when original_seq_len > 0 (spec 3). */
static float *rope_freqs(const dsv4_config *c, double base, int yarn) {
    int rd = c->rope_head_dim, n = rd / 2;
    float *f = xmalloc((size_t)n * sizeof(float));
    /* FP32 arithmetic as the reference computes it (1 / base^(2i/rd) on a
     * float32 tensor), so that the angles match it to the last bit */
    for (int i = 0; i < n; i++) f[i] = 1.0f / powf((float)base, (float)(2 * i) / (float)rd);
    if (yarn && c->original_seq_len > 0) {
        double two_pi = 2 * M_PI;
        double lo = floor(rd * log(c->original_seq_len / (c->beta_fast * two_pi)) / (2 * log(base)));
        double hi = ceil(rd * log(c->original_seq_len / (c->beta_slow * two_pi)) / (2 * log(base)));
        if (lo < 0) lo = 0;
        if (hi > rd - 1) hi = rd - 1;
        if (lo == hi) hi += 0.001;
        for (int i = 0; i < n; i++) {
            float ramp = (float)(((float)i - lo) / (hi - lo));
            ramp = fminf(fmaxf(ramp, 0.0f), 1.0f);
            float smooth = 1.0f - ramp;
            f[i] = f[i] / c->rope_factor * (1.0f - smooth) + f[i] * smooth;
        }
    }
    return f;
}

dsv4_model *model_load_source(const dsv4_config *cfg, wsource src, const char *label, char *err, size_t errlen) {
    numfmt_init();
    dsv4_model *m = xcalloc(1, sizeof *m);
    m->cfg = *cfg;
    m->src = src;
    m->mode = DSV4_MODE_FAST;
    snprintf(m->dir, sizeof m->dir, "%s", label);
    loader L = {m, err, errlen, 0};
    const dsv4_config *c = &m->cfg;
    int D = c->dim, hc = c->hc_mult;
    mat(&L, "embed", c->vocab_size, D, &m->embed);
    mat(&L, "head", c->vocab_size, D, &m->head);
    m->norm = vec(&L, "norm.weight", D);
    m->hc_head_fn = vec(&L, "hc_head_fn", (int64_t)hc * hc * D);
    m->hc_head_base = vec(&L, "hc_head_base", hc);
    m->hc_head_scale = vec(&L, "hc_head_scale", 1);
    int nl = c->n_layers + c->n_mtp_layers;
    m->layers = xcalloc((size_t)nl, sizeof(layer_w));
    for (int i = 0; i < nl && !L.failed; i++) load_layer(&L, i, &m->layers[i]);
    if (!L.failed && src.unused) {
        const char *extra = src.unused(src.ctx);
        if (extra) { L.failed = 1; errf(err, errlen, "%s: unexpected tensor '%s' (not part of the model the config describes)", label, extra); }
    }
    if (L.failed) { dsv4_model_free(m); return NULL; }
    m->prof_s = xcalloc((size_t)c->n_layers + 2, sizeof(double));
    m->rope_freq_swa = rope_freqs(c, c->rope_theta, 0);
    m->rope_freq_comp = rope_freqs(c, c->compress_rope_theta, 1);
    dsv4_model_set_threads(m, 0);
    return m;
}

static int ends_with(const char *s, const char *suf) {
    size_t a = strlen(s), b = strlen(suf);
    return a >= b && !strcmp(s + a - b, suf);
}

dsv4_model *dsv4_model_load(const char *dir, char *err, size_t errlen) {
    dsv4_config cfg;
    wsource src;
    if (ends_with(dir, ".gguf")) {
        if (!gguf_model_open) { errf(err, errlen, "%s: GGUF support is not built in", dir); return NULL; }
        if (gguf_model_open(dir, &cfg, &src, err, errlen)) return NULL;
        return model_load_source(&cfg, src, dir, err, errlen);
    }
    char path[4096];
    size_t len;
    char *txt = read_file(path_join(path, sizeof path, dir, "config.json"), &len, err, errlen);
    if (!txt) return NULL;
    char e2[512];
    int rc = dsv4_config_parse(txt, len, &cfg, e2, sizeof e2);
    free(txt);
    if (rc) { errf(err, errlen, "%s: %s", path, e2); return NULL; }
    if (wsource_open_safetensors(dir, &src, err, errlen)) return NULL;
    return model_load_source(&cfg, src, dir, err, errlen);
}

double dsv4_model_hugepage_fraction(const dsv4_model *m) {
    return m && m->src.hugepage_fraction ? m->src.hugepage_fraction(m->src.ctx) : -1;
}

void dsv4_model_prefault(dsv4_model *m) {
    if (m && m->src.prefault) m->src.prefault(m->src.ctx);
}

void dsv4_model_free(dsv4_model *m) {
    if (!m) return;
    int nl = m->cfg.n_layers + m->cfg.n_mtp_layers;
    for (int i = 0; m->layers && i < nl; i++) {
        free(m->layers[i].w1);
        free(m->layers[i].w2);
        free(m->layers[i].w3);
    }
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    free(m->prof_s);
    free(m->rope_freq_swa);
    free(m->rope_freq_comp);
    if (m->src.close) m->src.close(m->src.ctx);
    pool_free(m->pool);
    free(m);
}

const dsv4_config *dsv4_model_config(const dsv4_model *m) { return &m->cfg; }
void dsv4_model_set_mode(dsv4_model *m, dsv4_mode mode) { m->mode = mode; }
dsv4_mode dsv4_model_mode(const dsv4_model *m) { return m->mode; }

void dsv4_model_set_threads(dsv4_model *m, int n) {
    const char *env = getenv("DSV4_THREADS");
    if (n <= 0 && env) n = atoi(env);
    pool_free(m->pool);
    m->pool = pool_new(n);
    m->n_threads = pool_size(m->pool);
}
