/*
 * dsv4.h - public interface of libdsv4, a plain-C inference engine for
 * DeepSeek-V4 mixture-of-experts models.
 *
 * The library is organised by concern; each concern has its own header that
 * this file pulls in:
 *   dsv4.h            the engine: load a checkpoint, run sequences, sample
 *   dsv4_tokenizer.h  byte-level BPE tokenizer read from tokenizer.json
 *   dsv4_chat.h       V4 chat encoding and the DSML tool-call parser
 *
 * Conventions: functions that can fail return NULL or a negative value and
 * write a one-line, human-readable reason into a caller-supplied buffer
 * (char *err, size_t errlen).  Nothing in the library prints or exits.
 */
#ifndef DSV4_H
#define DSV4_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Configuration (HF config.json, see docs/v4-architecture.md section 1)     */
/* ------------------------------------------------------------------------ */

#define DSV4_MAX_LAYERS 128

typedef struct dsv4_config {
    int vocab_size;
    int dim;                 /* hidden_size, D */
    int moe_inter_dim;       /* moe_intermediate_size, I */
    int n_layers;            /* num_hidden_layers (main model) */
    int n_hash_layers;       /* num_hash_layers */
    int n_mtp_layers;        /* num_nextn_predict_layers (0 or 1) */
    int n_heads;             /* num_attention_heads, H */
    int n_routed_experts;    /* E */
    int n_shared_experts;
    int n_activated_experts; /* num_experts_per_tok */
    float route_scale;       /* routed_scaling_factor */
    float swiglu_limit;
    int q_lora_rank;
    int head_dim;            /* 512 on the release */
    int rope_head_dim;       /* 64 */
    float norm_eps;
    int o_groups;
    int o_lora_rank;
    int window_size;         /* sliding_window */
    int compress_ratios[DSV4_MAX_LAYERS + 1]; /* n_layers + n_mtp_layers */
    float compress_rope_theta;
    float rope_theta;
    int original_seq_len;    /* rope_scaling.original_max_position_embeddings */
    float rope_factor;
    float beta_fast, beta_slow;
    int index_n_heads;
    int index_head_dim;
    int index_topk;
    int hc_mult;
    int hc_sinkhorn_iters;
    float hc_eps;
    int bos_token_id, eos_token_id;
    long max_position_embeddings;
} dsv4_config;

/* Parse a HF config.json text.  Returns 0 or -1 with a reason in err. */
int dsv4_config_parse(const char *json, size_t len, dsv4_config *cfg,
                      char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Engine                                                                    */
/* ------------------------------------------------------------------------ */

/* Numeric modes (see README):
 *  DSV4_MODE_FAST  the default: fastest kernels, activations may be quantised
 *  DSV4_MODE_EXACT reproduces the reference's numerics (BF16 activations,
 *                  FP8 activation quantisation, KV/indexer QAT round trips)
 *  DSV4_MODE_FP32  FP32 activations, weights dequantised exactly, no QAT    */
typedef enum { DSV4_MODE_FAST = 0, DSV4_MODE_EXACT = 1, DSV4_MODE_FP32 = 2 } dsv4_mode;

typedef struct dsv4_model dsv4_model;
typedef struct dsv4_seq dsv4_seq;

/* Load a model directory (config.json + model.safetensors or sharded
 * model-*.safetensors with model.safetensors.index.json).  Weights are
 * mmap'd, never copied. */
dsv4_model *dsv4_model_load(const char *dir, char *err, size_t errlen);
/* Map all weight pages now instead of faulting them in 4 KiB at a time
 * during the first tokens (reads the files if they are not cached).  The
 * commands that compute call it after loading; DSV4_PREFAULT=0 skips it
 * (models streamed from SSD that do not fit in memory). */
void dsv4_model_prefault(dsv4_model *m);
/* Fraction (0..1) of the weight files' mapped bytes that the kernel maps
 * in 2 MiB pages (after dsv4_model_prefault), -1 if unknown.  Files read
 * from disk by the load get 2 MiB pages on ext4/xfs with Linux 6.x; files
 * whose page cache was filled by writing or copying them keep 4 KiB pages
 * until evicted (DSV4_REREAD=1 evicts them at load).  One core streams
 * about 15% faster from 2 MiB pages. */
double dsv4_model_hugepage_fraction(const dsv4_model *m);
void dsv4_model_free(dsv4_model *m);
const dsv4_config *dsv4_model_config(const dsv4_model *m);
void dsv4_model_set_mode(dsv4_model *m, dsv4_mode mode);
dsv4_mode dsv4_model_mode(const dsv4_model *m);
/* Worker threads used by kernels (0 = number of online CPUs). */
void dsv4_model_set_threads(dsv4_model *m, int n_threads);
/* Print the architecture summary of `dsv4 info` to a FILE* (void* to keep
 * stdio out of this header). Returns 0, or -1 if the inventory check failed. */
int dsv4_model_info(const dsv4_model *m, void *file);

/* A sequence: its own KV rings, compressed caches and compressor state.
 * max_ctx is the capacity in tokens (0 = config's max_position_embeddings
 * capped to 65536). */
dsv4_seq *dsv4_seq_new(dsv4_model *m, int max_ctx, char *err, size_t errlen);
void dsv4_seq_free(dsv4_seq *s);
void dsv4_seq_reset(dsv4_seq *s);      /* back to position 0, state cleared */
int dsv4_seq_pos(const dsv4_seq *s);    /* number of tokens consumed */
int dsv4_seq_capacity(const dsv4_seq *s);
/* Copy the whole state of src into dst (same model, dst capacity >= src
 * position).  Used for prefix reuse. */
int dsv4_seq_copy(dsv4_seq *dst, const dsv4_seq *src);

/* Feed n tokens at the sequence's current position as one batch (prefill
 * when n > 1, decode when n == 1).  logits: NULL, or room for vocab floats
 * (the last position's logits), or n*vocab floats when all_logits != 0.
 * Returns 0, or -1 (context full, bad id) with a reason in err. */
int dsv4_forward(dsv4_seq *s, const int32_t *ids, int n, float *logits,
                 int all_logits, char *err, size_t errlen);

/* One decode step for several sequences at once (one token each): weights
 * are streamed once for the whole batch.  logits: nseq*vocab floats. */
int dsv4_forward_batch(dsv4_seq **seqs, const int32_t *ids, int nseq,
                       float *logits, char *err, size_t errlen);

/* MTP head: logits for position p from the main model's final streams at p
 * and the embedding of next_id (the token at p+1).  Only valid right after
 * a dsv4_forward on s; rows for each of the last n positions of that call.
 * out: n*vocab floats.  Returns -1 if the model has no MTP layer. */
int dsv4_mtp_logits(dsv4_seq *s, const int32_t *next_ids, int n, float *out,
                    char *err, size_t errlen);

/* ------------------------------------------------------------------------ */
/* Sampling                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct dsv4_sampler_params {
    float temperature;   /* 0 = greedy (argmax, ties to the lowest id) */
    float top_p;         /* 1 = off */
    int top_k;           /* 0 = off */
    float min_p;         /* 0 = off */
    uint64_t seed;
} dsv4_sampler_params;

typedef struct dsv4_sampler dsv4_sampler;
dsv4_sampler *dsv4_sampler_new(const dsv4_sampler_params *p, int vocab);
void dsv4_sampler_free(dsv4_sampler *s);
/* Pick a token from logits (not modified).  mask: NULL or a bitset of
 * allowed ids (bit i of mask[i/64]); disallowed ids are never picked. */
int dsv4_sample(dsv4_sampler *s, const float *logits, const uint64_t *mask);
int dsv4_argmax(const float *x, int n);

#ifdef __cplusplus
}
#endif

#include "dsv4_tokenizer.h"
#include "dsv4_chat.h"

#endif
