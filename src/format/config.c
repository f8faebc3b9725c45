/*
 * config.c - HF config.json (the release schema) -> dsv4_config.
 *
 * Every geometry comes from the file; nothing is hard-coded to Flash.
 * Checkpoints that are not V4 (the later 0731/DSpark and V4.1 releases,
 * recognised by their dspark_*, engram_* or text_config keys) are refused,
 * and values that would break the forward pass's assumptions are reported
 * here, with the key's name, instead of failing later.
 */
#include "dsv4.h"
#include "util/util.h"
#include <jansson.h>
#include <math.h>
#include <string.h>

static int get_int(json_t *o, const char *k, int def, int required, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) {
        if (required) return errf(err, errlen, "config.json: missing key \"%s\"", k);
        *out = def;
        return 0;
    }
    if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v)) && fabs(json_real_value(v)) < 1e9) {
        *out = (int)json_real_value(v);
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < -1000000000 || json_integer_value(v) > 1000000000)
        return errf(err, errlen, "config.json: \"%s\" must be an integer", k);
    *out = (int)json_integer_value(v);
    return 0;
}

static int get_float(json_t *o, const char *k, float def, int required, float *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, k);
    if (!v || json_is_null(v)) {
        if (required) return errf(err, errlen, "config.json: missing key \"%s\"", k);
        *out = def;
        return 0;
    }
    if (!json_is_number(v)) return errf(err, errlen, "config.json: \"%s\" must be a number", k);
    *out = (float)json_number_value(v);
    return 0;
}

static int refuse_other_releases(json_t *root, char *err, size_t errlen) {
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strncmp(key, "dspark_", 7) || !strncmp(key, "engram_", 7) || !strcmp(key, "text_config") ||
            !strcmp(key, "kv_source_layer_ids"))
            return errf(err, errlen,
                        "config.json: key \"%s\" belongs to a later release (DeepSeek-V4-0731/DSpark or V4.1), "
                        "which dsv4 does not support", key);
    }
    return 0;
}

static int check_geometry(const dsv4_config *c, char *err, size_t errlen) {
#define REQ(cond, ...) do { if (!(cond)) return errf(err, errlen, "config.json: " __VA_ARGS__); } while (0)
    REQ(c->vocab_size > 0 && c->vocab_size <= (1 << 24), "vocab_size %d out of range", c->vocab_size);
    REQ(c->dim > 0 && c->dim % 128 == 0, "hidden_size %d must be a positive multiple of 128", c->dim);
    REQ(c->moe_inter_dim > 0 && c->moe_inter_dim % 128 == 0, "moe_intermediate_size %d must be a positive multiple of 128", c->moe_inter_dim);
    REQ(c->n_layers > 0 && c->n_layers + c->n_mtp_layers <= DSV4_MAX_LAYERS, "num_hidden_layers %d out of range", c->n_layers);
    REQ(c->n_mtp_layers == 0 || c->n_mtp_layers == 1, "num_nextn_predict_layers %d: only 0 or 1 supported", c->n_mtp_layers);
    REQ(c->n_heads > 0 && c->n_heads <= 4096, "num_attention_heads %d out of range", c->n_heads);
    REQ(c->head_dim > 0 && c->rope_head_dim > 0 && c->rope_head_dim % 2 == 0 && c->rope_head_dim <= c->head_dim &&
        (c->head_dim - c->rope_head_dim) % 64 == 0,
        "head_dim %d / qk_rope_head_dim %d: need an even rope dim and (head_dim - rope) %% 64 == 0", c->head_dim, c->rope_head_dim);
    REQ(c->q_lora_rank > 0 && c->q_lora_rank % 128 == 0, "q_lora_rank %d must be a positive multiple of 128", c->q_lora_rank);
    REQ(c->o_groups > 0 && c->n_heads % c->o_groups == 0, "o_groups %d must divide num_attention_heads %d", c->o_groups, c->n_heads);
    REQ(c->o_lora_rank > 0 && c->o_lora_rank % 128 == 0, "o_lora_rank %d must be a positive multiple of 128", c->o_lora_rank);
    REQ((c->n_heads / c->o_groups) * c->head_dim % 128 == 0, "(heads per group x head_dim) must be a multiple of 128");
    REQ(c->window_size > 0 && c->window_size <= 1 << 20, "sliding_window %d out of range", c->window_size);
    REQ(c->n_routed_experts > 0 && c->n_routed_experts <= 65536, "n_routed_experts %d out of range", c->n_routed_experts);
    REQ(c->n_activated_experts > 0 && c->n_activated_experts <= c->n_routed_experts,
        "num_experts_per_tok %d must be in 1..n_routed_experts", c->n_activated_experts);
    REQ(c->n_shared_experts >= 0 && c->n_shared_experts <= 1, "n_shared_experts %d: only 0 or 1 supported", c->n_shared_experts);
    REQ(c->n_hash_layers >= 0 && c->n_hash_layers <= c->n_layers, "num_hash_layers %d out of range", c->n_hash_layers);
    REQ(c->hc_mult > 0 && c->hc_mult <= 16, "hc_mult %d out of range", c->hc_mult);
    REQ(c->hc_sinkhorn_iters > 0 && c->hc_sinkhorn_iters <= 1000, "hc_sinkhorn_iters out of range");
    REQ(c->index_n_heads > 0 && c->index_head_dim >= c->rope_head_dim && (c->index_head_dim & (c->index_head_dim - 1)) == 0 &&
        c->index_head_dim % 32 == 0, "index_head_dim %d must be a power of two >= qk_rope_head_dim", c->index_head_dim);
    REQ(c->index_topk > 0, "index_topk %d must be positive", c->index_topk);
    for (int i = 0; i < c->n_layers + c->n_mtp_layers; i++) {
        int r = c->compress_ratios[i];
        REQ(r >= 0 && r <= 1 << 16, "compress_ratios[%d] = %d out of range", i, r);
    }
    for (int i = c->n_layers; i < c->n_layers + c->n_mtp_layers; i++)
        REQ(c->compress_ratios[i] == 0, "compress_ratios[%d] (the MTP layer) must be 0", i);
    return 0;
#undef REQ
}

int dsv4_config_parse(const char *json, size_t len, dsv4_config *c, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!root) return errf(err, errlen, "config.json: not valid JSON: %s (line %d)", je.text, je.line);
    int rc = -1;
    if (!json_is_object(root)) { errf(err, errlen, "config.json: not a JSON object"); goto out; }
    if (refuse_other_releases(root, err, errlen)) goto out;
    json_t *mt = json_object_get(root, "model_type");
    if (mt && (!json_is_string(mt) || strcmp(json_string_value(mt), "deepseek_v4"))) {
        errf(err, errlen, "config.json: model_type is %s%s%s, expected \"deepseek_v4\"",
             json_is_string(mt) ? "\"" : "", json_is_string(mt) ? json_string_value(mt) : "not a string",
             json_is_string(mt) ? "\"" : "");
        goto out;
    }
    json_t *rs = json_object_get(root, "rope_scaling");
    if (rs && !json_is_null(rs) && !json_is_object(rs)) { errf(err, errlen, "config.json: \"rope_scaling\" must be an object"); goto out; }
    if (rs && json_is_null(rs)) rs = NULL;
    json_t *empty = json_object();
    if (!rs) rs = empty;
    int ok =
        !get_int(root, "vocab_size", 0, 1, &c->vocab_size, err, errlen) &&
        !get_int(root, "hidden_size", 0, 1, &c->dim, err, errlen) &&
        !get_int(root, "moe_intermediate_size", 0, 1, &c->moe_inter_dim, err, errlen) &&
        !get_int(root, "num_hidden_layers", 0, 1, &c->n_layers, err, errlen) &&
        !get_int(root, "num_hash_layers", 0, 0, &c->n_hash_layers, err, errlen) &&
        !get_int(root, "num_nextn_predict_layers", 0, 0, &c->n_mtp_layers, err, errlen) &&
        !get_int(root, "num_attention_heads", 0, 1, &c->n_heads, err, errlen) &&
        !get_int(root, "n_routed_experts", 0, 1, &c->n_routed_experts, err, errlen) &&
        !get_int(root, "n_shared_experts", 1, 0, &c->n_shared_experts, err, errlen) &&
        !get_int(root, "num_experts_per_tok", 0, 1, &c->n_activated_experts, err, errlen) &&
        !get_float(root, "routed_scaling_factor", 1.0f, 0, &c->route_scale, err, errlen) &&
        !get_float(root, "swiglu_limit", 0.0f, 0, &c->swiglu_limit, err, errlen) &&
        !get_int(root, "q_lora_rank", 0, 1, &c->q_lora_rank, err, errlen) &&
        !get_int(root, "head_dim", 512, 0, &c->head_dim, err, errlen) &&
        !get_int(root, "qk_rope_head_dim", 64, 0, &c->rope_head_dim, err, errlen) &&
        !get_float(root, "rms_norm_eps", 1e-6f, 0, &c->norm_eps, err, errlen) &&
        !get_int(root, "o_groups", 0, 1, &c->o_groups, err, errlen) &&
        !get_int(root, "o_lora_rank", 0, 1, &c->o_lora_rank, err, errlen) &&
        !get_int(root, "sliding_window", 128, 0, &c->window_size, err, errlen) &&
        !get_float(root, "compress_rope_theta", 160000.0f, 0, &c->compress_rope_theta, err, errlen) &&
        !get_float(root, "rope_theta", 10000.0f, 0, &c->rope_theta, err, errlen) &&
        !get_int(rs, "original_max_position_embeddings", 65536, 0, &c->original_seq_len, err, errlen) &&
        !get_float(rs, "factor", 1.0f, 0, &c->rope_factor, err, errlen) &&
        !get_float(rs, "beta_fast", 32.0f, 0, &c->beta_fast, err, errlen) &&
        !get_float(rs, "beta_slow", 1.0f, 0, &c->beta_slow, err, errlen) &&
        !get_int(root, "index_n_heads", 64, 0, &c->index_n_heads, err, errlen) &&
        !get_int(root, "index_head_dim", 128, 0, &c->index_head_dim, err, errlen) &&
        !get_int(root, "index_topk", 0, 1, &c->index_topk, err, errlen) &&
        !get_int(root, "hc_mult", 4, 0, &c->hc_mult, err, errlen) &&
        !get_int(root, "hc_sinkhorn_iters", 20, 0, &c->hc_sinkhorn_iters, err, errlen) &&
        !get_float(root, "hc_eps", 1e-6f, 0, &c->hc_eps, err, errlen) &&
        !get_int(root, "bos_token_id", 0, 0, &c->bos_token_id, err, errlen) &&
        !get_int(root, "eos_token_id", 1, 0, &c->eos_token_id, err, errlen);
    json_decref(empty);
    if (!ok) goto out;
    int mpe;
    if (get_int(root, "max_position_embeddings", 1048576, 0, &mpe, err, errlen)) goto out;
    c->max_position_embeddings = mpe;
    json_t *cr = json_object_get(root, "compress_ratios");
    int nl = c->n_layers + c->n_mtp_layers;
    if (c->n_layers <= 0 || nl > DSV4_MAX_LAYERS) { errf(err, errlen, "config.json: num_hidden_layers %d out of range", c->n_layers); goto out; }
    if (!json_is_array(cr)) { errf(err, errlen, "config.json: missing array \"compress_ratios\""); goto out; }
    if ((int)json_array_size(cr) != nl && (int)json_array_size(cr) != c->n_layers) {
        errf(err, errlen, "config.json: compress_ratios has %zu entries, expected %d (num_hidden_layers + num_nextn_predict_layers)",
             json_array_size(cr), nl);
        goto out;
    }
    for (int i = 0; i < nl; i++) {
        json_t *v = json_array_get(cr, (size_t)i);
        if (!v) { c->compress_ratios[i] = 0; continue; }   /* MTP entry absent: SWA */
        if (!json_is_integer(v)) { errf(err, errlen, "config.json: compress_ratios[%d] must be an integer", i); goto out; }
        c->compress_ratios[i] = (int)json_integer_value(v);
    }
    rc = check_geometry(c, err, errlen);
out:
    json_decref(root);
    return rc;
}
