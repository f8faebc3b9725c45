/*
 * fuzz_gguf.c - libFuzzer harness for the GGUF reader (format/gguf.c) and
 * what is built on it: every accepted file has all its metadata read back
 * through the typed getters, the deepseek4 config and tokenizer mapping
 * attempted, and the first row of every tensor of a dequantisable type
 * decoded, so a header that passes validation but lies is caught by ASan.
 */
#include "format/gguf.h"
#include "format/gguf_model.h"
#include "num/ggml_quants.h"
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    gguf_file *f = gguf_parse(data, size, "fuzz", err, sizeof err);
    if (!f) return 0;
    for (int64_t i = 0; i < f->n_kv; i++) {
        const gguf_kv *kv = &f->kv[i];
        int64_t v; double d; const char *s; size_t l; int b; float fl;
        gguf_get_i64(f, kv->key, &v, err, sizeof err);
        gguf_get_f32(f, kv->key, &fl, err, sizeof err);
        gguf_get_bool(f, kv->key, &b, err, sizeof err);
        gguf_get_str(f, kv->key, &s, &l, err, sizeof err);
        if (kv->type == GGUF_ARRAY)
            for (uint64_t k = 0; k < kv->n && k < 64; k++) {
                gguf_arr_i64(kv, k, &v); gguf_arr_f64(kv, k, &d); gguf_arr_str(kv, k, &s, &l);
            }
    }
    dsv4_config cfg;
    gguf_model_config(f, &cfg, err, sizeof err);
    size_t jl;
    char *js = gguf_tokenizer_json(f, &jl, err, sizeof err);
    free(js);
    float row[4096];
    for (int64_t i = 0; i < f->n_tensors; i++) {
        const gguf_tensor *t = &f->tensors[i];
        wtype wt;
        if (gguf_type_to_wtype(t->type, &wt) || wt == W_F32 || wt == W_BF16 || t->ne[0] > 4096) continue;
        ggml_dequant_row(wt, t->data, row, (int)t->ne[0]);
        ggml_vec_dot_rows(wt, t->data, ggml_row_size(wt, (int)t->ne[0]), 1, row, (int)t->ne[0], row);
    }
    gguf_close(f);
    return 0;
}
