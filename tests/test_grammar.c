/*
 * test_grammar.c - the constrained-decoding grammar on a synthetic
 * vocabulary: schema compilation, byte acceptance, masks, and random walks
 * (a stand-in for a random-weight model) that must always end in output
 * that parses and validates within the token budget.
 */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "server/grammar.h"

/* Synthetic vocabulary: id 0 = EOS, ids 1..256 = single bytes, then a set
 * of multi-byte pieces like a BPE vocabulary has. */
static const char *pieces[] = {
    "{\"", "\":", "\": ", "\",", "\"}", "name", "age", "true", "false", "null",
    "tags", "red", "green", "blue", "\"]", "[\"", "12", "345", "0.", "e+",
    "hello", " world", "<", "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c", "invoke", "parameter",
    " name=\"", "\">\n", "</", "tool_calls", ">\n", "string=\"true\"", "\n\n", "},",
    "ab", "abc", "abcd", "\xc3\xa9", "\xe4\xb8\xad", "\xe4", "\xb8", "\\n", "\\\"", "  ", "\r\n",
};
#define N_PIECES (int)(sizeof pieces / sizeof pieces[0])
#define VOCAB (1 + 256 + N_PIECES)
static char bytes1[256];

static const char *vb(void *ud, int32_t id, size_t *len) {
    (void)ud;
    if (id >= 1 && id <= 256) { *len = 1; return &bytes1[id - 1]; }
    if (id > 256 && id < VOCAB) { *len = strlen(pieces[id - 257]); return pieces[id - 257]; }
    return NULL;
}

static gvocab *vocab(void) {
    for (int i = 0; i < 256; i++) bytes1[i] = (char)i;
    return gvocab_new(VOCAB, vb, NULL, 0);
}

static int accepts(grammar *g, gvocab *v, const char *s) {
    gmatcher *m = gmatcher_new(g, v);
    int ok = gmatcher_accept_bytes(m, s, strlen(s)) == 0 && gmatcher_done(m);
    gmatcher_free(m);
    return ok;
}

static uint64_t rng = 88172645463325252ull;
static uint32_t rnd(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return (uint32_t)rng; }

/* Random walk: pick uniformly among allowed tokens until EOS.  Returns the
 * generated text (malloc'd) or NULL if the walk got stuck / over budget. */
static char *random_walk(grammar *g, gvocab *v, int budget, int *n_tokens) {
    gmatcher *m = gmatcher_new(g, v);
    uint64_t mask[(VOCAB + 63) / 64];
    char *out = calloc(1, 65536);
    size_t len = 0;
    int steps = 0, ok = 0;
    for (; steps < budget; steps++) {
        int n = gmatcher_mask(m, budget - steps, mask);
        if (n <= 0) { if (getenv("GDEBUG")) fprintf(stderr, "empty mask after %d steps: %.*s\n", steps, (int)len, out); break; }
        int pick = (int)(rnd() % (uint32_t)n), id = -1;
        for (int i = 0; i < VOCAB; i++)
            if ((mask[i / 64] >> (i % 64)) & 1) { if (pick-- == 0) { id = i; break; } }
        if (id == 0) { ok = 1; steps++; break; }
        size_t tl = 0;
        const char *b = vb(NULL, id, &tl);
        if (gmatcher_accept(m, id) != 0) { if (getenv("GDEBUG")) fprintf(stderr, "accept %d failed after: %.*s\n", id, (int)len, out); break; }
        if (len + tl < 65535) { memcpy(out + len, b, tl); len += tl; }
        if (getenv("GTRACE")) fprintf(stderr, "tok %d [%.*s] dist %d n %d budget %d\n", id, (int)tl, b, gmatcher_distance(m), n, budget - steps);
    }
    if (!ok && getenv("GDEBUG")) fprintf(stderr, "out of budget: steps %d dist %d text %.*s\n", steps, gmatcher_distance(m), (int)len, out);
    gmatcher_free(m);
    if (n_tokens) *n_tokens = steps;
    if (!ok) { free(out); return NULL; }
    return out;
}

static const char *schema1 =
    "{\"type\":\"object\",\"properties\":{"
    "\"name\":{\"type\":\"string\",\"maxLength\":12},"
    "\"age\":{\"type\":\"integer\",\"minimum\":0},"
    "\"score\":{\"type\":\"number\"},"
    "\"ok\":{\"type\":\"boolean\"},"
    "\"color\":{\"enum\":[\"red\",\"green\",\"blue\"]},"
    "\"tags\":{\"type\":\"array\",\"items\":{\"type\":\"string\"},\"maxItems\":3},"
    "\"child\":{\"type\":\"object\",\"properties\":{\"x\":{\"type\":\"null\"}},\"required\":[\"x\"],"
    "\"additionalProperties\":false}},"
    "\"required\":[\"name\",\"age\",\"color\"],\"additionalProperties\":false}";

static size_t utf8len(const char *s) {
    size_t n = 0;
    for (; *s; s++) if (((unsigned char)*s & 0xC0) != 0x80) n++;
    return n;
}

/* Validate the instance of schema1 (the subset the test needs). */
static int valid_schema1(const char *txt) {
    json_error_t je;
    json_t *o = json_loads(txt, 0, &je);
    if (!json_is_object(o)) { json_decref(o); return 0; }
    int ok = 1;
    const char *key;
    json_t *val;
    json_object_foreach(o, key, val) {
        if (!strcmp(key, "name")) ok &= json_is_string(val) && utf8len(json_string_value(val)) <= 12;
        else if (!strcmp(key, "age")) ok &= json_is_integer(val) && json_integer_value(val) >= 0;
        else if (!strcmp(key, "score")) ok &= json_is_number(val);
        else if (!strcmp(key, "ok")) ok &= json_is_boolean(val);
        else if (!strcmp(key, "color")) ok &= json_is_string(val) &&
            (!strcmp(json_string_value(val), "red") || !strcmp(json_string_value(val), "green") ||
             !strcmp(json_string_value(val), "blue"));
        else if (!strcmp(key, "tags")) {
            ok &= json_is_array(val) && json_array_size(val) <= 3;
            size_t i; json_t *t;
            json_array_foreach(val, i, t) ok &= json_is_string(t);
        } else if (!strcmp(key, "child"))
            ok &= json_is_object(val) && json_object_size(val) == 1 && json_is_null(json_object_get(val, "x"));
        else ok = 0;
    }
    ok &= json_object_get(o, "name") && json_object_get(o, "age") && json_object_get(o, "color");
    json_decref(o);
    return ok;
}


TEST(schema_accepts_valid_rejects_invalid) {
    char err[256] = "";
    gvocab *v = vocab();
    grammar *g = grammar_from_json_schema(schema1, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    if (!g) { gvocab_free(v); return; }
    CHECK(accepts(g, v, "{\"name\":\"Al\",\"age\":3,\"color\":\"red\"}"), "minimal object");
    CHECK(accepts(g, v, "{\"name\": \"\xc3\xa9t\xc3\xa9\", \"age\": 0, \"score\": -1.5e+3, \"ok\": true, "
                         "\"color\": \"blue\", \"tags\": [\"a\", \"b\"], \"child\": {\"x\": null}}"), "full object");
    CHECK(!accepts(g, v, "{\"age\":3,\"name\":\"Al\",\"color\":\"red\"}"), "order is fixed (by schema)");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"color\":\"red\"}"), "missing required");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":-3,\"color\":\"red\"}"), "minimum 0");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":03,\"color\":\"red\"}"), "leading zero");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":3,\"color\":\"pink\"}"), "enum");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":3,\"color\":\"red\",\"x\":1}"), "no additional");
    CHECK(!accepts(g, v, "{\"name\":\"abcdefghijklm\",\"age\":3,\"color\":\"red\"}"), "maxLength");
    CHECK(!accepts(g, v, "{\"name\":\"a\xff\",\"age\":3,\"color\":\"red\"}"), "invalid utf-8");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":3,\"color\":\"red\",\"tags\":[\"a\",\"b\",\"c\",\"d\"]}"), "maxItems");
    CHECK(!accepts(g, v, "{\"name\":\"Al\",\"age\":3,\"color\":\"red\""), "incomplete");
    grammar_free(g);
    gvocab_free(v);
}

TEST(schema_errors) {
    char err[256];
    const char *bad[] = {
        "{\"type\":\"string\",\"pattern\":\"^a$\"}", "{\"type\":\"integer\",\"minimum\":5}",
        "{\"type\":\"frob\"}", "not json", "{\"$ref\":\"#/$defs/missing\"}",
        "{\"$defs\":{\"a\":{\"$ref\":\"#/$defs/a\"}},\"$ref\":\"#/$defs/a\"}", "[1,2]",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err[0] = 0;
        grammar *g = grammar_from_json_schema(bad[i], err, sizeof err);
        CHECK(g == NULL && err[0], "schema %zu should be rejected with a reason", i);
        grammar_free(g);
    }
}

TEST(recursive_ref) {
    char err[256] = "";
    gvocab *v = vocab();
    const char *s = "{\"$defs\":{\"node\":{\"type\":\"object\",\"properties\":{\"v\":{\"type\":\"integer\"},"
                    "\"kids\":{\"type\":\"array\",\"items\":{\"$ref\":\"#/$defs/node\"}}},\"required\":[\"v\"]}},"
                    "\"$ref\":\"#/$defs/node\"}";
    grammar *g = grammar_from_json_schema(s, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    if (g) {
        CHECK(accepts(g, v, "{\"v\":1,\"kids\":[{\"v\":2},{\"v\":3,\"kids\":[]}]}"), "recursive instance");
        CHECK(!accepts(g, v, "{\"v\":1,\"kids\":[{\"w\":2}]}"), "recursive instance, bad child");
        for (int k = 0; k < 20; k++) {
            char *out = random_walk(g, v, 200, NULL);
            json_error_t je;
            json_t *j = out ? json_loads(out, 0, &je) : NULL;
            CHECK(j && json_is_integer(json_object_get(j, "v")), "random recursive walk %d: %s", k, out ? out : "(stuck)");
            json_decref(j);
            free(out);
        }
    }
    grammar_free(g);
    gvocab_free(v);
}

TEST(random_walks_validate) {
    char err[256] = "";
    gvocab *v = vocab();
    grammar *g = grammar_from_json_schema(schema1, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    int budgets[] = {60, 100, 400};
    for (int b = 0; g && b < 3; b++)
        for (int k = 0; k < 40; k++) {
            int steps = 0;
            char *out = random_walk(g, v, budgets[b], &steps);
            CHECK(out && valid_schema1(out), "budget %d walk %d: %s", budgets[b], k, out ? out : "(stuck)");
            CHECK(steps <= budgets[b], "within budget (%d > %d)", steps, budgets[b]);
            free(out);
        }
    grammar_free(g);
    /* json_object: anything, but an object */
    g = grammar_from_json_schema(NULL, err, sizeof err);
    for (int k = 0; g && k < 40; k++) {
        char *out = random_walk(g, v, 80, NULL);
        json_error_t je;
        json_t *j = out ? json_loads(out, 0, &je) : NULL;
        CHECK(json_is_object(j), "json_object walk %d: %s", k, out ? out : "(stuck)");
        json_decref(j);
        free(out);
    }
    grammar_free(g);
    gvocab_free(v);
}

TEST(mask_contents) {
    char err[256] = "";
    gvocab *v = vocab();
    grammar *g = grammar_from_json_schema("{\"type\":\"boolean\"}", err, sizeof err);
    gmatcher *m = gmatcher_new(g, v);
    uint64_t mask[(VOCAB + 63) / 64];
    int n = gmatcher_mask(m, 0, mask);
    /* allowed: "t", "f", "true", "false" */
    int t_id = 1 + 't', true_id = -1, false_id = -1;
    for (int i = 0; i < N_PIECES; i++) {
        if (!strcmp(pieces[i], "true")) true_id = 257 + i;
        if (!strcmp(pieces[i], "false")) false_id = 257 + i;
    }
    CHECK(n == 4, "boolean start allows 4 tokens, got %d", n);
    CHECK((mask[t_id / 64] >> (t_id % 64)) & 1, "'t' allowed");
    CHECK((mask[true_id / 64] >> (true_id % 64)) & 1, "'true' allowed");
    CHECK(!((mask[0] >> 0) & 1), "EOS not allowed yet");
    CHECK(gmatcher_accept(m, true_id) == 0, "accept true");
    n = gmatcher_mask(m, 0, mask);
    CHECK(n == 1 && (mask[0] & 1), "only EOS after true (n=%d)", n);
    CHECK(gmatcher_accept(m, false_id) != 0, "false rejected after true");
    CHECK(gmatcher_accept(m, 0) == 0, "EOS accepted");
    gmatcher_free(m);
    grammar_free(g);
    gvocab_free(v);
}

TEST(dsml_tools) {
    char err[256] = "";
    gvocab *v = vocab();
    const char *tools =
        "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
        "\"properties\":{\"location\":{\"type\":\"string\"},\"unit\":{\"type\":\"string\",\"enum\":[\"c\",\"f\"]},"
        "\"days\":{\"type\":\"integer\"}},\"required\":[\"location\"]}}},"
        "{\"type\":\"function\",\"function\":{\"name\":\"get_time\",\"parameters\":{\"type\":\"object\",\"properties\":{}}}}]";
    grammar *g = grammar_dsml_tools(tools, "get_weather", 0, err, sizeof err);
    CHECK(g != NULL, "compile: %s", err);
    if (g) {
        const char *ok =
            "\n\n<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "tool_calls>\n<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "invoke name=\"get_weather\">\n"
            "<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "parameter name=\"location\" string=\"true\">Paris</\xef\xbd\x9c" "DSML\xef\xbd\x9c" "parameter>\n"
            "<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "parameter name=\"days\" string=\"false\">3</\xef\xbd\x9c" "DSML\xef\xbd\x9c" "parameter>\n"
            "</\xef\xbd\x9c" "DSML\xef\xbd\x9c" "invoke>\n</\xef\xbd\x9c" "DSML\xef\xbd\x9c" "tool_calls>";
        CHECK(accepts(g, v, ok), "valid DSML call");
        for (int k = 0; k < 20; k++) {
            char *out = random_walk(g, v, 400, NULL);
            CHECK(out && strstr(out, "invoke name=\"get_weather\"") && strstr(out, "name=\"location\""),
                  "random DSML walk %d: %s", k, out ? out : "(stuck)");
            free(out);
        }
    }
    grammar_free(g);
    g = grammar_dsml_tools(tools, "get_time", 0, err, sizeof err);
    CHECK(g != NULL, "compile get_time: %s", err);
    if (g) CHECK(accepts(g, v, "\n\n<\xef\xbd\x9c" "DSML\xef\xbd\x9c" "tool_calls>\n<\xef\xbd\x9c" "DSML\xef\xbd\x9c"
                              "invoke name=\"get_time\">\n\n</\xef\xbd\x9c" "DSML\xef\xbd\x9c" "invoke>\n</\xef\xbd\x9c"
                              "DSML\xef\xbd\x9c" "tool_calls>"), "no-parameter call renders an empty line");
    grammar_free(g);
    g = grammar_dsml_tools(tools, "nope", 0, err, sizeof err);
    CHECK(g == NULL, "unknown tool rejected");
    /* thinking prefix */
    g = grammar_from_json_schema("{\"type\":\"integer\"}", err, sizeof err);
    CHECK(grammar_add_thinking_prefix(g, err, sizeof err) == 0, "thinking prefix");
    CHECK(accepts(g, v, "let me think</think>42"), "reasoning then value");
    CHECK(!accepts(g, v, "42"), "reasoning close required");
    for (int k = 0; k < 10; k++) {
        char *out = random_walk(g, v, 60, NULL);
        char *close = out ? strstr(out, "</think>") : NULL;
        CHECK(close && close[8] && strspn(close + 8, "-0123456789") == strlen(close + 8), "thinking walk: %s", out ? out : "(stuck)");
        free(out);
    }
    grammar_free(g);
    gvocab_free(v);
}

int main(void) {
    RUN(schema_accepts_valid_rejects_invalid);
    RUN(schema_errors);
    RUN(recursive_ref);
    RUN(random_walks_validate);
    RUN(mask_contents);
    RUN(dsml_tools);
    return check_summary();
}
