/*
 * wsource.h - where the model's weights come from.
 *
 * The model loader asks for tensors by their release names (the names of
 * the official safetensors checkpoint, e.g. "layers.3.attn.wq_a").  A
 * source answers from safetensors shards (model/weights_st.c) or from a
 * GGUF file (format/gguf*.c maps llama.cpp's names back to release names).
 */
#ifndef DSV4_WSOURCE_H
#define DSV4_WSOURCE_H
#include <stddef.h>
#include <stdint.h>
#include "num/linear.h"

typedef enum { WS_F32, WS_BF16, WS_F16, WS_I32, WS_I64 } ws_vtype;

typedef struct wsource {
    void *ctx;
    /* A matrix by release module name without ".weight" (e.g.
     * "layers.0.ffn.experts.5.w1", "embed", "head").  rows/cols are the
     * logical shape the config implies; the source checks it and fills w
     * in whatever stored format it has.  0, or -1 with "file: tensor: why". */
    int (*matrix)(void *ctx, const char *name, int rows, int cols, dsv4_weight *w,
                  char *err, size_t errlen);
    /* A vector/small tensor by full release name (e.g.
     * "layers.0.attn_norm.weight", "hc_head_fn", "layers.0.ffn.gate.tid2eid")
     * with the expected number of elements; returns its stored type and
     * data.  0, or -1 with a reason. */
    int (*vector)(void *ctx, const char *name, int64_t numel, ws_vtype *type,
                  const void **data, char *err, size_t errlen);
    /* 1 if a tensor (full release name, or matrix name + ".weight") exists. */
    int (*has)(void *ctx, const char *name);
    /* After loading: names the source holds that the model never asked for
     * are reported by this (returns the first such name, or NULL). */
    const char *(*unused)(void *ctx);
    void (*close)(void *ctx);
    /* Optional: number of tensors and their total stored bytes (for the
     * inventory check of `dsv4 info`). */
    int (*inventory)(void *ctx, long *n_tensors, size_t *bytes);
    /* Optional: map every file page now (util.h map_prefault). */
    void (*prefault)(void *ctx);
    /* Optional: the fraction of the mapped bytes in 2 MiB pages now
     * (util.h map_hugepage_fraction), -1 if unknown. */
    double (*hugepage_fraction)(void *ctx);
} wsource;

#endif
