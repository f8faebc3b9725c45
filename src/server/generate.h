/*
 * generate.h - one generation, shared by the HTTP server and `dsv4 run` /
 * `dsv4 chat`.
 *
 * gen_model bundles what every generation needs: the engine, the tokenizer,
 * the special ids, the allowed-token mask used when no grammar applies
 * (plain text, no stray special tokens) and the vocabulary trie for
 * grammars (built on first use).
 *
 * A gen_session turns logits into output: it samples (under the grammar's
 * mask if any), detokenises incrementally (whole UTF-8 characters), applies
 * stop strings (holding back text that could start one), and parses the
 * text with the incremental DSML parser into reasoning / content /
 * tool-call events, delivered through a callback.  The caller owns the
 * engine calls (one sequence in the CLI, a batch in the server scheduler).
 */
#ifndef DSV4_SERVER_GENERATE_H
#define DSV4_SERVER_GENERATE_H
#include <pthread.h>
#include <stdint.h>

#include "dsv4.h"
#include "server/grammar.h"

typedef struct gen_model {
    dsv4_model *model;
    dsv4_tokenizer *tok;
    int vocab;                 /* logits per position */
    int n_ctx;                 /* context per sequence */
    int32_t bos, eos, think_start, think_end, dsml, user;
    uint64_t *text_mask;       /* ids allowed without a grammar */
    gvocab *gv;                /* lazily built (gen_model_gvocab) */
    pthread_mutex_t mu;
    char id[128];              /* model name served by the API */
    char dir[1024];
} gen_model;

/* arg, or the built-in default model's directory (generated on first use)
 * when arg is NULL/empty.  Returns 0 or -1 + err. */
int gen_resolve_model_dir(const char *arg, char *out, size_t outlen, char *err, size_t errlen);

/* Load model + tokenizer (dir/tokenizer.json, or the built-in DeepSeek
 * tokenizer when the vocabulary matches).  n_ctx 0 = 4096 (capped to
 * max_position_embeddings). */
int gen_model_open(gen_model *gm, const char *dir, int n_ctx, int n_threads,
                   char *err, size_t errlen);
void gen_model_close(gen_model *gm);
const gvocab *gen_model_gvocab(gen_model *gm);

/* Tokenise with special tokens recognised (rendered prompts). */
int gen_tokenize(gen_model *gm, const char *text, int32_t **ids, int *n);

typedef enum {
    GEN_RUNNING = 0,
    GEN_STOP,          /* EOS, a stop string, or the grammar completed */
    GEN_LENGTH,        /* max_tokens or context */
    GEN_TOOL_CALLS,    /* EOS after tool calls */
    GEN_ERROR,
    GEN_CANCELLED
} gen_finish;

const char *gen_finish_openai(gen_finish f);     /* "stop", "length", ... */
const char *gen_finish_anthropic(gen_finish f);  /* "end_turn", ... */

typedef struct gen_params {
    dsv4_sampler_params sp;
    int max_tokens;
    const char *const *stop;   /* stop strings (copied) */
    int n_stop;
    int thinking;              /* output starts inside the reasoning */
    int raw;                   /* no DSML parsing: all text is content */
    int allow_tools;           /* tools offered: the DSML marker may be sampled */
    grammar *grammar;          /* or NULL; ownership passes to the session */
} gen_params;

typedef struct gen_session gen_session;

/* cb receives DSV4_EV_* events (raw mode: DSV4_EV_CONTENT only). */
gen_session *gen_new(gen_model *gm, const gen_params *p, dsv4_dsml_cb cb, void *user);
void gen_free(gen_session *s);

/* Consume the logits of the last fed position: sample, emit text.
 * Returns the id to feed next, or -1 when the generation is over
 * (gen_reason says why; every event has been delivered). */
int32_t gen_step(gen_session *s, const float *logits);
/* End early (cancel, context full, engine error): flush and set reason. */
void gen_end(gen_session *s, gen_finish why);

gen_finish gen_reason(const gen_session *s);
int gen_n_tokens(const gen_session *s);          /* sampled ids, EOS included */
const int32_t *gen_tokens(const gen_session *s);
int gen_n_tool_calls(const gen_session *s);
/* The matched stop string, or NULL. */
const char *gen_stop_string(const gen_session *s);
/* Seconds spent computing grammar masks (for metrics and reports). */
double gen_mask_seconds(const gen_session *s);

#endif
