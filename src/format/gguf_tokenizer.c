/*
 * gguf_tokenizer.c - the tokenizer inside a GGUF (tokenizer.ggml.*) <->
 * HF tokenizer.json.
 *
 * A deepseek4 GGUF carries a gpt2-style (byte-level BPE) vocabulary: the
 * token strings in byte-level spelling, a type per token (1 normal,
 * 3 control, 4 user-defined, 5 unused, 6 byte) and the merges as "a b"
 * strings, with pre-tokenizer name "deepseek-v3".  Reading rebuilds the
 * tokenizer.json document that dsv4_tokenizer_load_mem expects (normal
 * tokens -> model.vocab, control/user-defined -> added_tokens, unused
 * padding dropped, the DeepSeek-V3 pre-tokenizer spelled out); writing does
 * the reverse the way llama.cpp's converter does (ids with no token are
 * padded "[PAD<id>]" and typed unused).
 */
#include "format/gguf_model.h"
#include "dsv4_tokenizer.h"
#include "text/tok_pretok.h"
#include "util/util.h"
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

enum { TT_NORMAL = 1, TT_UNKNOWN = 2, TT_CONTROL = 3, TT_USER = 4, TT_UNUSED = 5, TT_BYTE = 6 };

static json_t *pre_tokenizer_v3(void) {
    json_t *list = json_array();
    for (int i = 0; i < 3; i++)
        json_array_append_new(list, json_pack("{s:s, s:{s:s}, s:s, s:b}", "type", "Split", "pattern", "Regex",
                                              tok_pretok_patterns[i], "behavior", "Isolated", "invert", 0));
    json_array_append_new(list, json_pack("{s:s, s:b, s:b, s:b}", "type", "ByteLevel", "add_prefix_space", 0,
                                          "trim_offsets", 1, "use_regex", 0));
    return json_pack("{s:s, s:o}", "type", "Sequence", "pretokenizers", list);
}

char *gguf_tokenizer_json(const gguf_file *f, size_t *len, char *err, size_t errlen) {
    const char *model; size_t ml;
    if (gguf_get_str(f, "tokenizer.ggml.model", &model, &ml, err, errlen)) return NULL;
    if (ml != 4 || memcmp(model, "gpt2", 4))
        { errf(err, errlen, "%s: tokenizer model '%.*s' is not gpt2 (byte-level BPE)", f->path, (int)(ml > 32 ? 32 : ml), model); return NULL; }
    const char *pre; size_t pl;
    if (!gguf_get_str(f, "tokenizer.ggml.pre", &pre, &pl, NULL, 0) &&
        !(pl == 11 && !memcmp(pre, "deepseek-v3", 11)) && !(pl == 13 && !memcmp(pre, "deepseek-llm", 12)))
        { errf(err, errlen, "%s: tokenizer pre-tokenizer '%.*s' is not deepseek-v3", f->path, (int)(pl > 32 ? 32 : pl), pre); return NULL; }
    const gguf_kv *toks = gguf_find_kv(f, "tokenizer.ggml.tokens");
    const gguf_kv *types = gguf_find_kv(f, "tokenizer.ggml.token_type");
    const gguf_kv *merges = gguf_find_kv(f, "tokenizer.ggml.merges");
    if (!toks || toks->type != GGUF_ARRAY || toks->arr_type != GGUF_STRING)
        { errf(err, errlen, "%s: tokenizer.ggml.tokens missing or not a string array", f->path); return NULL; }
    if (!merges || merges->type != GGUF_ARRAY || merges->arr_type != GGUF_STRING)
        { errf(err, errlen, "%s: tokenizer.ggml.merges missing or not a string array", f->path); return NULL; }
    if (types && (types->type != GGUF_ARRAY || types->arr_type == GGUF_STRING || types->n != toks->n))
        { errf(err, errlen, "%s: tokenizer.ggml.token_type must be an integer array as long as the tokens", f->path); return NULL; }
    if (toks->n > (1u << 24)) { errf(err, errlen, "%s: %llu tokens is too many", f->path, (unsigned long long)toks->n); return NULL; }
    json_t *vocab = json_object(), *added = json_array(), *mlist = json_array();
    char *out = NULL;
    for (uint64_t i = 0; i < toks->n; i++) {
        const char *s; size_t sl; int64_t tt = TT_NORMAL;
        gguf_arr_str(toks, i, &s, &sl);
        if (types) gguf_arr_i64(types, i, &tt);
        if (tt == TT_UNUSED) continue;
        json_t *str = json_stringn(s, sl);
        if (!str) { errf(err, errlen, "%s: token %llu is not valid UTF-8", f->path, (unsigned long long)i); goto out; }
        if (tt == TT_CONTROL || tt == TT_USER || tt == TT_UNKNOWN) {
            json_array_append_new(added, json_pack("{s:I, s:o, s:b, s:b, s:b, s:b, s:b}", "id", (json_int_t)i, "content", str,
                                                   "single_word", 0, "lstrip", 0, "rstrip", 0, "normalized", tt != TT_CONTROL,
                                                   "special", tt == TT_CONTROL));
            /* added tokens that are also ordinary BPE pieces stay in the vocab too */
        } else {
            json_object_setn_new_nocheck(vocab, s, sl, json_integer((json_int_t)i));
            json_decref(str);
        }
    }
    for (uint64_t i = 0; i < merges->n; i++) {
        const char *s; size_t sl;
        gguf_arr_str(merges, i, &s, &sl);
        json_t *m = json_stringn(s, sl);
        if (!m || !memchr(s, ' ', sl)) { json_decref(m); errf(err, errlen, "%s: merge %llu is not \"a b\"", f->path, (unsigned long long)i); goto out; }
        json_array_append_new(mlist, m);
    }
    json_t *bpe = json_pack("{s:s, s:n, s:n, s:n, s:n, s:b, s:b, s:b, s:O, s:O}", "type", "BPE", "dropout", "unk_token",
                            "continuing_subword_prefix", "end_of_word_suffix", "fuse_unk", 0, "byte_fallback", 0,
                            "ignore_merges", 0, "vocab", vocab, "merges", mlist);
    json_t *root = json_pack("{s:s, s:n, s:n, s:O, s:{s:s, s:[]}, s:o, s:n, s:{s:s, s:b, s:b, s:b}, s:o}",
                             "version", "1.0", "truncation", "padding", "added_tokens", added,
                             "normalizer", "type", "Sequence", "normalizers", "pre_tokenizer", pre_tokenizer_v3(),
                             "post_processor", "decoder", "type", "ByteLevel", "add_prefix_space", 1, "trim_offsets", 1,
                             "use_regex", 1, "model", bpe);
    if (!root) { errf(err, errlen, "%s: cannot build tokenizer.json", f->path); goto out; }
    out = json_dumps(root, JSON_COMPACT);
    json_decref(root);
    if (!out) errf(err, errlen, "%s: cannot serialise tokenizer.json", f->path);
    else *len = strlen(out);
out:
    json_decref(vocab); json_decref(added); json_decref(mlist);
    return out;
}

int gguf_tokenizer_write(gguf_writer *w, const char *text, size_t len, int n_vocab, int bos, int eos,
                         char *err, size_t errlen) {
    json_error_t je;
    json_t *root = json_loadb(text, len, 0, &je);
    if (!root) return errf(err, errlen, "tokenizer.json: not valid JSON: %s (line %d)", je.text, je.line);
    int rc = -1;
    json_t *model = json_object_get(root, "model");
    json_t *vocab = json_object_get(model, "vocab"), *merges = json_object_get(model, "merges");
    json_t *added = json_object_get(root, "added_tokens");
    if (!json_is_object(vocab) || !json_is_array(merges))
        { errf(err, errlen, "tokenizer.json: model.vocab / model.merges missing"); goto out; }
    int n = n_vocab;
    const char *key; json_t *val;
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        if (!json_is_integer(val) || id < 0 || id >= (1 << 24)) { errf(err, errlen, "tokenizer.json: bad id for '%s'", key); goto out; }
        if (id >= n) n = (int)id + 1;
    }
    size_t i;
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        if (!json_is_string(json_object_get(val, "content")) || id < 0 || id >= (1 << 24))
            { errf(err, errlen, "tokenizer.json: added token %zu is malformed", i); goto out; }
        if (id >= n) n = (int)id + 1;
    }
    if (n > n_vocab) { errf(err, errlen, "tokenizer.json has ids up to %d but the embedding has %d rows", n - 1, n_vocab); goto out; }
    const char **tok = xcalloc((size_t)n, sizeof *tok);
    size_t *tl = xcalloc((size_t)n, sizeof *tl);
    int32_t *tt = xcalloc((size_t)n, sizeof *tt);
    json_object_foreach(vocab, key, val) {
        json_int_t id = json_integer_value(val);
        tok[id] = key; tl[id] = strlen(key); tt[id] = TT_NORMAL;
    }
    json_array_foreach(added, i, val) {
        json_int_t id = json_integer_value(json_object_get(val, "id"));
        json_t *c = json_object_get(val, "content");
        tok[id] = json_string_value(c); tl[id] = json_string_length(c);
        tt[id] = json_is_true(json_object_get(val, "special")) ? TT_CONTROL : TT_USER;
    }
    char **pads = xcalloc((size_t)n, sizeof *pads);
    for (int k = 0; k < n; k++)
        if (!tok[k]) {
            pads[k] = xmalloc(32);
            snprintf(pads[k], 32, "[PAD%d]", k);
            tok[k] = pads[k]; tl[k] = strlen(pads[k]); tt[k] = TT_UNUSED;
        }
    size_t nm = json_array_size(merges);
    char **ms = xcalloc(nm + 1, sizeof *ms);
    int bad = 0;
    json_array_foreach(merges, i, val) {
        if (json_is_string(val)) ms[i] = xstrdup(json_string_value(val));
        else if (json_is_array(val) && json_array_size(val) == 2 && json_is_string(json_array_get(val, 0)) &&
                 json_is_string(json_array_get(val, 1))) {
            const char *a = json_string_value(json_array_get(val, 0)), *b = json_string_value(json_array_get(val, 1));
            ms[i] = xmalloc(strlen(a) + strlen(b) + 2);
            sprintf(ms[i], "%s %s", a, b);
        } else { ms[i] = xstrdup(""); bad = 1; }
    }
    if (bad) errf(err, errlen, "tokenizer.json: a merge is neither \"a b\" nor [a, b]");
    else {
        gguf_w_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_w_str(w, "tokenizer.ggml.pre", "deepseek-v3");
        gguf_w_arr_str(w, "tokenizer.ggml.tokens", tok, tl, (uint64_t)n);
        gguf_w_arr(w, "tokenizer.ggml.token_type", GGUF_I32, tt, (uint64_t)n);
        gguf_w_arr_str(w, "tokenizer.ggml.merges", (const char *const *)ms, NULL, nm);
        gguf_w_u32(w, "tokenizer.ggml.bos_token_id", (uint32_t)bos);
        gguf_w_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)eos);
        gguf_w_u32(w, "tokenizer.ggml.padding_token_id", (uint32_t)eos);
        gguf_w_bool(w, "tokenizer.ggml.add_bos_token", 1);
        gguf_w_bool(w, "tokenizer.ggml.add_eos_token", 0);
        rc = 0;
    }
    for (size_t k = 0; k < nm; k++) free(ms[k]);
    for (int k = 0; k < n; k++) free(pads[k]);
    free(ms); free(pads); free(tok); free(tl); free(tt);
out:
    json_decref(root);
    return rc;
}

dsv4_tokenizer *gguf_tokenizer_load(const char *path, char *err, size_t errlen) {
    gguf_file *f = gguf_open(path, err, errlen);
    if (!f) return NULL;
    size_t len;
    char *js = gguf_tokenizer_json(f, &len, err, errlen);
    gguf_close(f);
    if (!js) return NULL;
    dsv4_tokenizer *t = dsv4_tokenizer_load_mem(js, len, err, errlen);
    free(js);
    return t;
}
