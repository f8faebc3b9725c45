/*
 * grammar.h - constrained decoding: a byte-level context-free grammar, its
 * compilers (JSON schema, generic JSON, DSML tool calls) and the per-step
 * allowed-token mask over a tokenizer's vocabulary.
 *
 * A grammar is a set of rules; each rule is a list of alternatives, each a
 * sequence of byte classes and rule references (right recursion only).  The
 * matcher keeps the set of possible parse stacks (as in an Earley/GLR run
 * without left recursion) and advances it one byte at a time.  The vocabulary
 * is a byte trie: the mask is computed by walking the trie with the parse
 * state, pruning a subtree as soon as no stack survives its prefix, so the
 * cost is proportional to the number of viable token prefixes, not to the
 * vocabulary size times the token length.  Masks are cached by parse state
 * (inside a long string the state repeats token after token).
 *
 * Termination under a token budget: every stack knows the minimum number of
 * bytes needed to complete the grammar.  When the remaining budget gets close
 * to that distance, the mask keeps only tokens that strictly reduce it, so a
 * random-weight model still closes its JSON before max_tokens (every single
 * byte is a token in a byte-level BPE vocabulary).
 */
#ifndef DSV4_SERVER_GRAMMAR_H
#define DSV4_SERVER_GRAMMAR_H
#include <stddef.h>
#include <stdint.h>

typedef struct grammar grammar;
typedef struct gvocab gvocab;
typedef struct gmatcher gmatcher;

/* ---- building grammars ------------------------------------------------- */

/* Compile a JSON schema (text) into a grammar that produces exactly one
 * compact JSON value valid for it.  NULL schema = any JSON object
 * (response_format json_object).  Supported: type (incl. lists), properties,
 * required, additionalProperties, items, minItems/maxItems, enum, const,
 * anyOf/oneOf, $ref into #/$defs or #/definitions, string
 * minLength/maxLength, integer/number (minimum >= 0 drops the sign),
 * boolean, null.  Unsupported keywords that would change validity (pattern,
 * format on strings, allOf with more than one entry, not) are an error. */
grammar *grammar_from_json_schema(const char *schema_json, char *err, size_t errlen);

/* The DSML tool-call block of DeepSeek V4 for a choice of tools: tools_json
 * is an OpenAI "tools" array; only_name (or NULL) restricts to one function.
 * The grammar produces "\n\n<｜DSML｜tool_calls>\n" + one invoke whose
 * parameters follow each function's JSON schema + "</｜DSML｜tool_calls>".
 * With allow_text, free text (no '<') may come first and the tool block is
 * optional (tool_choice auto with strict tools). */
grammar *grammar_dsml_tools(const char *tools_json, const char *only_name, int allow_text,
                            char *err, size_t errlen);

/* Put "reasoning (no '<') + </think>" before the grammar's language, for
 * thinking mode, whose output starts inside the reasoning. */
int grammar_add_thinking_prefix(grammar *g, char *err, size_t errlen);

void grammar_free(grammar *g);

/* ---- vocabulary -------------------------------------------------------- */

/* Token bytes accessor: returns the bytes of id (NULL = never allowed). */
typedef const char *(*gvocab_bytes_fn)(void *ud, int32_t id, size_t *len);

/* Build the trie over ids [0, n_vocab) (tokens with NULL or empty bytes are
 * left out), eos = the end-of-sequence id allowed when the grammar is
 * complete. */
gvocab *gvocab_new(int n_vocab, gvocab_bytes_fn fn, void *ud, int32_t eos);
void gvocab_free(gvocab *v);
int gvocab_size(const gvocab *v);

/* ---- matching ---------------------------------------------------------- */

gmatcher *gmatcher_new(const grammar *g, const gvocab *v);
void gmatcher_free(gmatcher *m);
/* Allowed-token bitmask (n_vocab bits, bit i of mask[i/64]) for the next
 * token; budget = tokens the caller may still generate (including EOS), or
 * <= 0 for no limit.  Returns the number of allowed ids. */
int gmatcher_mask(gmatcher *m, int budget, uint64_t *mask);
/* Consume a token; returns 0, or -1 if it is not allowed here. */
int gmatcher_accept(gmatcher *m, int32_t id);
/* Consume raw bytes (tests); 0 or -1. */
int gmatcher_accept_bytes(gmatcher *m, const char *s, size_t n);
/* 1 when the grammar is complete (EOS allowed), 2 when complete and nothing
 * may follow, 0 otherwise. */
int gmatcher_done(const gmatcher *m);
/* Minimum number of bytes still needed to complete. */
int gmatcher_distance(const gmatcher *m);
/* Mask-cache statistics (for benchmarks). */
void gmatcher_stats(const gmatcher *m, long *masks, long *cache_hits);

#endif
