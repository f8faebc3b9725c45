/*
 * gguf_model.h - DeepSeek-V4 models in GGUF files of llama.cpp's
 * `deepseek4` architecture: metadata <-> dsv4_config, llama.cpp tensor
 * names <-> release tensor names, and the weight source (model/wsource.h)
 * that lets the engine load a .gguf directly.
 */
#ifndef DSV4_GGUF_MODEL_H
#define DSV4_GGUF_MODEL_H
#include <stddef.h>
#include "dsv4.h"
#include "format/gguf.h"
#include "model/wsource.h"

/* The GGUF name of a release tensor (full name, e.g. "layers.3.attn.wq_a.weight",
 * "hc_head_fn", "layers.0.ffn.experts.7.w2.weight").  *expert is the slice of
 * the stacked expert tensor, or -1.  0, or -1 if the name has no GGUF
 * counterpart (MTP tensors, FP8 scales). */
int gguf_name_from_release(const char *rel, char *out, size_t outlen, int *expert);

/* Read a dsv4_config from deepseek4 metadata.  0 or -1 with a reason. */
int gguf_model_config(const gguf_file *f, dsv4_config *cfg, char *err, size_t errlen);

/* Write the deepseek4 metadata of cfg (general.* and deepseek4.*; not the
 * tokenizer).  file_type is llama.cpp's general.file_type. */
void gguf_model_write_metadata(gguf_writer *w, const dsv4_config *cfg, const char *name, int file_type);

/* Open a .gguf as the engine's weight source (also the hook the model
 * loader calls for paths ending in .gguf). */
int gguf_model_open(const char *path, dsv4_config *cfg, wsource *src, char *err, size_t errlen);

/* Tokenizer: the tokenizer.ggml.* metadata as a tokenizer.json document
 * (malloc'd, NUL-terminated) that dsv4_tokenizer_load_mem accepts.  NULL
 * with a reason if the file has no gpt2-style tokenizer. */
char *gguf_tokenizer_json(const gguf_file *f, size_t *len, char *err, size_t errlen);
/* The reverse, for the converter: tokenizer.json text -> tokenizer.ggml.*
 * keys (model gpt2, pre deepseek-v3, tokens padded to n_vocab, types,
 * merges, bos/eos/pad ids). 0 or -1. */
int gguf_tokenizer_write(gguf_writer *w, const char *json, size_t len, int n_vocab,
                         int bos, int eos, char *err, size_t errlen);

/* The tokenizer of a .gguf file, loaded (convenience for the CLI). */
struct dsv4_tokenizer;
struct dsv4_tokenizer *gguf_tokenizer_load(const char *path, char *err, size_t errlen);

/* Convert a release checkpoint directory to a deepseek4 GGUF.  mode:
 * "mxfp4-moe" (official layout), "q8_0", "bf16" or "f32" (see
 * gguf_convert.c).  tokenizer_path NULL: DIR/tokenizer.json if present,
 * else the file gets tokenizer.ggml.model "none".  n_threads 0 = all CPUs.
 * progress may be NULL. */
int gguf_convert(const char *dir, const char *out, const char *mode, const char *tokenizer_path,
                 int n_threads, gguf_progress_fn progress, void *pctx, char *err, size_t errlen);

#endif
