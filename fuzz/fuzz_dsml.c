/* fuzz_dsml.c - libFuzzer harness for the chat module.
 *
 * The first input byte picks the target:
 *   bits 0-1  0: DSML parser on the raw bytes
 *             1: DSML parser on text assembled from marker pieces (each
 *                byte picks a piece: </think>, "\n\n<｜DSML｜tool_calls",
 *                invoke/parameter tags, attributes, EOS, ...), which reaches
 *                deep into the tool-call grammar
 *             2: chat encoder on the bytes as a messages JSON array
 *             3: Python-JSON layer: parse, dump, parse again, dump again
 *   bit 2     thinking mode
 *   bits 3-7  seed of the split points for the stream parser / options
 *
 * The parser targets run the full parser and the stream parser (fed in
 * pieces split at pseudo-random points) and abort when they disagree: an
 * accepted output must give the same reasoning, content, and tool calls
 * (names and argument strings) through the stream events, and a rejected
 * one exactly one ERROR event with the full parser's message.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4_chat.h"
#include "text/chat_internal.h"
#include "text/pyjson.h"

#define MAX_CALLS 64

typedef struct {
    pjbuf reasoning, content, names[MAX_CALLS], args[MAX_CALLS], err;
    int started, ended, errors, after_error, bad;
} collected;

static void collect(void *user, const dsv4_dsml_event *ev) {
    collected *c = user;
    if (c->errors) c->after_error++;
    switch (ev->kind) {
    case DSV4_EV_REASONING: pjb_putn(&c->reasoning, ev->text, ev->len); break;
    case DSV4_EV_CONTENT: pjb_putn(&c->content, ev->text, ev->len); break;
    case DSV4_EV_TOOL_START:
        if (ev->index != c->started || c->ended != c->started) c->bad = 1;
        else if (ev->index < MAX_CALLS) pjb_putn(&c->names[ev->index], ev->name, ev->name_len);
        c->started++;
        break;
    case DSV4_EV_TOOL_ARGS:
        if (ev->index != c->started - 1 || c->ended != c->started - 1) c->bad = 1;
        else if (ev->index < MAX_CALLS) pjb_putn(&c->args[ev->index], ev->text, ev->len);
        break;
    case DSV4_EV_TOOL_END:
        if (ev->index != c->started - 1 || c->ended != c->started - 1) c->bad = 1;
        c->ended++;
        break;
    case DSV4_EV_ERROR:
        c->errors++;
        pjb_putn(&c->err, ev->text, ev->len);
        break;
    }
}

static int same(const pjbuf *b, const pj *v) {
    return v && v->type == PJ_STR && b->len == v->len && (!b->len || !memcmp(b->p, v->s, b->len));
}

static void check_parser(const char *text, size_t n, int thinking, unsigned seed) {
    char *json = dsv4_dsml_parse_json(text, n, thinking);
    char *res = NULL, type[64], err[256];
    int rc = dsv4_dsml_parse(text, n, thinking, &res, type, sizeof type, err, sizeof err);
    pj_arena *a = pj_arena_new();
    char perr[128];
    pj *out = pj_parse(a, json, strlen(json), perr, sizeof perr);
    if (!out) abort();                                 /* not valid JSON */
    pj *result = pj_get(out, "result"), *error = pj_get(out, "error");
    if ((rc == 0) != (result != NULL)) abort();

    collected c;
    memset(&c, 0, sizeof c);
    dsv4_dsml_stream *s = dsv4_dsml_stream_new(thinking, collect, &c);
    uint32_t r = seed * 2654435761u + 1;
    for (size_t i = 0; i < n;) {
        r = r * 1103515245u + 12345u;
        size_t k = seed & 1 ? 1 : 1 + (r >> 16) % 9;
        if (k > n - i) k = n - i;
        dsv4_dsml_stream_feed(s, text + i, k);
        i += k;
    }
    int ncalls = dsv4_dsml_stream_finish(s);
    if (c.bad || c.after_error) abort();
    if (result) {
        pj *calls = pj_get(result, "tool_calls");
        if (c.errors || ncalls != (int)calls->n || c.started != ncalls || c.ended != ncalls) abort();
        if (!same(&c.reasoning, pj_get(result, "reasoning_content")) || !same(&c.content, pj_get(result, "content")))
            abort();
        for (size_t i = 0; i < calls->n && i < MAX_CALLS; i++) {
            pj *f = pj_get(calls->items[i], "function");
            if (!same(&c.names[i], pj_get(f, "name")) || !same(&c.args[i], pj_get(f, "arguments"))) abort();
        }
        if (!dsv4_dsml_stream_result(s) || strcmp(dsv4_dsml_stream_result(s), res)) abort();
    } else {
        if (c.errors != 1 || ncalls >= 0 || !same(&c.err, pj_get(error, "message"))) abort();
    }
    dsv4_dsml_stream_free(s);
    pjb_free(&c.reasoning); pjb_free(&c.content); pjb_free(&c.err);
    for (int i = 0; i < MAX_CALLS; i++) { pjb_free(&c.names[i]); pjb_free(&c.args[i]); }
    pj_arena_free(a);
    free(res);
    free(json);
}

static const char *const PIECES[] = {
    "</think>", "<think>", "\n\n<｜DSML｜tool_calls", ">\n", "<｜DSML｜invoke", " name=\"f\">\n",
    " name=\"g h\">\n\n", "</｜DSML｜invoke", "<｜DSML｜parameter", " name=\"a\" string=\"true\">",
    " name=\"b\" string=\"false\">", " string=\"true\">", "</｜DSML｜parameter", "/｜DSML｜parameter", "<",
    "<\n", "</｜DSML｜tool_calls>", "<｜end▁of▁sentence｜>", "<｜begin▁of▁sentence｜>", "｜DSML｜", "\n",
    "\n\n", "x", "hello ", "\"", "{\"k\": [1, 2.5]}", "é", "日本", "\xe3", "\r\n", "　", " name=\"a\" type=\"s\">",
};
#define N_PIECES (sizeof PIECES / sizeof PIECES[0])

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    unsigned mode = data[0] & 3, thinking = (data[0] >> 2) & 1, seed = data[0] >> 3;
    const char *body = (const char *)data + 1;
    size_t n = size - 1;
    if (mode == 0) {
        check_parser(body, n, (int)thinking, seed);
    } else if (mode == 1) {
        pjbuf t;
        pjb_init(&t);
        for (size_t i = 0; i < n; i++) pjb_puts(&t, PIECES[(unsigned char)body[i] % N_PIECES]);
        pjb_putn(&t, "", 0);
        check_parser(t.p, t.len, (int)thinking, seed);
        pjb_free(&t);
    } else if (mode == 2) {
        char *msgs = malloc(n + 1);
        memcpy(msgs, body, n);
        msgs[n] = 0;
        dsv4_chat_opts o;
        dsv4_chat_opts_default(&o);
        o.thinking = (int)thinking;
        o.drop_thinking = !(seed & 1);
        o.reasoning_effort = seed & 2 ? "max" : seed & 4 ? "high" : NULL;
        o.add_default_bos_token = !(seed & 8);
        if (seed & 16) o.tools_json = "[{\"type\": \"function\", \"function\": {\"name\": \"t\"}}]";
        char *prompt = NULL, err[256];
        if (dsv4_chat_encode(msgs, &o, &prompt, err, sizeof err) == 0 && !prompt) abort();
        free(prompt);
        /* the same conversation, half of it given as context */
        pj_arena *a = pj_arena_new();
        pj *v = pj_parse(a, msgs, n, err, sizeof err);
        if (v && v->type == PJ_LIST) {
            pj *ctx = pj_new(a, PJ_LIST), *rest = pj_new(a, PJ_LIST);
            for (size_t i = 0; i < v->n; i++) pj_list_append(a, i < v->n / 2 ? ctx : rest, v->items[i]);
            chat_values cv = {(int)thinking, !(seed & 1), 1, NULL, NULL};
            char *msg = NULL;
            if (chat_encode_values(a, rest, ctx, &cv, &prompt, NULL, &msg) == 0) free(prompt);
            else free(msg);
        }
        pj_arena_free(a);
        free(msgs);
    } else {
        pj_arena *a = pj_arena_new();
        char err[256];
        pj *v = pj_parse(a, body, n, err, sizeof err);
        if (v) {
            pjbuf b1, b2, r;
            pjb_init(&b1); pjb_init(&b2); pjb_init(&r);
            pj_dumps(&b1, v, seed & 1);
            pj_repr(&r, v);
            pj *w = pj_parse(a, b1.p, b1.len, err, sizeof err);
            if (!w) abort();                            /* dumps output must load */
            pj_dumps(&b2, w, seed & 1);
            /* and be stable (with ensure_ascii, input that is not UTF-8
             * maps distinct keys to the same \ufffd spelling) */
            if (!(seed & 1) && (b1.len != b2.len || memcmp(b1.p, b2.p, b1.len))) abort();
            pjb_free(&b1); pjb_free(&b2); pjb_free(&r);
        }
        pj_arena_free(a);
    }
    return 0;
}
