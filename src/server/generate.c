/*
 * generate.c - gen_model (engine + tokenizer + masks) and gen_session (one
 * generation: sample, detokenise, stop strings, DSML events).  See
 * generate.h.
 */
#include "server/generate.h"
#include "format/gguf_model.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/util.h"

/* The built-in default model lives with the checkpoint generator; builds
 * without it still serve explicit model directories. */
#if defined(__has_include)
#if __has_include("model/gen.h")
#include "model/gen.h"
#define HAVE_DEFAULT_MODEL 1
#endif
#endif

int gen_resolve_model_dir(const char *arg, char *out, size_t outlen, char *err, size_t errlen) {
    if (arg && *arg) {
        snprintf(out, outlen, "%s", arg);
        return 0;
    }
#ifdef HAVE_DEFAULT_MODEL
    return dsv4_default_model_dir(out, outlen, err, errlen);
#else
    (void)out; (void)outlen;
    return errf(err, errlen, "no -m given and this build has no built-in default model");
#endif
}

/* ------------------------------------------------------------------------ */
/* Model                                                                     */
/* ------------------------------------------------------------------------ */

static int32_t special_id(dsv4_tokenizer *t, const char *s) { return dsv4_token_id(t, s); }

static void mask_set(uint64_t *m, int32_t id) {
    if (id >= 0) m[id >> 6] |= 1ull << (id & 63);
}

int gen_model_open(gen_model *gm, const char *dir, int n_ctx, int n_threads,
                   char *err, size_t errlen) {
    memset(gm, 0, sizeof *gm);
    pthread_mutex_init(&gm->mu, NULL);
    snprintf(gm->dir, sizeof gm->dir, "%s", dir);
    gm->model = dsv4_model_load(dir, err, errlen);
    if (!gm->model) return -1;
    dsv4_model_prefault(gm->model);
    if (n_threads > 0) dsv4_model_set_threads(gm->model, n_threads);
    const dsv4_config *c = dsv4_model_config(gm->model);
    char path[2048];
    path_join(path, sizeof path, dir, "tokenizer.json");
    size_t dl = strlen(dir);
    if (dl > 5 && !strcmp(dir + dl - 5, ".gguf")) {
        /* a single .gguf file carries its own vocabulary (tokenizer.ggml.*) */
        gm->tok = gguf_tokenizer_load(dir, err, errlen);
    } else
#ifdef HAVE_DEFAULT_MODEL
    /* no tokenizer.json: the DeepSeek tokenizer built into the binary */
    if (access(path, R_OK) != 0)
        gm->tok = dsv4_tokenizer_load_mem((const char *)dsv4_tokenizer_json, (size_t)dsv4_tokenizer_json_len, err, errlen);
    else
#endif
        gm->tok = dsv4_tokenizer_load(path, err, errlen);
    if (!gm->tok) { dsv4_model_free(gm->model); gm->model = NULL; return -1; }
    gm->vocab = c->vocab_size;
    if (dsv4_tokenizer_vocab_size(gm->tok) > gm->vocab) {
        errf(err, errlen, "tokenizer has %d ids but the model only %d", dsv4_tokenizer_vocab_size(gm->tok), gm->vocab);
        gen_model_close(gm);
        return -1;
    }
    long maxpos = c->max_position_embeddings > 0 ? c->max_position_embeddings : 4096;
    gm->n_ctx = n_ctx > 0 ? n_ctx : 4096;
    if (gm->n_ctx > maxpos) gm->n_ctx = (int)maxpos;
    gm->bos = c->bos_token_id;
    gm->eos = c->eos_token_id;
    gm->think_start = special_id(gm->tok, "<think>");
    gm->think_end = special_id(gm->tok, "</think>");
    gm->dsml = special_id(gm->tok, "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c");
    gm->user = special_id(gm->tok, "<\xef\xbd\x9c" "User" "\xef\xbd\x9c>");
    /* Text mask: ordinary tokens, EOS, and the specials the output format
     * uses; never BOS, role markers or placeholders. */
    int words = (gm->vocab + 63) / 64;
    gm->text_mask = xcalloc((size_t)words, sizeof *gm->text_mask);
    int tv = dsv4_tokenizer_vocab_size(gm->tok);
    for (int32_t i = 0; i < tv; i++) {
        size_t len;
        if (!dsv4_token_is_special(gm->tok, i) && dsv4_token_bytes(gm->tok, i, &len) && len) mask_set(gm->text_mask, i);
    }
    mask_set(gm->text_mask, gm->eos);
    /* model id: the directory's last component */
    const char *base = dir + strlen(dir);
    while (base > dir && base[-1] == '/') base--;
    const char *end = base;
    while (base > dir && base[-1] != '/') base--;
    snprintf(gm->id, sizeof gm->id, "%.*s", (int)(end - base), base);
    if (!gm->id[0]) snprintf(gm->id, sizeof gm->id, "dsv4");
    return 0;
}

void gen_model_close(gen_model *gm) {
    gvocab_free(gm->gv);
    free(gm->text_mask);
    dsv4_tokenizer_free(gm->tok);
    dsv4_model_free(gm->model);
    pthread_mutex_destroy(&gm->mu);
    memset(gm, 0, sizeof *gm);
}

typedef struct { gen_model *gm; } vocab_ud;

/* Token bytes for grammar matching: ordinary tokens, plus the specials that
 * grammar literals spell (</think>, ｜DSML｜). */
static const char *grammar_token_bytes(void *ud, int32_t id, size_t *len) {
    gen_model *gm = ud;
    if (id >= dsv4_tokenizer_vocab_size(gm->tok)) return NULL;
    if (dsv4_token_is_special(gm->tok, id) && id != gm->think_end && id != gm->dsml) return NULL;
    return dsv4_token_bytes(gm->tok, id, len);
}

const gvocab *gen_model_gvocab(gen_model *gm) {
    pthread_mutex_lock(&gm->mu);
    if (!gm->gv) gm->gv = gvocab_new(gm->vocab, grammar_token_bytes, gm, gm->eos);
    pthread_mutex_unlock(&gm->mu);
    return gm->gv;
}

int gen_tokenize(gen_model *gm, const char *text, int32_t **ids, int *n) {
    size_t nn = 0;
    if (dsv4_tokenize(gm->tok, text, strlen(text), ids, &nn)) return -1;
    *n = (int)nn;
    return 0;
}

const char *gen_finish_openai(gen_finish f) {
    switch (f) {
    case GEN_LENGTH: return "length";
    case GEN_TOOL_CALLS: return "tool_calls";
    default: return "stop";
    }
}

const char *gen_finish_anthropic(gen_finish f) {
    switch (f) {
    case GEN_LENGTH: return "max_tokens";
    case GEN_TOOL_CALLS: return "tool_use";
    default: return "end_turn";
    }
}

/* ------------------------------------------------------------------------ */
/* Session                                                                   */
/* ------------------------------------------------------------------------ */

struct gen_session {
    gen_model *gm;
    gen_params p;
    char **stop;
    dsv4_sampler *sampler;
    gmatcher *matcher;
    uint64_t *mask;
    uint64_t *text_mask;       /* this session's mask without a grammar */
    dsv4_detok_stream *detok;
    dsv4_dsml_stream *dsml;
    dsv4_dsml_cb cb;
    void *user;
    strbuf pending;            /* text held back for stop strings */
    size_t max_stop;
    int32_t *toks;
    int n_toks, cap_toks;
    int n_tool_calls;
    const char *stop_hit;
    gen_finish reason;
    double mask_sec;
};

gen_session *gen_new(gen_model *gm, const gen_params *p, dsv4_dsml_cb cb, void *user) {
    gen_session *s = xcalloc(1, sizeof *s);
    s->gm = gm;
    s->p = *p;
    s->cb = cb;
    s->user = user;
    if (p->n_stop) {
        s->stop = xcalloc((size_t)p->n_stop, sizeof *s->stop);
        for (int i = 0; i < p->n_stop; i++) {
            s->stop[i] = xstrdup(p->stop[i]);
            if (strlen(s->stop[i]) > s->max_stop) s->max_stop = strlen(s->stop[i]);
        }
    }
    s->p.stop = NULL;
    s->sampler = dsv4_sampler_new(&p->sp, gm->vocab);
    s->mask = xmalloc((size_t)((gm->vocab + 63) / 64) * sizeof *s->mask);
    if (p->grammar) s->matcher = gmatcher_new(p->grammar, gen_model_gvocab(gm));
    /* Without a grammar: plain text, plus </think> while reasoning (once)
     * and the DSML marker when tools were offered; stray special tokens
     * would only make the output unparseable. */
    size_t words = (size_t)((gm->vocab + 63) / 64);
    s->text_mask = xmalloc(words * sizeof *s->text_mask);
    memcpy(s->text_mask, gm->text_mask, words * sizeof *s->text_mask);
    if (p->thinking && !p->raw) mask_set(s->text_mask, gm->think_end);
    if (p->allow_tools && !p->raw) mask_set(s->text_mask, gm->dsml);
    s->detok = dsv4_detok_stream_new(gm->tok);
    if (!p->raw) s->dsml = dsv4_dsml_stream_new(p->thinking, cb, user);
    return s;
}

void gen_free(gen_session *s) {
    if (!s) return;
    for (int i = 0; i < s->p.n_stop; i++) free(s->stop[i]);
    free(s->stop);
    dsv4_sampler_free(s->sampler);
    gmatcher_free(s->matcher);
    grammar_free(s->p.grammar);
    free(s->mask);
    free(s->text_mask);
    dsv4_detok_stream_free(s->detok);
    dsv4_dsml_stream_free(s->dsml);
    free(s->pending.p);
    free(s->toks);
    free(s);
}

/* Text that is final (after stop-string processing) goes to the parser. */
static void deliver(gen_session *s, const char *text, size_t len) {
    if (!len) return;
    if (s->dsml) { dsv4_dsml_stream_feed(s->dsml, text, len); return; }
    dsv4_dsml_event ev;
    memset(&ev, 0, sizeof ev);
    ev.kind = DSV4_EV_CONTENT;
    ev.text = text;
    ev.len = len;
    s->cb(s->user, &ev);
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 if invalid. */
static size_t utf8_seq(const unsigned char *p, size_t n) {
    unsigned c = p[0];
    size_t len;
    unsigned lo = 0x80, hi = 0xBF;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    if (n < len || p[1] < lo || p[1] > hi) return 0;
    for (size_t i = 2; i < len; i++) if (p[i] < 0x80 || p[i] > 0xBF) return 0;
    return len;
}

/* Invalid UTF-8 (a random model can emit lone byte tokens) becomes U+FFFD,
 * so every consumer gets valid text (JSON encoders refuse anything else). */
static char *sanitize_utf8(const char *t, size_t n, size_t *out_len) {
    char *o = xmalloc(n * 3 + 1);
    size_t k = 0;
    for (size_t i = 0; i < n;) {
        size_t l = utf8_seq((const unsigned char *)t + i, n - i);
        if (l) { memcpy(o + k, t + i, l); k += l; i += l; }
        else { memcpy(o + k, "\xEF\xBF\xBD", 3); k += 3; i++; }
    }
    o[k] = 0;
    *out_len = k;
    return o;
}

/* Append text; release what can no longer be the start of a stop string.
 * Returns 1 when a stop string matched (text before it delivered). */
static int push_text_valid(gen_session *s, const char *text, size_t len, int final);

static int push_text(gen_session *s, const char *text, size_t len, int final) {
    size_t n;
    char *clean = sanitize_utf8(text, len, &n);
    int rc = push_text_valid(s, clean, n, final);
    free(clean);
    return rc;
}

static int push_text_valid(gen_session *s, const char *text, size_t len, int final) {
    if (!s->p.n_stop) { deliver(s, text, len); return 0; }
    strbuf_add(&s->pending, text, len);
    /* earliest stop string occurrence */
    size_t best = (size_t)-1;
    for (int i = 0; i < s->p.n_stop; i++) {
        size_t sl = strlen(s->stop[i]);
        if (!sl) continue;
        char *hit = memmem(s->pending.p, s->pending.n, s->stop[i], sl);
        if (hit && (size_t)(hit - s->pending.p) < best) { best = (size_t)(hit - s->pending.p); s->stop_hit = s->stop[i]; }
    }
    if (best != (size_t)-1) {
        deliver(s, s->pending.p, best);
        s->pending.n = 0;
        return 1;
    }
    /* keep the longest suffix that is a prefix of some stop string */
    size_t keep = 0;
    if (!final)
        for (int i = 0; i < s->p.n_stop; i++) {
            size_t sl = strlen(s->stop[i]);
            if (!sl) continue;
            for (size_t k = sl - 1; k > keep; k--)
                if (k <= s->pending.n && !memcmp(s->pending.p + s->pending.n - k, s->stop[i], k)) { keep = k; break; }
        }
    deliver(s, s->pending.p, s->pending.n - keep);
    memmove(s->pending.p, s->pending.p + s->pending.n - keep, keep);
    s->pending.n = keep;
    return 0;
}

static void finish(gen_session *s, gen_finish why) {
    if (s->reason != GEN_RUNNING) return;
    if (why != GEN_STOP || !s->stop_hit) {
        const char *out;
        size_t len;
        if (dsv4_detok_stream_flush(s->detok, &out, &len) == 0 && len && push_text(s, out, len, 1)) why = GEN_STOP;
        else push_text(s, "", 0, 1);
    }
    if (s->dsml) {
        s->n_tool_calls = dsv4_dsml_stream_finish(s->dsml);
        if (s->n_tool_calls < 0) s->n_tool_calls = 0;       /* malformed output */
    }
    if (why == GEN_STOP && s->n_tool_calls > 0) why = GEN_TOOL_CALLS;
    s->reason = why;
}

void gen_end(gen_session *s, gen_finish why) { finish(s, why); }

int32_t gen_step(gen_session *s, const float *logits) {
    if (s->reason != GEN_RUNNING) return -1;
    const uint64_t *mask = s->text_mask;
    if (s->matcher) {
        double t0 = now_sec();
        int budget = s->p.max_tokens - s->n_toks;
        int n = gmatcher_mask(s->matcher, budget, s->mask);
        s->mask_sec += now_sec() - t0;
        if (n <= 0) { finish(s, GEN_STOP); return -1; }
        mask = s->mask;
    }
    int32_t id = dsv4_sample(s->sampler, logits, mask);
    if (id < 0) { finish(s, GEN_ERROR); return -1; }
    if (s->n_toks == s->cap_toks) {
        s->cap_toks = s->cap_toks ? 2 * s->cap_toks : 256;
        s->toks = xrealloc(s->toks, (size_t)s->cap_toks * sizeof *s->toks);
    }
    s->toks[s->n_toks++] = id;
    if (id == s->gm->eos) { finish(s, GEN_STOP); return -1; }
    if (id == s->gm->think_end && id >= 0) s->text_mask[id >> 6] &= ~(1ull << (id & 63));
    if (s->matcher && gmatcher_accept(s->matcher, id)) { finish(s, GEN_ERROR); return -1; }
    const char *out;
    size_t len;
    if (dsv4_detok_stream_push(s->detok, id, &out, &len) == 0 && len && push_text(s, out, len, 0)) {
        finish(s, GEN_STOP);
        return -1;
    }
    /* A complete grammar that admits nothing more ends here, saving the
     * step that would only sample EOS. */
    if (s->matcher && gmatcher_done(s->matcher) == 2) { finish(s, GEN_STOP); return -1; }
    if (s->n_toks >= s->p.max_tokens) { finish(s, GEN_LENGTH); return -1; }
    return id;
}

gen_finish gen_reason(const gen_session *s) { return s->reason; }
int gen_n_tokens(const gen_session *s) { return s->n_toks; }
const int32_t *gen_tokens(const gen_session *s) { return s->toks; }
int gen_n_tool_calls(const gen_session *s) { return s->n_tool_calls; }
const char *gen_stop_string(const gen_session *s) { return s->stop_hit; }
double gen_mask_seconds(const gen_session *s) { return s->mask_sec; }
