/*
 * dsv4_tokenizer.h - DeepSeek byte-level BPE tokenizer (HF tokenizer.json).
 * Implemented in src/text/tokenizer.c (+ tok_pretok.c, tok_unicode.c,
 * tok_json.c).  A loaded tokenizer is read-only: every function may be
 * called from many threads at once (a stream object belongs to one).
 *
 * Added/special tokens are matched whole before BPE (leftmost, longest);
 * the pieces between them go through the V3/V4 pre-tokenizer regexes and
 * then byte-level BPE with merge ranks.  Any byte string encodes, invalid
 * UTF-8 included, and decodes back to the same bytes.
 */
#ifndef DSV4_TOKENIZER_H
#define DSV4_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct dsv4_tokenizer dsv4_tokenizer;

/* Load from a tokenizer.json file path, or from memory. */
dsv4_tokenizer *dsv4_tokenizer_load(const char *path, char *err, size_t errlen);
dsv4_tokenizer *dsv4_tokenizer_load_mem(const char *json, size_t len,
                                        char *err, size_t errlen);
void dsv4_tokenizer_free(dsv4_tokenizer *t);

/* Number of ids (base vocabulary + added tokens); max id + 1. */
int dsv4_tokenizer_vocab_size(const dsv4_tokenizer *t);

/* Encode bytes; special tokens are recognised.  *ids is malloc'd (caller
 * frees).  Returns 0 or -1 (out of memory). */
int dsv4_tokenize(const dsv4_tokenizer *t, const char *text, size_t len,
                  int32_t **ids, size_t *n_ids);
/* The same with flags: DSV4_TOK_NO_SPECIAL encodes added-token strings as
 * plain text (e.g. untrusted user content). */
#define DSV4_TOK_NO_SPECIAL 1
int dsv4_tokenize_ex(const dsv4_tokenizer *t, const char *text, size_t len,
                     int flags, int32_t **ids, size_t *n_ids);

/* Decode ids to bytes (*out malloc'd, NUL-terminated, *out_len excludes the
 * NUL).  Returns 0, or -1 on an id out of range.  The bytes are exact: where
 * HF's decode would put U+FFFD for invalid UTF-8, this gives the raw bytes,
 * so decode(encode(x)) == x for every byte string x. */
int dsv4_detokenize(const dsv4_tokenizer *t, const int32_t *ids, size_t n,
                    char **out, size_t *out_len);

/* The raw bytes of one token after byte-level decoding (not NUL-terminated).
 * Returns NULL for an id out of range. */
const char *dsv4_token_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len);
/* 1 if id is an added/special token (any entry of added_tokens, whatever
 * its "special" flag: <think> and <｜User｜> count). */
int dsv4_token_is_special(const dsv4_tokenizer *t, int32_t id);
/* 1 if id is an added token whose "special" flag is true in the file (what
 * HF's skip_special_tokens would drop). */
int dsv4_token_special_flag(const dsv4_tokenizer *t, int32_t id);
/* The token's spelling in tokenizer.json (not NUL-terminated), or NULL. */
const char *dsv4_token_spelling(const dsv4_tokenizer *t, int32_t id, size_t *len);
/* Id of an exact token string (added tokens or vocabulary, in the
 * tokenizer.json's own spelling), or -1. */
int32_t dsv4_token_id(const dsv4_tokenizer *t, const char *token);

/* Streaming detokenizer: feed ids one at a time; text is released only at
 * complete UTF-8 characters, and a special token is released whole. */
typedef struct dsv4_detok_stream dsv4_detok_stream;
dsv4_detok_stream *dsv4_detok_stream_new(const dsv4_tokenizer *t);
void dsv4_detok_stream_free(dsv4_detok_stream *s);
/* Returns the bytes that became final with this id (may be empty); the
 * pointer stays valid until the next call.  -1 on a bad id. */
int dsv4_detok_stream_push(dsv4_detok_stream *s, int32_t id,
                           const char **out, size_t *out_len);
/* Flush whatever is pending (e.g. an incomplete UTF-8 tail) at the end. */
int dsv4_detok_stream_flush(dsv4_detok_stream *s, const char **out, size_t *out_len);

#ifdef __cplusplus
}
#endif
#endif
