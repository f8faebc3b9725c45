/*
 * gguf_model.c - a deepseek4 GGUF (llama.cpp's layout) as a dsv4 model:
 * the config from the deepseek4.* metadata, and a weight source that
 * answers release tensor names ("layers.3.attn.wq_b") from the GGUF's own
 * names ("blk.3.attn_q_b.weight").
 *
 * Stored layouts line up with the release's row-major [out][in] matrices
 * because GGUF lists dims innermost first (ne = [in, out]); the routed
 * experts of a layer are one 3-D tensor per projection (ne = [in, out, E]),
 * so expert e is the slice at e * out rows.  MTP tensors are not part of a
 * llama.cpp conversion, so a GGUF model has n_mtp_layers = 0.
 */
#include "format/gguf_model.h"
#include "num/ggml_quants.h"
#include "util/util.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- names --------------------------------------------------------------- */

static const struct { const char *rel, *gg; } layer_names[] = {
    {"hc_attn_fn", "hc_attn_fn.weight"},
    {"hc_attn_base", "hc_attn_base.weight"},
    {"hc_attn_scale", "hc_attn_scale.weight"},
    {"hc_ffn_fn", "hc_ffn_fn.weight"},
    {"hc_ffn_base", "hc_ffn_base.weight"},
    {"hc_ffn_scale", "hc_ffn_scale.weight"},
    {"attn_norm.weight", "attn_norm.weight"},
    {"ffn_norm.weight", "ffn_norm.weight"},
    {"attn.attn_sink", "attn_sinks.weight"},
    {"attn.wq_a.weight", "attn_q_a.weight"},
    {"attn.q_norm.weight", "attn_q_a_norm.weight"},
    {"attn.wq_b.weight", "attn_q_b.weight"},
    {"attn.wkv.weight", "attn_kv.weight"},
    {"attn.kv_norm.weight", "attn_kv_a_norm.weight"},
    {"attn.wo_a.weight", "attn_output_a.weight"},
    {"attn.wo_b.weight", "attn_output_b.weight"},
    {"attn.compressor.wkv.weight", "attn_compressor_kv.weight"},
    {"attn.compressor.wgate.weight", "attn_compressor_gate.weight"},
    {"attn.compressor.ape", "attn_compressor_ape.weight"},
    {"attn.compressor.norm.weight", "attn_compressor_norm.weight"},
    {"attn.indexer.wq_b.weight", "indexer.attn_q_b.weight"},
    {"attn.indexer.weights_proj.weight", "indexer.proj.weight"},
    {"attn.indexer.compressor.wkv.weight", "indexer_compressor_kv.weight"},
    {"attn.indexer.compressor.wgate.weight", "indexer_compressor_gate.weight"},
    {"attn.indexer.compressor.ape", "indexer_compressor_ape.weight"},
    {"attn.indexer.compressor.norm.weight", "indexer_compressor_norm.weight"},
    {"ffn.gate.weight", "ffn_gate_inp.weight"},
    {"ffn.gate.bias", "exp_probs_b.bias"},
    {"ffn.gate.tid2eid", "ffn_gate_tid2eid.weight"},
    {"ffn.shared_experts.w1.weight", "ffn_gate_shexp.weight"},
    {"ffn.shared_experts.w2.weight", "ffn_down_shexp.weight"},
    {"ffn.shared_experts.w3.weight", "ffn_up_shexp.weight"},
};

static const struct { const char *rel, *gg; } top_names[] = {
    {"embed.weight", "token_embd.weight"},
    {"head.weight", "output.weight"},
    {"norm.weight", "output_norm.weight"},
    {"hc_head_fn", "output_hc_fn.weight"},
    {"hc_head_base", "output_hc_base.weight"},
    {"hc_head_scale", "output_hc_scale.weight"},
};

int gguf_name_from_release(const char *rel, char *out, size_t outlen, int *expert) {
    *expert = -1;
    for (size_t i = 0; i < sizeof top_names / sizeof top_names[0]; i++)
        if (!strcmp(rel, top_names[i].rel)) { snprintf(out, outlen, "%s", top_names[i].gg); return 0; }
    int layer, n = 0;
    if (sscanf(rel, "layers.%d.%n", &layer, &n) != 1 || n == 0 || layer < 0) return -1;
    const char *rest = rel + n;
    for (size_t i = 0; i < sizeof layer_names / sizeof layer_names[0]; i++)
        if (!strcmp(rest, layer_names[i].rel)) { snprintf(out, outlen, "blk.%d.%s", layer, layer_names[i].gg); return 0; }
    int e, w, m = 0;
    if (sscanf(rest, "ffn.experts.%d.w%d.weight%n", &e, &w, &m) == 2 && m && rest[m] == 0 && e >= 0 && w >= 1 && w <= 3) {
        static const char *proj[] = {"", "ffn_gate_exps", "ffn_down_exps", "ffn_up_exps"};
        snprintf(out, outlen, "blk.%d.%s.weight", layer, proj[w]);
        *expert = e;
        return 0;
    }
    return -1;
}

/* ---- metadata -> config --------------------------------------------------- */

#define ARCH "deepseek4."

static int get_int_def(const gguf_file *f, const char *key, int def, int *out, char *err, size_t errlen) {
    if (!gguf_find_kv(f, key)) { *out = def; return 0; }
    return gguf_get_int(f, key, out, err, errlen);
}
static int get_f32_def(const gguf_file *f, const char *key, float def, float *out, char *err, size_t errlen) {
    if (!gguf_find_kv(f, key)) { *out = def; return 0; }
    return gguf_get_f32(f, key, out, err, errlen);
}

/* A per-layer value that may be a scalar or an array: every entry must agree
 * (the engine has one value for all layers). */
static int get_uniform_f32(const gguf_file *f, const char *key, float *out, char *err, size_t errlen) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) return errf(err, errlen, "%s: missing metadata key '%s'", f->path, key);
    if (kv->type != GGUF_ARRAY) return gguf_get_f32(f, key, out, err, errlen);
    double first = 0, v;
    if (kv->n == 0 || gguf_arr_f64(kv, 0, &first)) return errf(err, errlen, "%s: '%s' must be a non-empty numeric array", f->path, key);
    for (uint64_t i = 1; i < kv->n; i++) {
        if (gguf_arr_f64(kv, i, &v)) return errf(err, errlen, "%s: '%s' must be numeric", f->path, key);
        if (v != first) return errf(err, errlen, "%s: '%s' differs between layers (%g vs %g); dsv4 needs one value", f->path, key, first, v);
    }
    *out = (float)first;
    return 0;
}

static int check_config(const char *path, const dsv4_config *c, char *err, size_t errlen) {
#define REQ(cond, ...) do { if (!(cond)) return errf(err, errlen, __VA_ARGS__); } while (0)
    REQ(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "%s: vocabulary size %d out of range", path, c->vocab_size);
    REQ(c->dim > 0 && c->dim % 128 == 0, "%s: embedding_length %d must be a positive multiple of 128", path, c->dim);
    REQ(c->moe_inter_dim > 0 && c->moe_inter_dim % 128 == 0, "%s: expert_feed_forward_length %d must be a positive multiple of 128", path, c->moe_inter_dim);
    REQ(c->n_layers > 0 && c->n_layers <= DSV4_MAX_LAYERS, "%s: block_count %d out of range", path, c->n_layers);
    REQ(c->n_heads > 0 && c->n_heads <= 4096, "%s: head_count %d out of range", path, c->n_heads);
    REQ(c->head_dim > 0 && c->rope_head_dim > 0 && c->rope_head_dim % 2 == 0 && c->rope_head_dim <= c->head_dim &&
        (c->head_dim - c->rope_head_dim) % 64 == 0, "%s: key_length %d / rope.dimension_count %d inconsistent", path, c->head_dim, c->rope_head_dim);
    REQ(c->q_lora_rank > 0 && c->q_lora_rank % 128 == 0, "%s: q_lora_rank %d must be a positive multiple of 128", path, c->q_lora_rank);
    REQ(c->o_groups > 0 && c->n_heads % c->o_groups == 0, "%s: output_group_count %d must divide head_count", path, c->o_groups);
    REQ(c->o_lora_rank > 0 && c->o_lora_rank % 128 == 0, "%s: output_lora_rank %d must be a positive multiple of 128", path, c->o_lora_rank);
    REQ(c->window_size > 0 && c->window_size <= 1 << 20, "%s: sliding_window %d out of range", path, c->window_size);
    REQ(c->n_routed_experts > 0 && c->n_routed_experts <= 65536, "%s: expert_count %d out of range", path, c->n_routed_experts);
    REQ(c->n_activated_experts > 0 && c->n_activated_experts <= c->n_routed_experts, "%s: expert_used_count %d out of range", path, c->n_activated_experts);
    REQ(c->n_shared_experts >= 0 && c->n_shared_experts <= 1, "%s: expert_shared_count %d: only 0 or 1 supported", path, c->n_shared_experts);
    REQ(c->n_hash_layers >= 0 && c->n_hash_layers <= c->n_layers, "%s: hash_layer_count %d out of range", path, c->n_hash_layers);
    REQ(c->hc_mult > 0 && c->hc_mult <= 16, "%s: hyper_connection.count %d out of range", path, c->hc_mult);
    REQ(c->hc_sinkhorn_iters > 0 && c->hc_sinkhorn_iters <= 1000, "%s: sinkhorn_iterations out of range", path);
    REQ(c->index_n_heads > 0 && c->index_head_dim >= c->rope_head_dim && (c->index_head_dim & (c->index_head_dim - 1)) == 0 &&
        c->index_head_dim % 32 == 0, "%s: indexer.key_length %d must be a power of two >= the rope dims", path, c->index_head_dim);
    REQ(c->index_topk > 0, "%s: indexer.top_k must be positive", path);
    for (int i = 0; i < c->n_layers; i++)
        REQ(c->compress_ratios[i] >= 0 && c->compress_ratios[i] <= 1 << 16, "%s: compress_ratios[%d] = %d out of range", path, i, c->compress_ratios[i]);
    return 0;
#undef REQ
}

int gguf_model_config(const gguf_file *f, dsv4_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    const char *arch; size_t al;
    if (gguf_get_str(f, "general.architecture", &arch, &al, err, errlen)) return -1;
    if (al != 9 || memcmp(arch, "deepseek4", 9))
        return errf(err, errlen, "%s: architecture '%.*s' is not deepseek4", f->path, (int)(al > 64 ? 64 : al), arch);
    int block_count, nextn = 0, gating, norm = 1;
    int64_t ctx = 0;
    if (gguf_get_int(f, ARCH "block_count", &block_count, err, errlen) ||
        get_int_def(f, ARCH "nextn_predict_layers", 0, &nextn, err, errlen) ||
        gguf_get_int(f, ARCH "embedding_length", &c->dim, err, errlen) ||
        gguf_get_int(f, ARCH "expert_feed_forward_length", &c->moe_inter_dim, err, errlen) ||
        gguf_get_int(f, ARCH "attention.head_count", &c->n_heads, err, errlen) ||
        gguf_get_int(f, ARCH "expert_count", &c->n_routed_experts, err, errlen) ||
        get_int_def(f, ARCH "expert_shared_count", 1, &c->n_shared_experts, err, errlen) ||
        gguf_get_int(f, ARCH "expert_used_count", &c->n_activated_experts, err, errlen) ||
        gguf_get_f32(f, ARCH "expert_weights_scale", &c->route_scale, err, errlen) ||
        get_uniform_f32(f, ARCH "swiglu_clamp_exp", &c->swiglu_limit, err, errlen) ||
        gguf_get_int(f, ARCH "attention.q_lora_rank", &c->q_lora_rank, err, errlen) ||
        gguf_get_int(f, ARCH "attention.key_length", &c->head_dim, err, errlen) ||
        gguf_get_int(f, ARCH "rope.dimension_count", &c->rope_head_dim, err, errlen) ||
        gguf_get_f32(f, ARCH "attention.layer_norm_rms_epsilon", &c->norm_eps, err, errlen) ||
        gguf_get_int(f, ARCH "attention.output_group_count", &c->o_groups, err, errlen) ||
        gguf_get_int(f, ARCH "attention.output_lora_rank", &c->o_lora_rank, err, errlen) ||
        gguf_get_int(f, ARCH "attention.sliding_window", &c->window_size, err, errlen) ||
        gguf_get_f32(f, ARCH "attention.compress_rope_freq_base", &c->compress_rope_theta, err, errlen) ||
        get_f32_def(f, ARCH "rope.freq_base", 10000.0f, &c->rope_theta, err, errlen) ||
        gguf_get_int(f, ARCH "hash_layer_count", &c->n_hash_layers, err, errlen) ||
        gguf_get_int(f, ARCH "attention.indexer.head_count", &c->index_n_heads, err, errlen) ||
        gguf_get_int(f, ARCH "attention.indexer.key_length", &c->index_head_dim, err, errlen) ||
        gguf_get_int(f, ARCH "attention.indexer.top_k", &c->index_topk, err, errlen) ||
        gguf_get_int(f, ARCH "hyper_connection.count", &c->hc_mult, err, errlen) ||
        gguf_get_int(f, ARCH "hyper_connection.sinkhorn_iterations", &c->hc_sinkhorn_iters, err, errlen) ||
        gguf_get_f32(f, ARCH "hyper_connection.epsilon", &c->hc_eps, err, errlen) ||
        get_int_def(f, ARCH "expert_gating_func", 4, &gating, err, errlen) ||
        get_int_def(f, "tokenizer.ggml.bos_token_id", 0, &c->bos_token_id, err, errlen) ||
        get_int_def(f, "tokenizer.ggml.eos_token_id", 1, &c->eos_token_id, err, errlen))
        return -1;
    if (gguf_find_kv(f, ARCH "expert_weights_norm") && gguf_get_bool(f, ARCH "expert_weights_norm", &norm, err, errlen)) return -1;
    if (!norm) return errf(err, errlen, "%s: expert_weights_norm is false; DeepSeek-V4 normalises the top-k weights", f->path);
    if (gating != 4) return errf(err, errlen, "%s: expert_gating_func %d is not sqrt-softplus (4)", f->path, gating);
    if (gguf_find_kv(f, ARCH "context_length") && gguf_get_i64(f, ARCH "context_length", &ctx, err, errlen)) return -1;
    c->max_position_embeddings = ctx > 0 ? (long)ctx : 1048576;
    if (nextn < 0 || nextn >= block_count) return errf(err, errlen, "%s: nextn_predict_layers %d out of range", f->path, nextn);
    c->n_layers = block_count - nextn;
    c->n_mtp_layers = 0;
    /* YaRN: only when the file says so */
    const char *st; size_t sl;
    c->original_seq_len = 0; c->rope_factor = 1; c->beta_fast = 32; c->beta_slow = 1;
    if (!gguf_get_str(f, ARCH "rope.scaling.type", &st, &sl, NULL, 0) && sl == 4 && !memcmp(st, "yarn", 4)) {
        if (gguf_get_f32(f, ARCH "rope.scaling.factor", &c->rope_factor, err, errlen) ||
            gguf_get_int(f, ARCH "rope.scaling.original_context_length", &c->original_seq_len, err, errlen) ||
            get_f32_def(f, ARCH "rope.scaling.yarn_beta_fast", 32, &c->beta_fast, err, errlen) ||
            get_f32_def(f, ARCH "rope.scaling.yarn_beta_slow", 1, &c->beta_slow, err, errlen))
            return -1;
    }
    const gguf_kv *cr = gguf_find_kv(f, ARCH "attention.compress_ratios");
    if (!cr) return errf(err, errlen, "%s: missing metadata key '" ARCH "attention.compress_ratios'", f->path);
    if (cr->type != GGUF_ARRAY || cr->n < (uint64_t)c->n_layers || c->n_layers > DSV4_MAX_LAYERS)
        return errf(err, errlen, "%s: compress_ratios must be an integer array with at least block_count entries", f->path);
    for (int i = 0; i < c->n_layers; i++) {
        int64_t v;
        if (gguf_arr_i64(cr, (uint64_t)i, &v) || v < 0 || v > 65536)
            return errf(err, errlen, "%s: compress_ratios[%d] is not a valid ratio", f->path, i);
        c->compress_ratios[i] = (int)v;
    }
    /* the vocabulary is the embedding's row count */
    const gguf_tensor *emb = gguf_find_tensor(f, "token_embd.weight");
    if (!emb || emb->ndim != 2) return errf(err, errlen, "%s: tensor 'token_embd.weight' is missing or not 2-D", f->path);
    if (emb->ne[1] > (1 << 24)) return errf(err, errlen, "%s: vocabulary of %lld tokens is too large", f->path, (long long)emb->ne[1]);
    c->vocab_size = (int)emb->ne[1];
    return check_config(f->path, c, err, errlen);
}

void gguf_model_write_metadata(gguf_writer *w, const dsv4_config *c, const char *name, int file_type) {
    gguf_w_str(w, "general.architecture", "deepseek4");
    gguf_w_str(w, "general.type", "model");
    gguf_w_str(w, "general.name", name);
    gguf_w_u32(w, "general.file_type", (uint32_t)file_type);
    gguf_w_u32(w, ARCH "block_count", (uint32_t)c->n_layers);
    gguf_w_u32(w, ARCH "context_length", (uint32_t)(c->max_position_embeddings > 0 ? c->max_position_embeddings : 1048576));
    gguf_w_u32(w, ARCH "embedding_length", (uint32_t)c->dim);
    gguf_w_u32(w, ARCH "attention.head_count", (uint32_t)c->n_heads);
    gguf_w_u32(w, ARCH "attention.head_count_kv", 1);
    if (c->original_seq_len > 0) {
        gguf_w_str(w, ARCH "rope.scaling.type", "yarn");
        gguf_w_f32(w, ARCH "rope.scaling.factor", c->rope_factor);
        gguf_w_u32(w, ARCH "rope.scaling.original_context_length", (uint32_t)c->original_seq_len);
        gguf_w_f32(w, ARCH "rope.scaling.yarn_beta_fast", c->beta_fast);
        gguf_w_f32(w, ARCH "rope.scaling.yarn_beta_slow", c->beta_slow);
    }
    gguf_w_f32(w, ARCH "rope.freq_base", c->rope_theta);
    gguf_w_f32(w, ARCH "attention.layer_norm_rms_epsilon", c->norm_eps);
    gguf_w_u32(w, ARCH "expert_count", (uint32_t)c->n_routed_experts);
    gguf_w_u32(w, ARCH "expert_used_count", (uint32_t)c->n_activated_experts);
    gguf_w_u32(w, ARCH "expert_gating_func", 4);
    gguf_w_u32(w, ARCH "attention.key_length", (uint32_t)c->head_dim);
    gguf_w_u32(w, ARCH "attention.value_length", (uint32_t)c->head_dim);
    gguf_w_u32(w, ARCH "rope.dimension_count", (uint32_t)c->rope_head_dim);
    gguf_w_u32(w, ARCH "attention.q_lora_rank", (uint32_t)c->q_lora_rank);
    gguf_w_u32(w, ARCH "attention.sliding_window", (uint32_t)c->window_size);
    gguf_w_u32(w, ARCH "expert_feed_forward_length", (uint32_t)c->moe_inter_dim);
    gguf_w_u32(w, ARCH "expert_shared_count", (uint32_t)c->n_shared_experts);
    gguf_w_f32(w, ARCH "expert_weights_scale", c->route_scale);
    gguf_w_bool(w, ARCH "expert_weights_norm", 1);
    float clamp[DSV4_MAX_LAYERS];
    for (int i = 0; i < c->n_layers; i++) clamp[i] = c->swiglu_limit;
    gguf_w_arr(w, ARCH "swiglu_clamp_exp", GGUF_F32, clamp, (uint64_t)c->n_layers);
    gguf_w_arr(w, ARCH "swiglu_clamp_shexp", GGUF_F32, clamp, (uint64_t)c->n_layers);
    gguf_w_u32(w, ARCH "attention.indexer.head_count", (uint32_t)c->index_n_heads);
    gguf_w_u32(w, ARCH "attention.indexer.key_length", (uint32_t)c->index_head_dim);
    gguf_w_u32(w, ARCH "attention.indexer.top_k", (uint32_t)c->index_topk);
    gguf_w_u32(w, ARCH "attention.output_group_count", (uint32_t)c->o_groups);
    gguf_w_u32(w, ARCH "attention.output_lora_rank", (uint32_t)c->o_lora_rank);
    int32_t ratios[DSV4_MAX_LAYERS];
    for (int i = 0; i < c->n_layers; i++) ratios[i] = c->compress_ratios[i];
    gguf_w_arr(w, ARCH "attention.compress_ratios", GGUF_I32, ratios, (uint64_t)c->n_layers);
    gguf_w_f32(w, ARCH "attention.compress_rope_freq_base", c->compress_rope_theta);
    gguf_w_u32(w, ARCH "hyper_connection.count", (uint32_t)c->hc_mult);
    gguf_w_u32(w, ARCH "hyper_connection.sinkhorn_iterations", (uint32_t)c->hc_sinkhorn_iters);
    gguf_w_f32(w, ARCH "hyper_connection.epsilon", c->hc_eps);
    gguf_w_u32(w, ARCH "hash_layer_count", (uint32_t)c->n_hash_layers);
    gguf_w_u32(w, ARCH "embedding_length_out", (uint32_t)(c->dim * c->hc_mult));
}

/* ---- the weight source ---------------------------------------------------- */

typedef struct {
    gguf_file *f;
    unsigned char *used;     /* per tensor (file order) */
} gg_source;

static const gguf_tensor *lookup(gg_source *s, const char *gname) {
    const gguf_tensor *t = gguf_find_tensor(s->f, gname);
    if (t) s->used[t - s->f->tensors] = 1;
    return t;
}

static int gg_matrix(void *ctx, const char *name, int rows, int cols, dsv4_weight *w, char *err, size_t errlen) {
    gg_source *s = ctx;
    char rel[512], gn[512];
    int ex;
    snprintf(rel, sizeof rel, "%s.weight", name);
    if (gguf_name_from_release(rel, gn, sizeof gn, &ex))
        return errf(err, errlen, "%s: tensor '%s' has no counterpart in a deepseek4 GGUF", s->f->path, rel);
    const gguf_tensor *t = lookup(s, gn);
    if (!t) return errf(err, errlen, "%s: tensor '%s' (for %s) is missing", s->f->path, gn, rel);
    wtype wt;
    if (gguf_type_to_wtype(t->type, &wt))
        return errf(err, errlen, "%s: tensor '%s' has type %s, which dsv4 cannot multiply by", s->f->path, gn, gguf_type_name(t->type));
    uint64_t rb = gguf_type_row_bytes(t->type, t->ne[0]);
    memset(w, 0, sizeof *w);
    w->type = wt; w->rows = rows; w->cols = cols; w->name = t->name;
    if (ex >= 0) {
        if (t->ndim != 3 || t->ne[0] != cols || t->ne[1] != rows || ex >= t->ne[2])
            return errf(err, errlen, "%s: tensor '%s' has shape [%lld,%lld,%lld], expected [%d,%d,>%d] for %s", s->f->path, gn,
                        (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2], cols, rows, ex, rel);
        w->data = (const uint8_t *)t->data + (size_t)ex * (size_t)rows * rb;
        return 0;
    }
    if (t->ne[0] != cols || t->ne[1] * t->ne[2] * t->ne[3] != rows)
        return errf(err, errlen, "%s: tensor '%s' has shape [%lld,%lld], expected [%d,%d] (ne0 = columns) for %s", s->f->path, gn,
                    (long long)t->ne[0], (long long)(t->ne[1] * t->ne[2] * t->ne[3]), cols, rows, rel);
    w->data = t->data;
    return 0;
}

static int gg_vector(void *ctx, const char *name, int64_t numel, ws_vtype *type, const void **data,
                     char *err, size_t errlen) {
    gg_source *s = ctx;
    char gn[512];
    int ex;
    if (gguf_name_from_release(name, gn, sizeof gn, &ex) || ex >= 0)
        return errf(err, errlen, "%s: tensor '%s' has no counterpart in a deepseek4 GGUF", s->f->path, name);
    const gguf_tensor *t = lookup(s, gn);
    if (!t) return errf(err, errlen, "%s: tensor '%s' (for %s) is missing", s->f->path, gn, name);
    if (gguf_tensor_numel(t) != numel)
        return errf(err, errlen, "%s: tensor '%s' has %lld elements, expected %lld", s->f->path, gn,
                    (long long)gguf_tensor_numel(t), (long long)numel);
    switch (t->type) {
    case GGML_TYPE_F32: *type = WS_F32; break;
    case GGML_TYPE_BF16: *type = WS_BF16; break;
    case GGML_TYPE_F16: *type = WS_F16; break;
    case GGML_TYPE_I32: *type = WS_I32; break;
    case GGML_TYPE_I64: *type = WS_I64; break;
    default:
        return errf(err, errlen, "%s: tensor '%s' has type %s; small tensors must be F32/BF16/F16/I32/I64", s->f->path, gn,
                    gguf_type_name(t->type));
    }
    *data = t->data;
    return 0;
}

static int gg_has(void *ctx, const char *name) {
    gg_source *s = ctx;
    char gn[512], rel[512];
    int ex;
    if (!gguf_name_from_release(name, gn, sizeof gn, &ex)) {
        const gguf_tensor *t = gguf_find_tensor(s->f, gn);
        if (t) return ex < 0 || (t->ndim == 3 && ex < t->ne[2]);
    }
    snprintf(rel, sizeof rel, "%s.weight", name);
    if (!gguf_name_from_release(rel, gn, sizeof gn, &ex)) {
        const gguf_tensor *t = gguf_find_tensor(s->f, gn);
        if (t) return ex < 0 || (t->ndim == 3 && ex < t->ne[2]);
    }
    return 0;
}

static const char *gg_unused(void *ctx) {
    gg_source *s = ctx;
    for (int64_t i = 0; i < s->f->n_tensors; i++)
        if (!s->used[i]) return s->f->tensors[i].name;
    return NULL;
}

static void gg_close(void *ctx) {
    gg_source *s = ctx;
    gguf_close(s->f);
    free(s->used);
    free(s);
}

static void gg_prefault(void *ctx) {
    gg_source *s = ctx;
    if (s->f->mapped) map_prefault(s->f->buf, s->f->len);
}

static double gg_hugepage_fraction(void *ctx) {
    gg_source *s = ctx;
    return s->f->mapped ? map_hugepage_fraction(s->f->buf, s->f->len) : -1;
}

int gguf_model_open(const char *path, dsv4_config *cfg, wsource *src, char *err, size_t errlen) {
    gguf_file *f = gguf_open(path, err, errlen);
    if (!f) return -1;
    if (gguf_model_config(f, cfg, err, errlen)) { gguf_close(f); return -1; }
    gg_source *s = xcalloc(1, sizeof *s);
    s->f = f;
    s->used = xcalloc((size_t)f->n_tensors + 1, 1);
    /* tensors llama.cpp may carry that dsv4 has no use for are not errors */
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const char *n = f->tensors[i].name;
        if (strstr(n, ".exp_probs_b_vl.") || strstr(n, ".nextn.") || strstr(n, "rope_freqs")) s->used[i] = 1;
    }
    *src = (wsource){.ctx = s, .matrix = gg_matrix, .vector = gg_vector, .has = gg_has,
                     .unused = gg_unused, .close = gg_close,
                     .prefault = gg_prefault, .hugepage_fraction = gg_hugepage_fraction};
    return 0;
}
