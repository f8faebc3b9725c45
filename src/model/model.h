/*
 * model.h - the in-memory DeepSeek-V4 model and sequence state.
 *
 * Names follow the release tensor names and docs/v4-architecture.md, so a
 * reader can find each piece of the spec here:
 *   layer_w.wq_a  <->  layers.{i}.attn.wq_a.weight (+ .scale)
 *   compressor_w  <->  layers.{i}.attn.compressor.*  (and the indexer's)
 * Matrices stay in the mmap in their stored format (dsv4_weight); small
 * vectors are F32 pointers into the mmap, or F32 copies of BF16 ones.
 */
#ifndef DSV4_MODEL_H
#define DSV4_MODEL_H
#include "dsv4.h"
#include "num/linear.h"
#include "num/pool.h"
#include "model/wsource.h"
#include "model/trace.h"

/* A gated-pooling compressor (spec 4.4): main (d = head_dim) or indexer
 * (d = index_head_dim, rotate = Hadamard + FP4). */
typedef struct compressor_w {
    int ratio, d, coff, overlap, rotate;
    dsv4_weight wkv, wgate;       /* [coff*d][D] */
    const float *ape;             /* [ratio][coff*d] */
    const float *norm;            /* [d] */
} compressor_w;

/* One transformer block (main layer or the MTP layer). */
typedef struct layer_w {
    int ratio;                    /* compress_ratios[i]: 0 SWA, 4 CSA, else HCA */
    int is_hash;                  /* routing from tid2eid */
    /* mHC parameters of the two sub-blocks */
    const float *hc_attn_fn, *hc_attn_base, *hc_attn_scale;
    const float *hc_ffn_fn, *hc_ffn_base, *hc_ffn_scale;
    const float *attn_norm, *ffn_norm;
    /* attention */
    const float *attn_sink;       /* [H] */
    dsv4_weight wq_a, wq_b, wkv, wo_a, wo_b;
    const float *q_norm, *kv_norm;
    compressor_w comp;            /* ratio != 0 */
    int has_indexer;              /* ratio == 4 */
    dsv4_weight idx_wq_b, idx_weights_proj;
    compressor_w idx_comp;
    /* MoE */
    dsv4_weight gate;             /* [E][D] */
    const float *gate_bias;       /* [E] or NULL (hash layers) */
    const int32_t *tid2eid;       /* [vocab][k] (hash layers) */
    int tid2eid_i64;              /* stored as I64 in the checkpoint */
    dsv4_weight *w1, *w2, *w3;    /* [E] routed experts */
    int has_shared;
    dsv4_weight sw1, sw2, sw3;
    /* MTP only */
    dsv4_weight e_proj, h_proj;
    const float *enorm, *hnorm, *norm;
    const float *hc_head_fn, *hc_head_base, *hc_head_scale;
} layer_w;

struct dsv4_model {
    dsv4_config cfg;
    dsv4_mode mode;
    dsv4_pool *pool;
    int n_threads;
    wsource src;
    dsv4_weight embed, head;
    const float *norm;            /* final RMSNorm */
    const float *hc_head_fn, *hc_head_base, *hc_head_scale;
    layer_w *layers;              /* n_layers + n_mtp_layers */
    float *rope_freq_swa;         /* [rd/2] base rope_theta, no YaRN */
    float *rope_freq_comp;        /* [rd/2] compress_rope_theta with YaRN */
    /* F32 copies of BF16 vectors, freed at the end */
    void **owned;
    int n_owned;
    char dir[1024];
    /* Time spent per part of the forward pass (seconds, summed over calls;
     * see model_profile): index = main layer, then [n_layers] = head and
     * hc_head, [n_layers+1] = embedding. */
    double *prof_s;
    long prof_calls;
};

/* Per-layer cache and compressor state of one sequence. */
typedef struct layer_state {
    float *ring;                  /* [win][hd] raw KV, slot = pos % win */
    float *ckv;                   /* [cap/ratio][hd] compressed KV */
    float *kv_state, *sc_state;   /* [coff*ratio][coff*hd] */
    float *ikv;                   /* [cap/4][ihd] indexer keys */
    /* FAST mode: the keys rounded to BF16 (the kernel set's deq_bf16), in
     * the panels of kern_set.index_scores, keys [0, ikv_pan_n)
     * valid; any other write to ikv lowers ikv_pan_n (see
     * indexer_key_panels in attention.c) */
    uint32_t *ikv_pan;            /* kern_index_panel_len(cap/4 + 1, ihd) */
    int ikv_pan_n;
    float *ikv_state, *isc_state; /* [8][2*ihd] */
} layer_state;

struct dsv4_seq {
    dsv4_model *m;
    int pos, cap;
    layer_state *ls;              /* n_layers + n_mtp_layers */
    int mtp_pos;                  /* positions consumed by the MTP layer */
    /* final main-model streams of every position (for MTP), if kept */
    int keep_streams;
    float *streams;               /* [cap][hc][D] */
    trace *trace;                 /* per-layer intermediates, or NULL */
};

/* Load from any weight source; takes ownership of src. */
dsv4_model *model_load_source(const dsv4_config *cfg, wsource src, const char *label,
                              char *err, size_t errlen);
/* The safetensors source for a model directory. */
int wsource_open_safetensors(const char *dir, wsource *out, char *err, size_t errlen);

/* Parameter and byte accounting (dsv4 info, dsv4 bench). */
typedef struct model_account {
    double params_total, params_active;      /* logical values (+ MTP in total) */
    double params_embed, params_head, params_attn, params_compress, params_routed, params_shared,
           params_gate, params_hc_norm, params_mtp;
    double bytes_total;                      /* stored bytes of all tensors the model uses */
    double bytes_per_token;                  /* decode at context 0, no MTP */
    double bytes_layer_dense;                /* mean per main layer, without routed experts */
    double bytes_expert;                     /* one routed expert (w1+w2+w3) */
    double bytes_head;                       /* output head */
    double kv_bytes_per_token;               /* cache growth per token (F32 cache) */
    double kv_bytes_per_token_bf16;          /* the spec's figure for a BF16 cache */
} model_account;
void model_account_compute(const dsv4_model *m, model_account *a);

/* Random cache contents for timing long contexts (dsv4 bench --fill
 * random): the sequence behaves as if ctx tokens had been processed. */
int seq_fill_random(dsv4_seq *s, int ctx, uint64_t seed);

/* Zero / read the per-part timings of the forward pass. */
void model_profile_reset(dsv4_model *m);

/* Keep the final streams of every position in the sequence (for MTP). */
void seq_keep_streams(dsv4_seq *s, int on);

#endif
