/*
 * tok_pretok.h - the DeepSeek-V3/V4 pre-tokenizer, hand-written.
 *
 * tokenizer.json declares it as a Sequence of three Split pre-tokenizers
 * (behavior Isolated, run by HF tokenizers with Oniguruma):
 *
 *   1. \p{N}{1,3}
 *   2. [一-龥぀-ゟ゠-ヿ]+
 *   3. [!"#$%&'()*+,\-./:;<=>?@\[\\\]^_`{|}~][A-Za-z]+
 *      |[^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+
 *      | ?[\p{P}\p{S}]+[\r\n]*
 *      |\s*[\r\n]+
 *      |\s+(?!\S)
 *      |\s+
 *
 * Each Split cuts every piece of the previous one: matches become pieces,
 * and so do the runs of text between matches.  Each regex therefore sees
 * only its own piece (a lookahead stops at the piece's end).  The code here
 * reproduces the backtracking semantics of each alternative directly (first
 * alternative that matches at the leftmost position wins), which is much
 * faster than a regex engine.  tests/test_tokenizer.c checks it against
 * PCRE2 running the very patterns read from tokenizer.json.
 */
#ifndef DSV4_TOK_PRETOK_H
#define DSV4_TOK_PRETOK_H

#include <stddef.h>

/* The exact pattern strings this module implements, as they appear in
 * tokenizer.json (the loader refuses any other pre-tokenizer). */
extern const char *const tok_pretok_patterns[3];

typedef void (*tok_piece_fn)(void *ctx, const char *s, size_t len);

/* Cut text[0..len) into pre-tokens, calling fn for each in order.  The
 * pieces cover the text exactly. */
void tok_pretokenize(const char *text, size_t len, tok_piece_fn fn, void *ctx);

#endif
