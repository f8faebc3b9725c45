/*
 * gen.c - `dsv4 gen`: random-weight DeepSeek-V4 checkpoints in the exact
 * release format, at any geometry (see gen.h).
 *
 * How it works:
 *  1. A plan lists every tensor of the release inventory (docs/v4-architecture
 *     §2.2) in module order, with its dtype, shape and how to fill it.
 *  2. Tensors are grouped into shards by whole units (embed, one layer, the
 *     output tail, the MTP block), each shard up to opts->shard_bytes.
 *  3. Each shard file is laid out up front (8-aligned header; data ordered
 *     by element size, then name, so every tensor is naturally aligned),
 *     then worker threads fill chunks of rows and pwrite() them in place.
 *     Nothing bigger than a chunk is ever held in memory, so a 5 GB Flash
 *     slice needs ~20 MB of RSS.
 *
 * Determinism: row r of tensor T is drawn from a splitmix64 stream seeded
 * by (seed, T's base name, r), and quantisation scales are chosen from
 * (seed, T, block) without looking at the data.  So the output depends only
 * on the seed and geometry, never on threads or chunk sizes, and a weight
 * and its .scale tensor can be generated independently.
 *
 * Weight design (after the golden tiny checkpoint, tests/data/golden/README
 * §3), chosen so that activations stay O(1) and logits have a std of ~2-3
 * at any geometry:
 *  - linears: std k/sqrt(fan_in) (k = 1, or 0.6 for the output side
 *    projections wo_b and experts' w2);
 *  - every embedding row is c + 0.5 g (c a common direction); head and gate
 *    have c projected out (std 3/sqrt(D) and 2/sqrt(D)), so the shared
 *    direction does not dominate logits or routing;
 *  - indexer.weights_proj has a positive component along c, so per-head
 *    index weights are > 0;
 *  - a weak shared direction w (on the non-RoPE dims) in the indexer's q
 *    and k makes q.k mildly positive: indexer.wq_b gets + g_q w a^T, where
 *    a = wq_a c_hat is the direction qr takes for c-aligned inputs, and the
 *    indexer compressor's wkv gets + g_k w c_hat^T;
 *  - routed experts e % 4 == 1 are "hot" (w1/w3 x5, w2 x0.1) so the SwiGLU
 *    clamps fire;
 *  - hc bases: identity-heavy comb (diagonal +2) so Sinkhorn mixes are near
 *    the identity; norms 1 + 0.1 g.
 * Quantised weights are drawn directly in the stored format: an FP8 block
 * gets a power-of-two scale 2^(e0+d), d in {0,1} per block, and E4M3 codes
 * of a normal sample with std sigma/scale (|q| <= 448, never NaN); MXFP4
 * likewise with E2M1 codes per 32-wide block.
 */
#include "model/gen.h"
#include "format/safetensors.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

/* ------------------------------------------------------------------------ */
/* Presets                                                                   */
/* ------------------------------------------------------------------------ */

const char *const dsv4_gen_preset_names[] = {"tiny", "default", "flash", "pro", NULL};

static const int ratios_tiny[] = {0, 4, 16, 4};
static const int ratios_default[] = {0, 4, 128, 4, 16};

static void common_cfg(dsv4_config *c) {
    memset(c, 0, sizeof *c);
    c->vocab_size = 129280;
    c->n_mtp_layers = 1;
    c->n_shared_experts = 1;
    c->route_scale = 1.5f;
    c->swiglu_limit = 10.0f;
    c->head_dim = 512;
    c->rope_head_dim = 64;
    c->norm_eps = 1e-6f;
    c->window_size = 128;
    c->compress_rope_theta = 160000.0f;
    c->rope_theta = 10000.0f;
    c->original_seq_len = 65536;
    c->rope_factor = 16.0f;
    c->beta_fast = 32.0f;
    c->beta_slow = 1.0f;
    c->index_n_heads = 64;
    c->index_head_dim = 128;
    c->hc_mult = 4;
    c->hc_sinkhorn_iters = 20;
    c->hc_eps = 1e-6f;
    c->bos_token_id = 0;
    c->eos_token_id = 1;
    c->max_position_embeddings = 1048576;
}

/* compress_ratios[i] of main layer i for a preset with n layers. */
static int preset_ratio(const char *preset, int i, int n) {
    if (!strcmp(preset, "flash")) {
        if (n == 43) return i < 2 ? 0 : (i == 42 ? 4 : (i % 2 == 0 ? 4 : 128));  /* the release list */
        return i == 0 ? 0 : (i % 2 == 1 ? 4 : 128);                              /* [0,4,128,4,...] */
    }
    if (!strcmp(preset, "pro")) return i < 2 ? 128 : (i == 60 ? 4 : (i % 2 == 0 ? 4 : 128));
    const int *l = !strcmp(preset, "tiny") ? ratios_tiny : ratios_default;
    int len = !strcmp(preset, "tiny") ? 4 : 5;
    if (i < len) return l[i];
    return l[len - 2 + (i - len) % 2];   /* keep alternating the last two */
}

static void set_layers(dsv4_gen_opts *o, int n) {
    o->cfg.n_layers = n;
    for (int i = 0; i < n; i++) o->cfg.compress_ratios[i] = preset_ratio(o->preset, i, n);
    for (int i = n; i <= DSV4_MAX_LAYERS; i++) o->cfg.compress_ratios[i] = 0;   /* MTP: SWA */
}

int dsv4_gen_preset(const char *name, dsv4_gen_opts *o, char *err, size_t errlen) {
    memset(o, 0, sizeof *o);
    dsv4_config *c = &o->cfg;
    common_cfg(c);
    int layers;
    if (!strcmp(name, "tiny")) {
        /* the golden case-A geometry (tests/data/golden/tiny-a) */
        o->preset = "tiny";
        c->vocab_size = 1024; c->dim = 256; c->moe_inter_dim = 256; layers = 4; c->n_hash_layers = 1;
        c->n_heads = 4; c->n_routed_experts = 8; c->n_activated_experts = 2;
        c->q_lora_rank = 128; c->head_dim = 128; c->o_groups = 2; c->o_lora_rank = 128;
        c->window_size = 8; c->index_n_heads = 4; c->index_topk = 4;
        o->shard_bytes = 6ull << 20;   /* 2 shards, split as in tiny-a */
    } else if (!strcmp(name, "default")) {
        /* small and fast, but the real vocabulary (so the real tokenizer
         * works), every layer type and the release's head_dim/window */
        o->preset = "default";
        c->dim = 256; c->moe_inter_dim = 256; layers = 5; c->n_hash_layers = 2;
        c->n_heads = 4; c->n_routed_experts = 16; c->n_activated_experts = 4;
        c->q_lora_rank = 128; c->o_groups = 2; c->o_lora_rank = 128;
        c->index_n_heads = 4; c->index_topk = 32;
        o->shard_bytes = 100ull << 20;
    } else if (!strcmp(name, "flash")) {
        o->preset = "flash";
        c->dim = 4096; c->moe_inter_dim = 2048; layers = 43; c->n_hash_layers = 3;
        c->n_heads = 64; c->n_routed_experts = 256; c->n_activated_experts = 6;
        c->q_lora_rank = 1024; c->o_groups = 8; c->o_lora_rank = 1024; c->index_topk = 512;
        o->shard_bytes = 4000ull << 20;
    } else if (!strcmp(name, "pro")) {
        o->preset = "pro";
        c->dim = 7168; c->moe_inter_dim = 3072; layers = 61; c->n_hash_layers = 3;
        c->n_heads = 128; c->n_routed_experts = 384; c->n_activated_experts = 6; c->route_scale = 2.5f;
        c->q_lora_rank = 1536; c->o_groups = 16; c->o_lora_rank = 1024; c->index_topk = 1024;
        o->shard_bytes = 4000ull << 20;
    } else {
        return errf(err, errlen, "unknown preset \"%s\" (tiny, default, flash, pro)", name);
    }
    o->preset_hash_layers = c->n_hash_layers;
    set_layers(o, layers);
    o->threads = 2;
    return 0;
}

int dsv4_gen_override(dsv4_gen_opts *o, int layers, int experts, int topk, int vocab, int dim,
                      char *err, size_t errlen) {
    dsv4_config *c = &o->cfg;
    if (layers > 0) {
        if (layers + c->n_mtp_layers > DSV4_MAX_LAYERS)
            return errf(err, errlen, "--layers %d: at most %d", layers, DSV4_MAX_LAYERS - c->n_mtp_layers);
        set_layers(o, layers);
        c->n_hash_layers = o->preset_hash_layers < layers ? o->preset_hash_layers : layers;
    }
    if (experts > 0) c->n_routed_experts = experts;
    if (topk > 0) c->n_activated_experts = topk;
    if (vocab > 0) c->vocab_size = vocab;
    if (dim > 0) c->dim = dim;
    if (c->n_activated_experts > c->n_routed_experts)
        return errf(err, errlen, "top-k %d is larger than the expert count %d (use --topk)",
                    c->n_activated_experts, c->n_routed_experts);
    /* validate exactly as a loader would */
    char *js = dsv4_gen_config_json(o);
    dsv4_config chk;
    int rc = dsv4_config_parse(js, strlen(js), &chk, err, errlen);
    free(js);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* config.json                                                               */
/* ------------------------------------------------------------------------ */

/* The double with the shortest decimal form that rounds to f, so that
 * 1e-6f is written as 1e-06 (as in the release), not 9.99999997e-07. */
static double fdbl(float f) {
    char b[32];
    for (int prec = 1; prec <= 9; prec++) {
        snprintf(b, sizeof b, "%.*g", prec, (double)f);
        if ((float)strtod(b, NULL) == f) return strtod(b, NULL);
    }
    return (double)f;
}

/* Integral values are written as JSON integers (as the release does for
 * rope_theta & co), others as reals. */
static json_t *num(float f) {
    double v = fdbl(f);
    if (v == floor(v) && fabs(v) < 1e15) return json_integer((json_int_t)v);
    return json_real(v);
}

char *dsv4_gen_config_json(const dsv4_gen_opts *o) {
    const dsv4_config *c = &o->cfg;
    json_t *j = json_object();
#define SET(k, v) json_object_set_new(j, k, v)
    SET("architectures", json_pack("[s]", "DeepseekV4ForCausalLM"));
    SET("attention_bias", json_false());
    SET("attention_dropout", json_real(0.0));
    SET("bos_token_id", json_integer(c->bos_token_id));
    SET("eos_token_id", json_integer(c->eos_token_id));
    if (!o->fp8_experts) SET("expert_dtype", json_string("fp4"));   /* -Base: key removed */
    SET("hc_eps", json_real(fdbl(c->hc_eps)));
    SET("hc_mult", json_integer(c->hc_mult));
    SET("hc_sinkhorn_iters", json_integer(c->hc_sinkhorn_iters));
    SET("head_dim", json_integer(c->head_dim));
    SET("hidden_act", json_string("silu"));
    SET("hidden_size", json_integer(c->dim));
    SET("index_head_dim", json_integer(c->index_head_dim));
    SET("index_n_heads", json_integer(c->index_n_heads));
    SET("index_topk", json_integer(c->index_topk));
    SET("initializer_range", json_real(0.02));
    SET("max_position_embeddings", json_integer(c->max_position_embeddings));
    SET("model_type", json_string("deepseek_v4"));
    SET("moe_intermediate_size", json_integer(c->moe_inter_dim));
    SET("n_routed_experts", json_integer(c->n_routed_experts));
    SET("n_shared_experts", json_integer(c->n_shared_experts));
    SET("norm_topk_prob", json_true());
    SET("num_attention_heads", json_integer(c->n_heads));
    SET("num_experts_per_tok", json_integer(c->n_activated_experts));
    SET("num_hidden_layers", json_integer(c->n_layers));
    SET("num_hash_layers", json_integer(c->n_hash_layers));
    SET("num_key_value_heads", json_integer(1));
    SET("num_nextn_predict_layers", json_integer(c->n_mtp_layers));
    SET("o_groups", json_integer(c->o_groups));
    SET("o_lora_rank", json_integer(c->o_lora_rank));
    SET("q_lora_rank", json_integer(c->q_lora_rank));
    SET("qk_rope_head_dim", json_integer(c->rope_head_dim));
    SET("quantization_config", json_pack("{s:s,s:s,s:s,s:s,s:[i,i]}", "activation_scheme", "dynamic", "fmt", "e4m3",
                                         "quant_method", "fp8", "scale_fmt", "ue8m0", "weight_block_size", 128, 128));
    SET("rms_norm_eps", json_real(fdbl(c->norm_eps)));
    json_t *rs = json_object();
    json_object_set_new(rs, "beta_fast", num(c->beta_fast));
    json_object_set_new(rs, "beta_slow", num(c->beta_slow));
    json_object_set_new(rs, "factor", num(c->rope_factor));
    json_object_set_new(rs, "original_max_position_embeddings", json_integer(c->original_seq_len));
    json_object_set_new(rs, "type", json_string("yarn"));
    SET("rope_scaling", rs);
    SET("rope_theta", num(c->rope_theta));
    SET("routed_scaling_factor", json_real(fdbl(c->route_scale)));
    SET("scoring_func", json_string("sqrtsoftplus"));
    SET("sliding_window", json_integer(c->window_size));
    SET("swiglu_limit", json_real(fdbl(c->swiglu_limit)));
    SET("tie_word_embeddings", json_false());
    SET("topk_method", json_string("noaux_tc"));
    SET("torch_dtype", json_string("bfloat16"));
    SET("transformers_version", json_string("4.57.1"));
    SET("use_cache", json_true());
    SET("vocab_size", json_integer(c->vocab_size));
    SET("compress_rope_theta", num(c->compress_rope_theta));
    json_t *cr = json_array();
    for (int i = 0; i < c->n_layers + c->n_mtp_layers; i++) json_array_append_new(cr, json_integer(c->compress_ratios[i]));
    SET("compress_ratios", cr);
#undef SET
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(9));
    json_decref(j);
    size_t n = strlen(s);
    char *out = xmalloc(n + 2);
    memcpy(out, s, n);
    out[n] = '\n';
    out[n + 1] = 0;
    free(s);
    return out;
}

/* ------------------------------------------------------------------------ */
/* Random numbers and number formats                                         */
/* ------------------------------------------------------------------------ */

static inline uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}
static inline uint64_t rng_next(uint64_t *s) { return mix64(*s += 0x9e3779b97f4a7c15ull); }
static uint64_t hash_str(const char *s) {
    uint64_t h = 0xcbf29ce484222325ull;
    for (; *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
    return h;
}
static inline uint64_t row_seed(uint64_t key, int64_t row) { return mix64(key ^ mix64((uint64_t)row + 0x5851f42d4c957f2dull)); }
/* Per-block scale choice d in {0, 1}: a weight and its .scale agree on it. */
static inline int block_bit(uint64_t key, int64_t a, int64_t b) {
    return (int)(mix64(key ^ mix64(((uint64_t)a << 24) ^ (uint64_t)b ^ 0x2545f4914f6cdd1dull)) >> 63);
}

/* Inverse normal CDF (Acklam's rational approximation, |rel err| < 1.2e-9). */
static double norm_quantile(double p) {
    static const double a[] = {-3.969683028665376e+01, 2.209460984245205e+02, -2.759285104469687e+02,
                               1.383577518672690e+02, -3.066479806614716e+01, 2.506628277459239e+00};
    static const double b[] = {-5.447609879822406e+01, 1.615858368580409e+02, -1.556989798598866e+02,
                               6.680131188771972e+01, -1.328068155288572e+01};
    static const double c[] = {-7.784894002430293e-03, -3.223964580411365e-01, -2.400758277161838e+00,
                               -2.549732539343734e+00, 4.374664141464968e+00, 2.938163982698783e+00};
    static const double d[] = {7.784695709041462e-03, 3.224671290700398e-01, 2.445134137142996e+00,
                               3.754408661907416e+00};
    const double plow = 0.02425;
    if (p < plow || p > 1 - plow) {
        double q = sqrt(-2 * log(p < plow ? p : 1 - p));
        double x = (((((c[0] * q + c[1]) * q + c[2]) * q + c[3]) * q + c[4]) * q + c[5]) /
                   ((((d[0] * q + d[1]) * q + d[2]) * q + d[3]) * q + 1);
        return p < plow ? x : -x;
    }
    double q = p - 0.5, r = q * q;
    return (((((a[0] * r + a[1]) * r + a[2]) * r + a[3]) * r + a[4]) * r + a[5]) * q /
           (((((b[0] * r + b[1]) * r + b[2]) * r + b[3]) * r + b[4]) * r + 1);
}

/* Normal samples by table: 16 random bits pick one of 65536 equiprobable
 * quantiles (8 bits / 256 quantiles for FP4 codes, whose 15 values need no
 * finer grid). */
static float Q16[65536], Q8[256];
static pthread_once_t tables_once = PTHREAD_ONCE_INIT;
static void tables_init(void) {
    numfmt_init();
    for (int i = 0; i < 65536; i++) Q16[i] = (float)norm_quantile((i + 0.5) / 65536.0);
    for (int i = 0; i < 256; i++) Q8[i] = (float)norm_quantile((i + 0.5) / 256.0);
}

/* f32 -> E4M3FN byte, round to nearest even, saturating at +-448 (so never
 * the NaN codes 0x7f/0xff). */
static uint8_t e4m3_encode(float x) {
    float r = e4m3_round(x);
    uint8_t s = signbit(r) ? 0x80 : 0;
    float a = fabsf(r);
    if (a < 0x1p-6f) return s | (uint8_t)(a * 512.0f);        /* subnormal: m * 2^-9 */
    int e;
    float f = frexpf(a, &e);                                    /* a = 2f * 2^(e-1) */
    int m = (int)((2.0f * f - 1.0f) * 8.0f);
    return (uint8_t)(s | ((e - 1 + 7) << 3) | m);
}
static uint8_t e2m1_encode(float x) {
    float r = e2m1_round(fminf(fmaxf(x, -6.0f), 6.0f));
    for (int i = 0; i < 8; i++)
        if (e2m1_table[i] == fabsf(r)) return (uint8_t)(i | (signbit(r) && r != 0 ? 8 : 0));
    return 0;
}
int dsv4_gen_e4m3_encode(float x) { pthread_once(&tables_once, tables_init); return e4m3_encode(x); }

/* ------------------------------------------------------------------------ */
/* The plan                                                                  */
/* ------------------------------------------------------------------------ */

typedef enum {
    G_BF16,       /* mean + sigma*N */
    G_F32,        /* mean + sigma*N */
    G_F32_UNIF,   /* U(mean, mean+sigma) */
    G_HC_BASE,    /* sigma*N, +2 on the comb diagonal */
    G_EMBED,      /* c + sigma*N */
    G_PROJ_OUT_C, /* sigma*N with the c direction removed (head, gate) */
    G_PLUS_C,     /* sigma*N + extra*c_hat (indexer weights_proj) */
    G_FP8, G_FP8_SCALE,
    G_FP4, G_FP4_SCALE,
    G_TID2EID
} gkind;

typedef struct {
    char name[96];
    st_dtype dtype;
    int ndim;
    int64_t shape[2];
    gkind kind;
    float mean, sigma, extra;
    int e0;                 /* FP8/FP4: base scale exponent */
    int tab;                /* FP8/FP4: index of the code table */
    uint64_t key;           /* rng key (of the base name: weight and scale share it) */
    int unit;               /* sharding unit */
    int shared;             /* indexer shared direction: 1 = q side (wq_b), 2 = k side (compressor wkv) */
    int aux;                /* q side: spec index of the layer's wq_a */
    int shard;
    uint64_t nbytes, offset;
} gspec;

typedef struct {
    float sigma_q;          /* code-domain std for d = 0 (d = 1 halves it) */
    int fp4;
    uint8_t *codes;         /* [2][65536] E4M3 bytes, or [2][256] E2M1 nibbles */
} gtab;

typedef struct {
    const dsv4_gen_opts *o;
    gspec *t;
    int n, cap;
    gtab *tabs;
    int ntabs;
    int unit;
    float *c, *u;           /* common embedding direction and its unit vector */
    float *w_idx;           /* indexer shared direction [index_head_dim], 0 on RoPE dims */
    float **a_hat;          /* per spec: unit wq_a.c_hat of the layer (q-side specs only) */
} gplan;

static uint64_t base_key(const gplan *p, const char *name) {
    char b[96];
    snprintf(b, sizeof b, "%s", name);
    size_t l = strlen(b);
    if (l > 7 && !strcmp(b + l - 7, ".weight")) b[l - 7] = 0;
    return mix64(hash_str(b) ^ mix64(p->o->seed ^ 0x6a09e667f3bcc908ull));
}

static gspec *add(gplan *p, const char *name, st_dtype dt, int64_t d0, int64_t d1, gkind k, float mean, float sigma) {
    if (p->n == p->cap) {
        p->cap = p->cap ? 2 * p->cap : 256;
        p->t = xrealloc(p->t, (size_t)p->cap * sizeof(gspec));
    }
    gspec *t = &p->t[p->n++];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->dtype = dt;
    t->ndim = d1 > 0 ? 2 : 1;
    t->shape[0] = d0;
    t->shape[1] = d1;
    t->kind = k;
    t->mean = mean;
    t->sigma = sigma;
    t->key = base_key(p, name);
    t->unit = p->unit;
    t->nbytes = (uint64_t)d0 * (uint64_t)(d1 > 0 ? d1 : 1) * st_dtype_size(dt);
    return t;
}

static int find_tab(gplan *p, float sigma_q, int fp4) {
    for (int i = 0; i < p->ntabs; i++)
        if (p->tabs[i].sigma_q == sigma_q && p->tabs[i].fp4 == fp4) return i;
    p->tabs = xrealloc(p->tabs, (size_t)(p->ntabs + 1) * sizeof(gtab));
    gtab *g = &p->tabs[p->ntabs];
    g->sigma_q = sigma_q;
    g->fp4 = fp4;
    int n = fp4 ? 256 : 65536;
    g->codes = xmalloc(2 * (size_t)n);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < n; i++) {
            float q = (fp4 ? Q8[i] : Q16[i]) * sigma_q / (float)(1 << d);
            g->codes[d * n + i] = fp4 ? e2m1_encode(q) : e4m3_encode(q);
        }
    return p->ntabs++;
}

static int clamp_exp(int e) { return e < -126 ? -126 : (e > 126 ? 126 : e); }

/* FP8 linear [out, in] with its [ceil(out/128), ceil(in/128)] UE8M0 scale.
 * Block scale 2^(e0+d): e0 puts 4.5 sigma just under 448. */
static void add_fp8(gplan *p, const char *name, int64_t out, int64_t in, float sigma) {
    char n[160];
    int e0 = clamp_exp((int)ceil(log2(sigma * 4.5 / 448.0)));
    int tab = find_tab(p, sigma / ldexpf(1.0f, e0), 0);
    snprintf(n, sizeof n, "%s.weight", name);
    gspec *w = add(p, n, ST_F8_E4M3, out, in, G_FP8, 0, sigma);
    w->e0 = e0, w->tab = tab;
    uint64_t key = w->key;      /* add() may move the array: w is stale after it */
    snprintf(n, sizeof n, "%s.scale", name);
    gspec *s = add(p, n, ST_F8_E8M0, (out + 127) / 128, (in + 127) / 128, G_FP8_SCALE, 0, sigma);
    s->e0 = e0, s->key = key;
}

/* MXFP4 routed-expert weight: logical [out, in] stored as I8 [out, in/2]
 * (low nibble = even column) with a [out, in/32] UE8M0 scale. */
static void add_fp4(gplan *p, const char *name, int64_t out, int64_t in, float sigma) {
    char n[160];
    int e0 = clamp_exp((int)ceil(log2(sigma * 2.5 / 6.0)));
    int tab = find_tab(p, sigma / ldexpf(1.0f, e0), 1);
    snprintf(n, sizeof n, "%s.weight", name);
    gspec *w = add(p, n, ST_I8, out, in / 2, G_FP4, 0, sigma);
    w->e0 = e0, w->tab = tab;
    uint64_t key = w->key;      /* add() may move the array: w is stale after it */
    snprintf(n, sizeof n, "%s.scale", name);
    gspec *s = add(p, n, ST_F8_E8M0, out, in / 32, G_FP4_SCALE, 0, sigma);
    s->e0 = e0, s->key = key;
}

#define NM(...) (snprintf(nm, sizeof nm, __VA_ARGS__), nm)

static void add_norm(gplan *p, const char *name, int64_t n) { add(p, name, ST_BF16, n, 0, G_BF16, 1.0f, 0.1f); }

static void add_hc(gplan *p, const char *pre, const char *which) {
    const dsv4_config *c = &p->o->cfg;
    int hc = c->hc_mult, mix = (2 + hc) * hc;
    char nm[128];
    add(p, NM("%shc_%s_fn", pre, which), ST_F32, mix, (int64_t)hc * c->dim, G_F32, 0, 1.0f / sqrtf((float)hc * c->dim));
    add(p, NM("%shc_%s_base", pre, which), ST_F32, mix, 0, G_HC_BASE, 0, 0.5f);
    add(p, NM("%shc_%s_scale", pre, which), ST_F32, 3, 0, G_F32_UNIF, 0.3f, 0.4f);
}

static void add_hc_head(gplan *p, const char *pre) {
    const dsv4_config *c = &p->o->cfg;
    char nm[128];
    int hc = c->hc_mult;
    add(p, NM("%shc_head_fn", pre), ST_F32, hc, (int64_t)hc * c->dim, G_F32, 0, 1.0f / sqrtf((float)hc * c->dim));
    add(p, NM("%shc_head_base", pre), ST_F32, hc, 0, G_F32, 0, 0.2f);
    add(p, NM("%shc_head_scale", pre), ST_F32, 1, 0, G_F32_UNIF, 0.3f, 0.4f);
}

/* One transformer block (a main layer or the MTP layer), names and order as
 * in the release index. */
static void add_block(gplan *p, const char *pre, int ratio, int hash) {
    const dsv4_config *c = &p->o->cfg;
    char nm[128];
    int64_t D = c->dim, H = c->n_heads, hd = c->head_dim, qr = c->q_lora_rank, G = c->o_groups, R = c->o_lora_rank;
    int64_t I = c->moe_inter_dim, E = c->n_routed_experts, IH = c->index_n_heads, ID = c->index_head_dim;
    float sD = 1.0f / sqrtf((float)D);
    add_hc(p, pre, "attn");
    add_hc(p, pre, "ffn");
    add_norm(p, NM("%sattn_norm.weight", pre), D);
    add_norm(p, NM("%sffn_norm.weight", pre), D);
    add(p, NM("%sattn.attn_sink", pre), ST_F32, H, 0, G_F32, 0, 1.0f);
    add_fp8(p, NM("%sattn.wq_a", pre), qr, D, sD);
    add_norm(p, NM("%sattn.q_norm.weight", pre), qr);
    add_fp8(p, NM("%sattn.wq_b", pre), H * hd, qr, 1.0f / sqrtf((float)qr));
    add_fp8(p, NM("%sattn.wkv", pre), hd, D, sD);
    add_norm(p, NM("%sattn.kv_norm.weight", pre), hd);
    add_fp8(p, NM("%sattn.wo_a", pre), G * R, H * hd / G, 1.0f / sqrtf((float)(H * hd / G)));
    add_fp8(p, NM("%sattn.wo_b", pre), D, G * R, 0.6f / sqrtf((float)(G * R)));
    if (ratio) {
        int64_t coff = ratio == 4 ? 2 : 1;
        add(p, NM("%sattn.compressor.wkv.weight", pre), ST_BF16, coff * hd, D, G_BF16, 0, sD);
        add(p, NM("%sattn.compressor.wgate.weight", pre), ST_BF16, coff * hd, D, G_BF16, 0, sD);
        add(p, NM("%sattn.compressor.ape", pre), ST_F32, ratio, coff * hd, G_F32, 0, 0.5f);
        add_norm(p, NM("%sattn.compressor.norm.weight", pre), hd);
    }
    if (ratio == 4) {
        int wqa = -1;
        for (int i = p->n - 1; i >= 0 && wqa < 0; i--)
            if (!strcmp(p->t[i].name, NM("%sattn.wq_a.weight", pre))) wqa = i;
        add_fp8(p, NM("%sattn.indexer.wq_b", pre), IH * ID, qr, 1.0f / sqrtf((float)qr));
        p->t[p->n - 2].shared = 1, p->t[p->n - 2].aux = wqa;
        p->t[p->n - 2].extra = 0.7f / sqrtf((float)qr);
        gspec *w = add(p, NM("%sattn.indexer.weights_proj.weight", pre), ST_BF16, IH, D, G_PLUS_C, 0, 0.4f * sD);
        w->extra = 3.5f * sD;
        gspec *k = add(p, NM("%sattn.indexer.compressor.wkv.weight", pre), ST_BF16, 2 * ID, D, G_BF16, 0, sD);
        k->shared = 2, k->extra = 0.7f * sD;
        add(p, NM("%sattn.indexer.compressor.wgate.weight", pre), ST_BF16, 2 * ID, D, G_BF16, 0, sD);
        add(p, NM("%sattn.indexer.compressor.ape", pre), ST_F32, 4, 2 * ID, G_F32, 0, 0.5f);
        add_norm(p, NM("%sattn.indexer.compressor.norm.weight", pre), ID);
    }
    add(p, NM("%sffn.gate.weight", pre), ST_BF16, E, D, G_PROJ_OUT_C, 0, 2.0f * sD);
    if (hash) add(p, NM("%sffn.gate.tid2eid", pre), ST_I64, c->vocab_size, c->n_activated_experts, G_TID2EID, 0, 0);
    else add(p, NM("%sffn.gate.bias", pre), ST_F32, E, 0, G_F32, -0.1f, 0.1f);
    float s2 = 0.6f / sqrtf((float)I);
    for (int64_t e = 0; e < E; e++) {
        float hot1 = e % 4 == 1 ? 5.0f : 1.0f, hot2 = e % 4 == 1 ? 0.1f : 1.0f;
        char en[128];
        for (int k = 0; k < 3; k++) {
            int wi = k == 0 ? 1 : (k == 1 ? 3 : 2);
            snprintf(en, sizeof en, "%sffn.experts.%lld.w%d", pre, (long long)e, wi);
            int64_t out = wi == 2 ? D : I, in = wi == 2 ? I : D;
            float sg = wi == 2 ? s2 * hot2 : sD * hot1;
            if (p->o->fp8_experts) add_fp8(p, en, out, in, sg);
            else add_fp4(p, en, out, in, sg);
        }
    }
    add_fp8(p, NM("%sffn.shared_experts.w1", pre), I, D, sD);
    add_fp8(p, NM("%sffn.shared_experts.w3", pre), I, D, sD);
    add_fp8(p, NM("%sffn.shared_experts.w2", pre), D, I, s2);
}

static void plan_free(gplan *p) {
    for (int i = 0; i < p->ntabs; i++) free(p->tabs[i].codes);
    free(p->tabs);
    free(p->t);
    free(p->c);
    free(p->u);
    free(p->w_idx);
    if (p->a_hat)
        for (int i = 0; i < p->n; i++) free(p->a_hat[i]);
    free(p->a_hat);
}

static void plan_build(gplan *p, const dsv4_gen_opts *o) {
    pthread_once(&tables_once, tables_init);
    memset(p, 0, sizeof *p);
    p->o = o;
    const dsv4_config *c = &o->cfg;
    char nm[128];
    /* the common embedding direction c ~ N(0, I), and c / |c| */
    p->c = xmalloc((size_t)c->dim * sizeof(float));
    p->u = xmalloc((size_t)c->dim * sizeof(float));
    uint64_t s = row_seed(base_key(p, "embed.common_direction"), 0), x = 0;
    double nn = 0;
    for (int j = 0; j < c->dim; j++) {
        if (j % 4 == 0) x = rng_next(&s);
        p->c[j] = Q16[(x >> (16 * (j % 4))) & 0xffff];
        nn += (double)p->c[j] * p->c[j];
    }
    for (int j = 0; j < c->dim; j++) p->u[j] = (float)(p->c[j] / sqrt(nn));
    p->w_idx = xcalloc((size_t)c->index_head_dim, sizeof(float));
    s = row_seed(base_key(p, "indexer.shared_direction"), 0);
    for (int j = 0; j < c->index_head_dim - c->rope_head_dim; j++) {
        if (j % 4 == 0) x = rng_next(&s);
        p->w_idx[j] = Q16[(x >> (16 * (j % 4))) & 0xffff];
    }

    add(p, "embed.weight", ST_BF16, c->vocab_size, c->dim, G_EMBED, 0, 0.5f);
    for (int l = 0; l < c->n_layers; l++) {
        p->unit++;
        add_block(p, NM("layers.%d.", l), c->compress_ratios[l], l < c->n_hash_layers);
    }
    p->unit++;
    add_norm(p, "norm.weight", c->dim);
    add(p, "head.weight", ST_BF16, c->vocab_size, c->dim, G_PROJ_OUT_C, 0, 3.0f / sqrtf((float)c->dim));
    add_hc_head(p, "");
    for (int m = 0; m < c->n_mtp_layers; m++) {
        p->unit++;
        char pre[32];
        snprintf(pre, sizeof pre, "mtp.%d.", m);
        add_block(p, pre, c->compress_ratios[c->n_layers + m], 0);
        float sD = 1.0f / sqrtf((float)c->dim);
        add_fp8(p, NM("%se_proj", pre), c->dim, c->dim, sD);
        add_fp8(p, NM("%sh_proj", pre), c->dim, c->dim, sD);
        add_norm(p, NM("%senorm.weight", pre), c->dim);
        add_norm(p, NM("%shnorm.weight", pre), c->dim);
        add_norm(p, NM("%snorm.weight", pre), c->dim);
        add_hc_head(p, pre);
    }
}

/* Whole units per shard while they fit; a unit larger than the target is
 * split between tensors. */
static int plan_shard(gplan *p, uint64_t target) {
    if (!target) target = 1;
    int shard = 0;
    uint64_t used = 0;
    for (int i = 0; i < p->n;) {
        int j = i;
        uint64_t ub = 0;
        while (j < p->n && p->t[j].unit == p->t[i].unit) ub += p->t[j++].nbytes;
        if (used && used + ub > target) shard++, used = 0;
        for (int k = i; k < j; k++) {
            if (used && used + p->t[k].nbytes > target) shard++, used = 0;
            p->t[k].shard = shard;
            used += p->t[k].nbytes;
        }
        i = j;
    }
    return shard + 1;
}

uint64_t dsv4_gen_total_bytes(const dsv4_gen_opts *o, int *n_tensors) {
    gplan p;
    plan_build(&p, o);
    uint64_t t = 0;
    for (int i = 0; i < p.n; i++) t += p.t[i].nbytes;
    if (n_tensors) *n_tensors = p.n;
    plan_free(&p);
    return t;
}

/* ------------------------------------------------------------------------ */
/* Filling rows                                                              */
/* ------------------------------------------------------------------------ */

static int64_t spec_rows(const gspec *t) { return t->ndim == 2 ? t->shape[0] : 1; }
static uint64_t spec_row_bytes(const gspec *t) { return t->nbytes / (uint64_t)spec_rows(t); }

/* Normal draws for one row: 4 per 64-bit draw. */
static void normal_row(uint64_t *s, float *out, int64_t n, float mean, float sigma) {
    uint64_t x = 0;
    for (int64_t j = 0; j < n; j++) {
        if ((j & 3) == 0) x = rng_next(s);
        out[j] = mean + sigma * Q16[(x >> (16 * (j & 3))) & 0xffff];
    }
}

static void fill_row(const gplan *p, const gspec *t, int64_t r, uint8_t *dst, float *tmp) {
    uint64_t s = row_seed(t->key, r);
    int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
    switch (t->kind) {
    case G_BF16: case G_EMBED: case G_PLUS_C: {
        /* one fused pass: mean + sigma*N + k*vec (k*vec = c, extra*c_hat,
         * the indexer's shared direction, or nothing) */
        const float *vec = t->kind == G_EMBED ? p->c : p->u;
        float k = t->kind == G_EMBED ? 1.0f : (t->kind == G_PLUS_C ? t->extra : 0.0f);
        if (t->shared == 2) k = t->extra * p->w_idx[r % p->o->cfg.index_head_dim];
        uint16_t *o = (uint16_t *)dst;
        uint64_t x = 0;
        for (int64_t j = 0; j < cols; j++) {
            if ((j & 3) == 0) x = rng_next(&s);
            float v = t->mean + t->sigma * Q16[(x >> (16 * (j & 3))) & 0xffff];
            o[j] = f32_to_bf16(k != 0 ? v + k * vec[j] : v);   /* vec has dim entries: rows with k != 0 are [.., dim] */
        }
        break;
    }
    case G_PROJ_OUT_C: {   /* draw + dot with c_hat, then remove that component */
        uint64_t x = 0;
        double dot = 0;
        for (int64_t j = 0; j < cols; j++) {
            if ((j & 3) == 0) x = rng_next(&s);
            tmp[j] = t->mean + t->sigma * Q16[(x >> (16 * (j & 3))) & 0xffff];
            dot += (double)tmp[j] * p->u[j];
        }
        uint16_t *o = (uint16_t *)dst;
        for (int64_t j = 0; j < cols; j++) o[j] = f32_to_bf16(tmp[j] - (float)dot * p->u[j]);
        break;
    }
    case G_F32:
        normal_row(&s, (float *)dst, cols, t->mean, t->sigma);
        break;
    case G_F32_UNIF: {
        float *o = (float *)dst;
        for (int64_t j = 0; j < cols; j++) o[j] = t->mean + t->sigma * (float)(rng_next(&s) >> 40) * 0x1p-24f;
        break;
    }
    case G_HC_BASE: {
        float *o = (float *)dst;
        int hc = p->o->cfg.hc_mult;
        normal_row(&s, o, cols, 0, t->sigma);
        for (int i = 0; i < hc; i++) o[2 * hc + i * hc + i] += 2.0f;
        break;
    }
    case G_FP8: {
        const uint8_t *codes = p->tabs[t->tab].codes;
        uint64_t x = 0;
        float wr = t->shared == 1 ? t->extra * p->w_idx[r % p->o->cfg.index_head_dim] : 0;
        if (wr != 0) {   /* + wr * a_hat: encode each value (slow path, indexer q rows only) */
            const float *a = p->a_hat[t - p->t];
            for (int64_t b0 = 0; b0 < cols; b0 += 128) {
                float sc = ldexpf(1.0f, t->e0 + block_bit(t->key, r / 128, b0 / 128));
                int64_t b1 = b0 + 128 < cols ? b0 + 128 : cols;
                for (int64_t j = b0; j < b1; j++) {
                    if ((j & 3) == 0) x = rng_next(&s);
                    dst[j] = e4m3_encode((t->sigma * Q16[(x >> (16 * (j & 3))) & 0xffff] + wr * a[j]) / sc);
                }
            }
            break;
        }
        for (int64_t b0 = 0; b0 < cols; b0 += 128) {
            const uint8_t *tab = codes + 65536 * block_bit(t->key, r / 128, b0 / 128);
            int64_t b1 = b0 + 128 < cols ? b0 + 128 : cols;
            for (int64_t j = b0; j < b1; j++) {
                if ((j & 3) == 0) x = rng_next(&s);
                dst[j] = tab[(x >> (16 * (j & 3))) & 0xffff];
            }
        }
        break;
    }
    case G_FP4: {      /* cols = stored bytes = logical/2; 16 bytes per 32-wide block */
        const uint8_t *codes = p->tabs[t->tab].codes;
        uint64_t x = 0;
        for (int64_t j = 0; j < cols; j++) {
            if ((j & 15) == 0) codes = p->tabs[t->tab].codes + 256 * block_bit(t->key, r, j / 16);
            if ((j & 3) == 0) x = rng_next(&s);
            unsigned v = (unsigned)(x >> (16 * (j & 3)));
            dst[j] = (uint8_t)(codes[v & 0xff] | codes[(v >> 8) & 0xff] << 4);
        }
        break;
    }
    case G_FP8_SCALE: case G_FP4_SCALE:
        for (int64_t j = 0; j < cols; j++) dst[j] = (uint8_t)(127 + t->e0 + block_bit(t->key, r, j));
        break;
    case G_TID2EID: {  /* k distinct expert ids per token */
        int k = (int)cols, E = p->o->cfg.n_routed_experts;
        int64_t *o = (int64_t *)dst;    /* k <= 64 <= E is checked up front */
        for (int i = 0; i < k; i++) {
            int64_t e;
            int dup;
            do {
                e = (int64_t)((rng_next(&s) >> 32) % (uint64_t)E);
                dup = 0;
                for (int q = 0; q < i; q++) dup |= o[q] == e;
            } while (dup);
            o[i] = e;
        }
        break;
    }
    }
}

/* ------------------------------------------------------------------------ */
/* Writing shards                                                            */
/* ------------------------------------------------------------------------ */

#define CHUNK_BYTES (4u << 20)

typedef struct { int spec; int64_t r0, r1; } gitem;

typedef struct {
    const gplan *p;
    const int *order;       /* spec indices of this shard, name-sorted */
    gitem *items;
    int n_items;
    atomic_int next;
    int fd;
    uint64_t data_start;
    atomic_int failed;
    int err_no;
    atomic_uint_fast64_t *done;
    uint64_t total;
    size_t buf_bytes, tmp_floats;
} gjob;

static void job_worker(void *arg, int tid, int nth) {
    (void)nth;
    gjob *j = arg;
    uint8_t *buf = malloc(j->buf_bytes);
    float *tmp = malloc(j->tmp_floats * sizeof(float));
    if (!buf || !tmp) { atomic_store(&j->failed, 1); j->err_no = ENOMEM; }
    for (;;) {
        if (atomic_load(&j->failed)) break;
        int i = atomic_fetch_add(&j->next, 1);
        if (i >= j->n_items) break;
        const gitem *it = &j->items[i];
        const gspec *t = &j->p->t[it->spec];
        uint64_t rb = spec_row_bytes(t);
        for (int64_t r = it->r0; r < it->r1; r++) fill_row(j->p, t, r, buf + (uint64_t)(r - it->r0) * rb, tmp);
        uint64_t len = (uint64_t)(it->r1 - it->r0) * rb, off = j->data_start + t->offset + (uint64_t)it->r0 * rb;
        for (uint64_t w = 0; w < len;) {
            ssize_t k = pwrite(j->fd, buf + w, len - w, (off_t)(off + w));
            if (k <= 0) {
                if (k < 0 && errno == EINTR) continue;
                j->err_no = k < 0 ? errno : ENOSPC;
                atomic_store(&j->failed, 1);
                break;
            }
            w += (uint64_t)k;
        }
        uint64_t d = atomic_fetch_add(j->done, len) + len;
        if (tid == 0 && j->p->o->progress) j->p->o->progress(j->p->o->progress_ud, d, j->total);
    }
    free(buf);
    free(tmp);
}

/* Data order inside a shard: wider element types first, then by name (the
 * order of the HF safetensors library), so that with the 8-aligned header
 * every tensor is aligned to its element size (I64 tid2eid, F32 ...). */
static const gspec *sort_base;
static int by_size_name(const void *a, const void *b) {
    const gspec *x = &sort_base[*(const int *)a], *y = &sort_base[*(const int *)b];
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

static void shard_name(char *buf, size_t n, int k, int nshards) {
    snprintf(buf, n, "model-%05d-of-%05d.safetensors", k + 1, nshards);
}

static int write_shard(gplan *p, dsv4_pool *pool, const char *dir, int k, int nshards, atomic_uint_fast64_t *done,
                       uint64_t total, char *err, size_t errlen) {
    int *order = NULL, n = 0;
    for (int i = 0; i < p->n; i++)
        if (p->t[i].shard == k) {
            order = xrealloc(order, (size_t)(n + 1) * sizeof(int));
            order[n++] = i;
        }
    sort_base = p->t;
    qsort(order, (size_t)n, sizeof(int), by_size_name);

    /* header: tensors in data order, then __metadata__ */
    json_t *h = json_object();
    uint64_t off = 0;
    for (int i = 0; i < n; i++) {
        gspec *t = &p->t[order[i]];
        t->offset = off;
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++) json_array_append_new(shape, json_integer(t->shape[d]));
        json_object_set_new(h, t->name, json_pack("{s:s,s:o,s:[I,I]}", "dtype", st_dtype_name(t->dtype), "shape", shape,
                                                  "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes)));
        off += t->nbytes;
    }
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    char *hdr = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t hl = strlen(hdr), pad = (8 - (hl % 8)) % 8;
    uint8_t *head = xmalloc(8 + hl + pad);
    uint64_t hlen = hl + pad;
    for (int i = 0; i < 8; i++) head[i] = (uint8_t)(hlen >> (8 * i));
    memcpy(head + 8, hdr, hl);
    memset(head + 8 + hl, ' ', pad);
    free(hdr);

    char name[64], path[4096];
    shard_name(name, sizeof name, k, nshards);
    path_join(path, sizeof path, dir, name);
    int rc = -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { errf(err, errlen, "%s: %s", path, strerror(errno)); goto out; }
    if (write(fd, head, 8 + hlen) != (ssize_t)(8 + hlen) || ftruncate(fd, (off_t)(8 + hlen + off)) != 0) {
        errf(err, errlen, "%s: write failed: %s", path, strerror(errno));
        close(fd);
        goto out;
    }

    /* work items: chunks of whole rows */
    gjob j;
    memset(&j, 0, sizeof j);
    j.p = p;
    j.order = order;
    j.fd = fd;
    j.data_start = 8 + hlen;
    j.done = done;
    j.total = total;
    j.buf_bytes = CHUNK_BYTES;
    j.tmp_floats = 1;
    int cap = 0;
    for (int i = 0; i < n; i++) {
        const gspec *t = &p->t[order[i]];
        int64_t rows = spec_rows(t);
        uint64_t rb = spec_row_bytes(t);
        int64_t per = rb >= CHUNK_BYTES ? 1 : (int64_t)(CHUNK_BYTES / rb);
        if (rb > j.buf_bytes) j.buf_bytes = rb;
        int64_t cols = t->ndim == 2 ? t->shape[1] : t->shape[0];
        if ((size_t)cols > j.tmp_floats) j.tmp_floats = (size_t)cols;
        for (int64_t r = 0; r < rows; r += per) {
            if (j.n_items == cap) {
                cap = cap ? 2 * cap : 1024;
                j.items = xrealloc(j.items, (size_t)cap * sizeof(gitem));
            }
            j.items[j.n_items++] = (gitem){order[i], r, r + per < rows ? r + per : rows};
        }
    }
    atomic_store(&j.next, 0);
    atomic_store(&j.failed, 0);
    if (pool) pool_run(pool, job_worker, &j);
    else job_worker(&j, 0, 1);
    /* the next load then reads the shard back in 2 MiB folios (util.h) */
    if (!atomic_load(&j.failed)) file_drop_cache(fd);
    int cerr = close(fd);
    if (atomic_load(&j.failed)) errf(err, errlen, "%s: write failed: %s", path, strerror(j.err_no));
    else if (cerr) errf(err, errlen, "%s: %s", path, strerror(errno));
    else rc = 0;
    free(j.items);
out:
    free(head);
    free(order);
    return rc;
}

int dsv4_gen_mkdir_p(const char *dir, char *err, size_t errlen) {
    char buf[4096];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *q = buf + 1; *q; q++) {
        if (*q != '/') continue;
        *q = 0;
        if (mkdir(buf, 0755) && errno != EEXIST) return errf(err, errlen, "%s: %s", buf, strerror(errno));
        *q = '/';
    }
    if (mkdir(buf, 0755) && errno != EEXIST) return errf(err, errlen, "%s: %s", buf, strerror(errno));
    struct stat st;
    if (stat(buf, &st) || !S_ISDIR(st.st_mode)) return errf(err, errlen, "%s: not a directory", buf);
    return 0;
}

/* Remove shards of an earlier, differently sharded checkpoint in dir. */
static void remove_stale_shards(const char *dir, int nshards) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        int a, b;
        char tail[32];
        if (sscanf(e->d_name, "model-%5d-of-%5d%20s", &a, &b, tail) == 3 && !strcmp(tail, ".safetensors") &&
            (b != nshards || a < 1 || a > b)) {
            char path[4096];
            unlink(path_join(path, sizeof path, dir, e->d_name));
        }
    }
    closedir(d);
}

static int write_text(const char *dir, const char *name, const void *data, size_t len, char *err, size_t errlen) {
    char path[4096];
    return write_file(path_join(path, sizeof path, dir, name), data, len, err, errlen);
}

static int write_index(const gplan *p, const char *dir, int nshards, uint64_t total, char *err, size_t errlen) {
    json_t *wm = json_object();
    for (int i = 0; i < p->n; i++) {
        char nm[64];
        shard_name(nm, sizeof nm, p->t[i].shard, nshards);
        json_object_set_new(wm, p->t[i].name, json_string(nm));
    }
    json_t *j = json_pack("{s:{s:I},s:o}", "metadata", "total_size", (json_int_t)total, "weight_map", wm);
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
    json_decref(j);
    size_t n = strlen(s);
    s = xrealloc(s, n + 2);
    s[n] = '\n';
    s[n + 1] = 0;
    int rc = write_text(dir, "model.safetensors.index.json", s, n + 1, err, errlen);
    free(s);
    return rc;
}

/* a_hat for every indexer wq_b: the unit vector wq_a . c_hat of its layer,
 * from the dequantised wq_a rows exactly as they will be written. */
static void plan_prepare_shared(gplan *p) {
    p->a_hat = xcalloc((size_t)p->n, sizeof(float *));
    int D = p->o->cfg.dim;
    uint8_t *row = xmalloc((size_t)D);
    for (int i = 0; i < p->n; i++) {
        if (p->t[i].shared != 1) continue;
        const gspec *wa = &p->t[p->t[i].aux];
        int64_t qr = wa->shape[0];
        float *a = xmalloc((size_t)qr * sizeof(float));
        double nn = 0;
        for (int64_t r = 0; r < qr; r++) {
            fill_row(p, wa, r, row, NULL);
            double d = 0;
            for (int j = 0; j < D; j++)
                d += (double)e4m3_to_f32(row[j]) * ldexpf(1.0f, wa->e0 + block_bit(wa->key, r / 128, j / 128)) * p->u[j];
            a[r] = (float)d;
            nn += d * d;
        }
        for (int64_t r = 0; r < qr; r++) a[r] = (float)(a[r] / sqrt(nn > 0 ? nn : 1));
        p->a_hat[i] = a;
    }
    free(row);
}

int dsv4_gen_write(const dsv4_gen_opts *o, const char *dir, char *err, size_t errlen) {
    /* the geometry must be one a loader accepts */
    char *cfg = dsv4_gen_config_json(o);
    dsv4_config chk;
    if (dsv4_config_parse(cfg, strlen(cfg), &chk, err, errlen)) { free(cfg); return -1; }
    if (chk.n_activated_experts > 64 && chk.n_hash_layers > 0) {
        free(cfg);
        return errf(err, errlen, "hash layers support at most 64 experts per token");
    }
    if (dsv4_gen_mkdir_p(dir, err, errlen)) { free(cfg); return -1; }

    gplan p;
    plan_build(&p, o);
    plan_prepare_shared(&p);
    int nshards = plan_shard(&p, o->shard_bytes);
    uint64_t total = 0;
    for (int i = 0; i < p.n; i++) total += p.t[i].nbytes;
    int rc = -1;
    struct statvfs vfs;
    if (!statvfs(dir, &vfs) && (uint64_t)vfs.f_bavail * vfs.f_frsize < total + (total >> 6)) {
        errf(err, errlen, "%s: needs %.2f GB of free space, %.2f GB available", dir, (double)total / 1e9,
             (double)vfs.f_bavail * vfs.f_frsize / 1e9);
        goto out;
    }
    char ipath[4096];
    unlink(path_join(ipath, sizeof ipath, dir, "model.safetensors.index.json"));
    remove_stale_shards(dir, nshards);
    if (write_text(dir, "config.json", cfg, strlen(cfg), err, errlen)) goto out;
    static const char gencfg[] =
        "{\n  \"_from_model_config\": true,\n  \"bos_token_id\": 0,\n  \"eos_token_id\": 1,\n"
        "  \"do_sample\": true,\n  \"temperature\": 1.0,\n  \"top_p\": 1.0,\n  \"transformers_version\": \"4.57.1\"\n}\n";
    if (write_text(dir, "generation_config.json", gencfg, sizeof gencfg - 1, err, errlen)) goto out;
    if (o->cfg.vocab_size != 129280) {   /* a tokenizer we wrote earlier no longer fits */
        char tp[4096];
        struct stat st;
        if (!stat(path_join(tp, sizeof tp, dir, "tokenizer.json"), &st) && (uint64_t)st.st_size == dsv4_tokenizer_json_len) {
            unlink(tp);
            unlink(path_join(tp, sizeof tp, dir, "tokenizer_config.json"));
        }
    }
    if (o->cfg.vocab_size == 129280 &&
        (write_text(dir, "tokenizer.json", dsv4_tokenizer_json, (size_t)dsv4_tokenizer_json_len, err, errlen) ||
         write_text(dir, "tokenizer_config.json", dsv4_tokenizer_config_json, (size_t)dsv4_tokenizer_config_json_len,
                    err, errlen)))
        goto out;
    int nth = o->threads > 0 ? o->threads : 2;
    dsv4_pool *pool = nth > 1 ? pool_new(nth) : NULL;
    atomic_uint_fast64_t done;
    atomic_store(&done, 0);
    int bad = 0;
    for (int k = 0; k < nshards && !bad; k++) bad = write_shard(&p, pool, dir, k, nshards, &done, total, err, errlen);
    if (pool) pool_free(pool);
    if (bad) goto out;
    /* the index last: a directory with an index is a complete checkpoint */
    rc = write_index(&p, dir, nshards, total, err, errlen);
out:
    plan_free(&p);
    free(cfg);
    return rc;
}
