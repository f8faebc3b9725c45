/*
 * test_chat.c - the DeepSeek-V4 chat encoder and DSML parser against the
 * official encoder's golden data (tests/data/chat), the incremental parser
 * against the full one on every golden case split at random points, and
 * the Python-compatible JSON layer (float repr, json.loads corner cases).
 */
#include <jansson.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "dsv4_chat.h"
#include "text/pyjson.h"

/* ------------------------------------------------------------- fixtures */

typedef struct {
    json_t **items;
    size_t n;
} jsonl;

static jsonl load_jsonl(const char *path) {
    jsonl l = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f) return l;
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) > 0) {
        json_error_t e;
        json_t *j = json_loadb(line, (size_t)len, 0, &e);
        if (!j) continue;
        l.items = realloc(l.items, (l.n + 1) * sizeof *l.items);
        l.items[l.n++] = j;
    }
    free(line);
    fclose(f);
    return l;
}

static void free_jsonl(jsonl *l) {
    for (size_t i = 0; i < l->n; i++) json_decref(l->items[i]);
    free(l->items);
}

static const char *name_of(json_t *c) { return json_string_value(json_object_get(c, "name")); }

/* ------------------------------------------------------------- encoder */

TEST(golden_encode_prompts) {
    jsonl l = load_jsonl(DATA("chat/golden-encode.jsonl"));
    CHECK(l.n == 68, "golden-encode.jsonl has %zu cases", l.n);
    for (size_t i = 0; i < l.n; i++) {
        json_t *c = l.items[i], *v;
        dsv4_chat_opts o;
        dsv4_chat_opts_default(&o);
        o.thinking = !strcmp(json_string_value(json_object_get(c, "thinking_mode")), "thinking");
        if ((v = json_object_get(c, "reasoning_effort"))) o.reasoning_effort = json_string_value(v);
        if ((v = json_object_get(c, "drop_thinking"))) o.drop_thinking = json_is_true(v);
        if ((v = json_object_get(c, "add_default_bos_token"))) o.add_default_bos_token = json_is_true(v);
        char *ctx = NULL;
        if ((v = json_object_get(c, "context"))) o.context_json = ctx = json_dumps(v, JSON_ENCODE_ANY);
        char *msgs = json_dumps(json_object_get(c, "messages"), JSON_ENCODE_ANY);
        char *prompt = NULL, err[512] = "";
        int rc = dsv4_chat_encode(msgs, &o, &prompt, err, sizeof err);
        const char *want = json_string_value(json_object_get(c, "prompt"));
        CHECK(rc == 0 && prompt && !strcmp(prompt, want), "%s: prompt differs (%s)", name_of(c), err);
        free(prompt);
        free(msgs);
        free(ctx);
    }
    free_jsonl(&l);
}

static char *encode(const char *msgs, int thinking, const char *tools, char *err, size_t errlen) {
    dsv4_chat_opts o;
    dsv4_chat_opts_default(&o);
    o.thinking = thinking;
    o.tools_json = tools;
    char *prompt = NULL;
    err[0] = 0;
    if (dsv4_chat_encode(msgs, &o, &prompt, err, errlen) < 0) return NULL;
    return prompt;
}

/* Cases beyond the golden file; expected text from the official encoder. */
TEST(encode_python_semantics) {
    char err[1024];
    char *p;
    /* A dict-valued tool result is formatted with str(): Python's repr. */
    p = encode("[{\"role\":\"user\",\"content\":\"q\"},{\"role\":\"assistant\",\"content\":\"\","
               "\"tool_calls\":[{\"id\":\"c\",\"type\":\"function\",\"function\":{\"name\":\"f\","
               "\"arguments\":{\"x\":1.0}}}]},{\"role\":\"tool\",\"tool_call_id\":\"c\","
               "\"content\":{\"ok\":true,\"v\":[null,\"it's\"]}}]",
               0, NULL, err, sizeof err);
    CHECK(p && !strcmp(p, "<｜begin▁of▁sentence｜><｜User｜>q<｜Assistant｜></think>\n\n<｜DSML｜tool_calls>\n"
                          "<｜DSML｜invoke name=\"f\">\n<｜DSML｜parameter name=\"arguments\" string=\"false\">"
                          "{\"x\": 1.0}</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>"
                          "<｜end▁of▁sentence｜><｜User｜><tool_result>{'ok': True, 'v': [None, \"it's\"]}"
                          "</tool_result><｜Assistant｜></think>"),
          "repr of a dict tool result / non-string arguments: %s", p ? p : err);
    free(p);
    /* Floats and big integers in arguments go through json.loads/dumps. */
    p = encode("[{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"type\":\"function\","
               "\"function\":{\"name\":\"g\",\"arguments\":\"{\\\"a\\\": 1e16, \\\"b\\\": 0.00001, "
               "\\\"c\\\": 123456789012345678901234567890, \\\"d\\\": -0, \\\"e\\\": 1E400, \\\"a\\\": 2.50}\"}}]}]",
               0, NULL, err, sizeof err);
    CHECK(p && strstr(p, "name=\"a\" string=\"false\">2.5<") && strstr(p, "name=\"b\" string=\"false\">1e-05<") &&
              strstr(p, ">123456789012345678901234567890<") && strstr(p, "name=\"d\" string=\"false\">0<") &&
              strstr(p, ">Infinity<") && strstr(p, "\"a\"") < strstr(p, "\"b\""),
          "json.loads/dumps numbers: %s", p ? p : err);
    free(p);
    /* Errors the official encoder raises. */
    p = encode("[{\"role\":\"developer\",\"content\":\"\"}]", 0, NULL, err, sizeof err);
    CHECK(!p && !strcmp(err, "AssertionError: Invalid message for role `developer`: {'role': 'developer', 'content': ''}"),
          "developer without content: %s", err);
    free(p);
    p = encode("[{\"role\":\"robot\",\"content\":\"x\"}]", 0, NULL, err, sizeof err);
    CHECK(!p && !strcmp(err, "NotImplementedError: Unknown role: robot"), "unknown role: %s", err);
    free(p);
    p = encode("[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"x\"}]}]", 0, NULL, err, sizeof err);
    CHECK(!p && !strcmp(err, "TypeError: sequence item 0: expected str instance, list found"),
          "list user content: %s", err);
    free(p);
    p = encode("[{\"role\":\"assistant\",\"tool_calls\":[{\"function\":{\"name\":\"f\"}}]}]", 0, NULL, err, sizeof err);
    CHECK(!p && !strcmp(err, "KeyError: 'arguments'"), "missing arguments: %s", err);
    free(p);
    p = encode("{\"role\":\"user\"", 0, NULL, err, sizeof err);
    CHECK(!p && !strncmp(err, "JSONDecodeError", 15), "bad JSON: %s", err);
    free(p);
    /* Request-level tools land on a (new) leading system message. */
    p = encode("[{\"role\":\"user\",\"content\":\"hi\"}]", 1,
               "[{\"type\":\"function\",\"function\":{\"name\":\"t\",\"parameters\":{}}}]", err, sizeof err);
    CHECK(p && !strncmp(p, "<｜begin▁of▁sentence｜>\n\n## Tools\n\n", strlen("<｜begin▁of▁sentence｜>\n\n## Tools\n\n")) &&
              strstr(p, "{\"name\": \"t\", \"parameters\": {}}\n\nYou MUST strictly follow") &&
              strstr(p, "<｜User｜>hi<｜Assistant｜><think>"),
          "tools_json: %s", p ? p : err);
    free(p);
}

/* -------------------------------------------------------------- parser */

TEST(golden_parse_results) {
    jsonl l = load_jsonl(DATA("chat/golden-parse.jsonl"));
    CHECK(l.n == 43, "golden-parse.jsonl has %zu cases", l.n);
    static const char *const order[] = {"role", "content", "reasoning_content", "tool_calls"};
    for (size_t i = 0; i < l.n; i++) {
        json_t *c = l.items[i];
        json_t *text = json_object_get(c, "text");
        int thinking = !strcmp(json_string_value(json_object_get(c, "thinking_mode")), "thinking");
        char *res = NULL, type[64] = "", err[4096] = "";
        int rc = dsv4_dsml_parse(json_string_value(text), json_string_length(text), thinking, &res,
                                 type, sizeof type, err, sizeof err);
        json_t *want = json_object_get(c, "result");
        if (want) {
            json_t *got = res ? json_loads(res, 0, NULL) : NULL;
            CHECK(rc == 0 && got && json_equal(got, want), "%s: result %s", name_of(c), res ? res : err);
            size_t k = 0;
            for (void *it = got ? json_object_iter(got) : NULL; it; it = json_object_iter_next(got, it), k++)
                CHECK(k < 4 && !strcmp(json_object_iter_key(it), order[k]), "%s: key order", name_of(c));
            json_decref(got);
        } else {
            json_t *e = json_object_get(c, "error");
            CHECK(rc < 0 && !strcmp(type, json_string_value(json_object_get(e, "type"))) &&
                      !strcmp(err, json_string_value(json_object_get(e, "message"))),
                  "%s: error %s: %s", name_of(c), type, err);
        }
        free(res);
    }
    free_jsonl(&l);
}

/* ------------------------------------------------------- stream parser */

typedef struct {
    pjbuf reasoning, content, err_type, err_msg;
    pjbuf names[16], args[16];
    int started, ended, errors, bad_order, after_error;
} collected;

static void collect(void *user, const dsv4_dsml_event *ev) {
    collected *c = user;
    if (c->errors) c->after_error++;
    switch (ev->kind) {
    case DSV4_EV_REASONING: pjb_putn(&c->reasoning, ev->text, ev->len); break;
    case DSV4_EV_CONTENT: pjb_putn(&c->content, ev->text, ev->len); break;
    case DSV4_EV_TOOL_START:
        if (ev->index != c->started || c->ended != c->started || ev->index >= 16) { c->bad_order++; break; }
        pjb_putn(&c->names[ev->index], ev->name, ev->name_len);
        pjb_putn(&c->args[ev->index], "", 0);
        c->started++;
        break;
    case DSV4_EV_TOOL_ARGS:
        if (ev->index != c->started - 1 || c->ended != c->started - 1) { c->bad_order++; break; }
        pjb_putn(&c->args[ev->index], ev->text, ev->len);
        break;
    case DSV4_EV_TOOL_END:
        if (ev->index != c->started - 1 || c->ended != c->started - 1) { c->bad_order++; break; }
        c->ended++;
        break;
    case DSV4_EV_ERROR:
        c->errors++;
        pjb_putn(&c->err_type, ev->name, ev->name_len);
        pjb_putn(&c->err_msg, ev->text, ev->len);
        break;
    }
}

static void collected_free(collected *c) {
    pjb_free(&c->reasoning); pjb_free(&c->content); pjb_free(&c->err_type); pjb_free(&c->err_msg);
    for (int i = 0; i < 16; i++) { pjb_free(&c->names[i]); pjb_free(&c->args[i]); }
}

static int buf_is(const pjbuf *b, const char *s) {
    size_t n = s ? strlen(s) : 0;
    return b->len == n && (!n || !memcmp(b->p, s, n));
}

#define FEED(s, lit) dsv4_dsml_stream_feed(s, lit, strlen(lit))

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rng(void) {
    rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
    return rng_state;
}

/* Feed text in pieces (mode 0: whole, 1: byte by byte, else random sizes)
 * and compare the collected events with the golden case. */
static void check_stream(json_t *c, int mode) {
    json_t *text = json_object_get(c, "text");
    const char *t = json_string_value(text);
    size_t n = json_string_length(text);
    int thinking = !strcmp(json_string_value(json_object_get(c, "thinking_mode")), "thinking");
    collected col;
    memset(&col, 0, sizeof col);
    dsv4_dsml_stream *s = dsv4_dsml_stream_new(thinking, collect, &col);
    for (size_t i = 0; i < n;) {
        size_t k = mode == 0 ? n : mode == 1 ? 1 : 1 + rng() % 12;
        if (k > n - i) k = n - i;
        dsv4_dsml_stream_feed(s, t + i, k);
        i += k;
    }
    int ncalls = dsv4_dsml_stream_finish(s);
    json_t *want = json_object_get(c, "result");
    if (want) {
        json_t *calls = json_object_get(want, "tool_calls");
        int ok = ncalls == (int)json_array_size(calls) && col.started == ncalls && col.ended == ncalls &&
                 !col.errors && !col.bad_order &&
                 buf_is(&col.reasoning, json_string_value(json_object_get(want, "reasoning_content"))) &&
                 buf_is(&col.content, json_string_value(json_object_get(want, "content")));
        for (int i = 0; ok && i < ncalls && i < 16; i++) {
            json_t *f = json_object_get(json_array_get(calls, (size_t)i), "function");
            ok = buf_is(&col.names[i], json_string_value(json_object_get(f, "name"))) &&
                 buf_is(&col.args[i], json_string_value(json_object_get(f, "arguments")));
        }
        const char *res = dsv4_dsml_stream_result(s);
        json_t *got = res ? json_loads(res, 0, NULL) : NULL;
        CHECK(ok && got && json_equal(got, want), "%s (split mode %d): stream events differ from the result",
              name_of(c), mode);
        json_decref(got);
    } else {
        json_t *e = json_object_get(c, "error");
        CHECK(ncalls < 0 && col.errors == 1 && !col.after_error &&
                  buf_is(&col.err_type, json_string_value(json_object_get(e, "type"))) &&
                  buf_is(&col.err_msg, json_string_value(json_object_get(e, "message"))) &&
                  !dsv4_dsml_stream_result(s),
              "%s (split mode %d): expected the parser's error", name_of(c), mode);
    }
    dsv4_dsml_stream_free(s);
    collected_free(&col);
}

TEST(stream_matches_full_parse) {
    jsonl l = load_jsonl(DATA("chat/golden-parse.jsonl"));
    for (size_t i = 0; i < l.n; i++)
        for (int mode = 0; mode < 40; mode++) check_stream(l.items[i], mode);
    free_jsonl(&l);
}

/* Deltas come out as soon as they are certain: only a possible marker
 * prefix (or a cut UTF-8 character) is held back. */
TEST(stream_emits_early) {
    collected col;
    memset(&col, 0, sizeof col);
    dsv4_dsml_stream *s = dsv4_dsml_stream_new(1, collect, &col);
    FEED(s, "Let me think");
    CHECK(buf_is(&col.reasoning, "Let me think"), "reasoning released at once");
    FEED(s, ".</th");
    CHECK(buf_is(&col.reasoning, "Let me think."), "</th held back: '%.*s'", (int)col.reasoning.len, col.reasoning.p);
    FEED(s, "ink>Caf\xc3");
    CHECK(buf_is(&col.content, "Caf"), "cut UTF-8 held back: '%.*s'", (int)col.content.len, col.content.p);
    FEED(s, "\xa9 a<b\n");
    CHECK(buf_is(&col.content, "Café a<b"), "'<b' released, newline held: '%.*s'", (int)col.content.len, col.content.p);
    FEED(s, "\n<｜DSML｜tool_calls>\n<｜DSML｜invoke name=\"run\">\n<｜DSML｜parameter");
    CHECK(col.started == 1 && buf_is(&col.names[0], "run") && buf_is(&col.args[0], "{"),
          "tool start on the first parameter tag");
    FEED(s, " name=\"code\" string=\"true\">say \"hi\"");
    CHECK(buf_is(&col.args[0], "{\"code\": \"say \\\"hi\\\""), "string value streamed escaped: %.*s",
          (int)col.args[0].len, col.args[0].p);
    FEED(s, "<");
    CHECK(buf_is(&col.args[0], "{\"code\": \"say \\\"hi\\\""), "'<' held back");
    FEED(s, "/｜DSML｜parameter>\n<｜DSML｜parameter name=\"n\" string=\"false\">4");
    CHECK(buf_is(&col.args[0], "{\"code\": \"say \\\"hi\\\"\", \"n\": 4"), "raw value streamed: %.*s",
          (int)col.args[0].len, col.args[0].p);
    FEED(s, "2</｜DSML｜parameter>\n</｜DSML｜invoke>\n</｜DSML｜tool_calls>");
    CHECK(col.ended == 1 && buf_is(&col.args[0], "{\"code\": \"say \\\"hi\\\"\", \"n\": 42}"), "call ended");
    FEED(s, "<｜end▁of▁sentence｜>");
    CHECK(dsv4_dsml_stream_finish(s) == 1 && !col.errors && buf_is(&col.content, "Café a<b"), "finish");
    dsv4_dsml_stream_free(s);
    collected_free(&col);

    /* A special token in the content stops the deltas; finish reports it. */
    memset(&col, 0, sizeof col);
    s = dsv4_dsml_stream_new(0, collect, &col);
    FEED(s, "a <think> b");
    FEED(s, " c<｜end▁of▁sentence｜>");
    CHECK(col.content.len <= 2, "no content delta from <think> on");
    CHECK(dsv4_dsml_stream_finish(s) < 0 && col.errors == 1 &&
              buf_is(&col.err_msg, "Unexpected special token '<think>' in content"),
          "error at finish: %.*s", (int)col.err_msg.len, col.err_msg.p);
    dsv4_dsml_stream_free(s);
    collected_free(&col);
}

/* ------------------------------------------------------------ pyjson */

static int dumps_is(const char *json_in, const char *want) {
    pj_arena *a = pj_arena_new();
    char err[256];
    pj *v = pj_parse(a, json_in, strlen(json_in), err, sizeof err);
    pjbuf b;
    pjb_init(&b);
    if (v) pj_dumps(&b, v, 0);
    int ok = v && b.p && !strcmp(b.p, want);
    if (!ok) fprintf(stderr, "  dumps(%s) = %s, want %s\n", json_in, v ? b.p : err, want);
    pjb_free(&b);
    pj_arena_free(a);
    return ok;
}

TEST(pyjson_matches_python) {
    /* float repr: shortest round trip, exponent outside 1e-4 .. 1e16 */
    CHECK(dumps_is("[1.0, 0.1, 1e16, 9999999999999998.0, 0.0001, 0.00001, 1.5e-7, -0.0, 2.50, 1E400, -1e400]",
                   "[1.0, 0.1, 1e+16, 9999999999999998.0, 0.0001, 1e-05, 1.5e-07, -0.0, 2.5, Infinity, -Infinity]"),
          "float repr");
    CHECK(dumps_is("[123456789012345678901234567890, -0, 0, NaN, 5e-324, 1.7976931348623157e308]",
                   "[123456789012345678901234567890, 0, 0, NaN, 5e-324, 1.7976931348623157e+308]"),
          "ints and extremes");
    CHECK(dumps_is("{\"a\": 1, \"b\": 2, \"a\": 3}", "{\"a\": 3, \"b\": 2}"), "duplicate keys: first place, last value");
    CHECK(dumps_is("\"\\ud83d\\ude00 \\u00e9 \\u2028 \\u0001 \\\"\\\\/\"", "\"😀 é \xe2\x80\xa8 \\u0001 \\\"\\\\/\""),
          "string escapes (ensure_ascii=False)");
    CHECK(dumps_is(" {\"k\" : [ true , false , null ] } ", "{\"k\": [true, false, null]}"), "separators");
    pj_arena *a = pj_arena_new();
    char err[256];
    static const char *const bad[] = {"", "01", "1.", "[1,]", "{\"a\":1,}", "\"\x01\"", "[1] x", "nul", "\"\\x\""};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        CHECK(!pj_parse(a, bad[i], strlen(bad[i]), err, sizeof err), "json.loads rejects '%s'", bad[i]);
    const char *in = "{\"s\": \"it's\", \"t\": \"a'\\\"b\", \"u\": \"\\u0085\\u00a0x\\n\"}";
    pj *v = pj_parse(a, in, strlen(in), err, sizeof err);
    pjbuf b;
    pjb_init(&b);
    if (v) pj_repr(&b, v);
    CHECK(v && !strcmp(b.p, "{'s': \"it's\", 't': 'a\\'\"b', 'u': '\\x85\\xa0x\\n'}"), "repr: %s", b.p ? b.p : err);
    pjb_free(&b);
    pj_arena_free(a);
}

int main(void) {
    RUN(golden_encode_prompts);
    RUN(encode_python_semantics);
    RUN(golden_parse_results);
    RUN(stream_matches_full_parse);
    RUN(stream_emits_early);
    RUN(pyjson_matches_python);
    return check_summary();
}
