/*
 * gen.h - random-weight DeepSeek-V4 checkpoints in the exact release format
 * (`dsv4 gen`), and the built-in default model.
 *
 * A checkpoint is described by a dsv4_config (the HF config.json fields)
 * plus a few generator options.  dsv4_gen_write() turns that into a model
 * directory: config.json with the release key set, generation_config.json,
 * model-0000K-of-0000N.safetensors shards with the release tensor names,
 * dtypes and shapes (FP8 E4M3 + UE8M0 128x128 scales, MXFP4 experts, BF16,
 * F32, I64 tid2eid), model.safetensors.index.json, and for the real
 * vocabulary (129280) the DeepSeek tokenizer files embedded in the binary.
 *
 * Weights are streamed: every tensor row is generated from
 * (seed, tensor, row) alone, so output is deterministic for a seed whatever
 * the thread count or chunking, and memory stays at a few chunk buffers.
 */
#ifndef DSV4_GEN_H
#define DSV4_GEN_H
#include <stddef.h>
#include <stdint.h>
#include "dsv4.h"

/* Progress callback: bytes of tensor data written so far and in total. */
typedef void (*dsv4_gen_progress_fn)(void *ud, uint64_t done, uint64_t total);

typedef struct dsv4_gen_opts {
    dsv4_config cfg;         /* the geometry (fields as parsed from config.json) */
    int fp8_experts;         /* 1: routed experts FP8 + 128x128 scales (-Base) */
    uint64_t seed;
    uint64_t shard_bytes;    /* target shard size (tensor data bytes) */
    int threads;             /* worker threads (0 = 2) */
    dsv4_gen_progress_fn progress;  /* may be NULL; called from one thread */
    void *progress_ud;
    const char *preset;      /* set by dsv4_gen_preset: the layer-type pattern */
    int preset_hash_layers;
} dsv4_gen_opts;

/* Names of the presets: "tiny", "default", "flash", "pro". */
extern const char *const dsv4_gen_preset_names[];

/* Fill opts with a preset (seed 0, preset's shard size). -1 + err if the
 * name is unknown. */
int dsv4_gen_preset(const char *name, dsv4_gen_opts *opts, char *err, size_t errlen);

/* Geometry overrides; a value <= 0 leaves the field alone.  layers changes
 * num_hidden_layers and the compress_ratios list: flash uses
 * [0] + [4,128,4,128,...] (so 4 layers give [0,4,128,4]) unless layers is the
 * full 43, pro and the others take the first N entries of their list
 * (repeating its last two main-layer entries if N is larger).  The hash
 * layer count becomes min(preset's, N).  Checks the result like
 * config.json is checked.  Returns 0 or -1 + err. */
int dsv4_gen_override(dsv4_gen_opts *opts, int layers, int experts, int topk, int vocab,
                      int dim, char *err, size_t errlen);

/* Total bytes of tensor data the checkpoint will hold, and its tensor
 * count (for messages and tests). */
uint64_t dsv4_gen_total_bytes(const dsv4_gen_opts *opts, int *n_tensors);

/* The HF config.json text for opts (malloc'd, NUL-terminated). */
char *dsv4_gen_config_json(const dsv4_gen_opts *opts);

/* Write the checkpoint into dir (created if missing; existing files with the
 * same names are replaced).  Returns 0 or -1 + err. */
int dsv4_gen_write(const dsv4_gen_opts *opts, const char *dir, char *err, size_t errlen);

/* mkdir -p (internal helper shared with default_model.c). */
int dsv4_gen_mkdir_p(const char *dir, char *err, size_t errlen);

/* f32 -> E4M3FN byte as the generator encodes (round to nearest even,
 * saturating at +-448, never a NaN code).  Exposed for tests. */
int dsv4_gen_e4m3_encode(float x);

/* Directory of the built-in default model (preset "default", seed 0),
 * generated on first use into $DSV4_CACHE_DIR, else $XDG_CACHE_HOME/dsv4,
 * else $HOME/.cache/dsv4, in the subdirectory DSV4_DEFAULT_MODEL_NAME.
 * Generation goes to a private temporary directory that is renamed into
 * place, so concurrent first uses never see a partial model.
 * Returns 0 with the path in out, or -1 + err. */
#define DSV4_DEFAULT_MODEL_NAME "default-v1"
int dsv4_default_model_dir(char *out, size_t outlen, char *err, size_t errlen);

/* The DeepSeek-V4 tokenizer files, embedded by tokenizer_blob.S.  Each is
 * followed by a NUL byte that the length does not count. */
extern const unsigned char dsv4_tokenizer_json[];
extern const uint64_t dsv4_tokenizer_json_len;
extern const unsigned char dsv4_tokenizer_config_json[];
extern const uint64_t dsv4_tokenizer_config_json_len;

#endif
