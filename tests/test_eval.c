/*
 * test_eval.c - unit tests of the `dsv4 eval` harness pieces that need no
 * network: percentiles, money arithmetic, the JSON-schema validator, the
 * acceptance checks, suite loading and expansion, the SSE parser, and the
 * summary computed from hand-written records (exact numbers).
 */
#include "check.h"
#include "eval/eval.h"
#include "util/util.h"
#include <math.h>

TEST(percentiles_nearest_rank) {
    double a[10] = {10, 1, 9, 2, 8, 3, 7, 4, 6, 5};
    CHECK(eval_percentile(a, 10, 50) == 5, "p50 of 1..10 = %g", eval_percentile(a, 10, 50));
    CHECK(eval_percentile(a, 10, 95) == 10, "p95 of 1..10");
    CHECK(eval_percentile(a, 10, 99) == 10, "p99 of 1..10");
    CHECK(eval_percentile(a, 10, 90) == 9, "p90 of 1..10 is exactly rank 9");
    CHECK(eval_percentile(a, 10, 0) == 1, "p0 is the minimum");
    CHECK(eval_percentile(a, 10, 100) == 10, "p100 is the maximum");
    double b[20];
    for (int i = 0; i < 20; i++) b[i] = 100 - i;        /* 81..100 */
    CHECK(eval_percentile(b, 20, 95) == 99, "p95 of 20 values = rank 19");
    CHECK(eval_percentile(b, 20, 50) == 90, "p50 of 20 values = rank 10");
    CHECK(eval_percentile(b, 20, 99) == 100, "p99 of 20 = rank 20");
    double c[1] = {42};
    CHECK(eval_percentile(c, 1, 50) == 42 && eval_percentile(c, 1, 99) == 42, "single value");
    CHECK(eval_percentile(c, 0, 50) == 0, "empty");
    double d[200];
    for (int i = 0; i < 200; i++) d[i] = i + 1;
    CHECK(eval_percentile(d, 200, 99) == 198, "p99 of 200 = rank 198");
    CHECK(eval_percentile(d, 200, 99.5) == 199, "p99.5 of 200 = rank 199");
}

TEST(money) {
    int64_t u;
    CHECK(eval_parse_usd("0.27", &u) == 0 && u == 270000, "0.27 -> %lld", (long long)u);
    CHECK(eval_parse_usd("2", &u) == 0 && u == 2000000, "2");
    CHECK(eval_parse_usd("$1.5", &u) == 0 && u == 1500000, "$1.5");
    CHECK(eval_parse_usd("0.000001", &u) == 0 && u == 1, "one micro-dollar");
    CHECK(eval_parse_usd("0.1000000", &u) == 0 && u == 100000, "trailing zeros beyond 6 decimals");
    CHECK(eval_parse_usd("0.0000001", &u) < 0, "below a micro-dollar refused");
    CHECK(eval_parse_usd("abc", &u) < 0 && eval_parse_usd("", &u) < 0 && eval_parse_usd("1e3", &u) < 0, "bad strings");
    CHECK(eval_parse_usd("-1", &u) < 0, "negative refused");
    /* 1000 input tokens at $0.27/M + 500 output at $1.10/M = $0.00082 */
    int64_t c = eval_request_cost_pusd(1000, 500, 270000, 1100000);
    CHECK(c == 820000000LL, "cost %lld", (long long)c);
    char b[64];
    eval_format_usd(c, 6, b, sizeof b);
    CHECK(!strcmp(b, "0.000820"), "%s", b);
    eval_format_usd(5000000000LL, 2, b, sizeof b);
    CHECK(!strcmp(b, "0.01"), "half a cent rounds up: %s", b);
    eval_format_usd(4999999999LL, 2, b, sizeof b);
    CHECK(!strcmp(b, "0.00"), "just under half a cent: %s", b);
    eval_format_usd(123456789012345LL, 2, b, sizeof b);
    CHECK(!strcmp(b, "123.46"), "%s", b);
    eval_format_usd(0, 6, b, sizeof b);
    CHECK(!strcmp(b, "0.000000"), "%s", b);
}

static int valid(const char *schema, const char *inst) {
    json_t *s = json_loads(schema, JSON_DECODE_ANY, NULL), *i = json_loads(inst, JSON_DECODE_ANY, NULL);
    char why[200];
    int r = s && i ? eval_schema_validate(s, i, why, sizeof why) : -1;
    json_decref(s);
    json_decref(i);
    return r;
}

TEST(schema_validator) {
    const char *obj = "{\"type\":\"object\",\"properties\":{\"a\":{\"type\":\"integer\",\"minimum\":1},\"b\":{\"type\":\"string\",\"pattern\":\"^x+$\"}},"
                      "\"required\":[\"a\"],\"additionalProperties\":false}";
    CHECK(valid(obj, "{\"a\":2,\"b\":\"xx\"}") == 1, "valid object");
    CHECK(valid(obj, "{\"b\":\"xx\"}") == 0, "missing required");
    CHECK(valid(obj, "{\"a\":0}") == 0, "below minimum");
    CHECK(valid(obj, "{\"a\":2,\"c\":1}") == 0, "additional property");
    CHECK(valid(obj, "{\"a\":2,\"b\":\"y\"}") == 0, "pattern");
    CHECK(valid(obj, "{\"a\":2.0}") == 1, "2.0 is an integer");
    CHECK(valid(obj, "{\"a\":2.5}") == 0, "2.5 is not an integer");
    CHECK(valid(obj, "[1]") == 0, "array is not an object");
    CHECK(valid("{\"type\":\"array\",\"items\":{\"enum\":[\"p\",\"q\"]},\"minItems\":2,\"uniqueItems\":true}", "[\"p\",\"q\"]") == 1, "array enum");
    CHECK(valid("{\"type\":\"array\",\"items\":{\"enum\":[\"p\",\"q\"]},\"minItems\":2}", "[\"p\"]") == 0, "minItems");
    CHECK(valid("{\"type\":\"array\",\"uniqueItems\":true}", "[1,1]") == 0, "uniqueItems");
    CHECK(valid("{\"type\":[\"string\",\"null\"]}", "null") == 1, "type list");
    CHECK(valid("{\"anyOf\":[{\"type\":\"string\"},{\"type\":\"number\"}]}", "true") == 0, "anyOf");
    CHECK(valid("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"number\"}]}", "1") == 0, "oneOf matches two");
    CHECK(valid("{\"oneOf\":[{\"type\":\"integer\"},{\"type\":\"string\"}]}", "1") == 1, "oneOf matches one");
    CHECK(valid("{\"$defs\":{\"p\":{\"type\":\"string\",\"maxLength\":2}},\"type\":\"object\",\"properties\":{\"x\":{\"$ref\":\"#/$defs/p\"}}}",
                "{\"x\":\"abc\"}") == 0, "$ref + maxLength");
    CHECK(valid("{\"type\":\"string\",\"minLength\":2,\"maxLength\":2}", "\"\xc3\xa9\xc3\xa9\"") == 1, "length counts characters");
    CHECK(valid("{\"const\":3}", "3.0") == 1, "const numeric");
    CHECK(valid("{\"not\":{\"type\":\"string\"}}", "\"s\"") == 0, "not");
    CHECK(valid("{\"type\":\"number\",\"exclusiveMaximum\":1}", "1") == 0, "exclusiveMaximum");
    CHECK(valid("true", "{}") == 1, "true schema");
}

static int accept(const char *check, const char *answer, eval_check_result *r) {
    json_t *c = json_loads(check, 0, NULL);
    eval_check_text(c, answer, r);
    json_decref(c);
    return r->accepted;
}

TEST(checks) {
    eval_check_result r;
    CHECK(accept("{\"type\":\"exact\",\"value\":\"positive\"}", "  Positive.\n", &r), "exact, case and period");
    CHECK(!accept("{\"type\":\"exact\",\"value\":\"positive\"}", "positive sentiment", &r), "exact rejects extra words");
    CHECK(!accept("{\"type\":\"exact\",\"value\":\"Yes\",\"case_sensitive\":true}", "yes", &r), "case sensitive");
    CHECK(accept("{\"type\":\"exact\",\"values\":[\"a\",\"b\"]}", "b", &r), "exact values");
    CHECK(accept("{\"type\":\"contains\",\"values\":[\"Q4\",\"july\"]}", "Moved to q4; due July 12", &r), "contains all");
    CHECK(!accept("{\"type\":\"contains\",\"values\":[\"Q4\",\"june\"]}", "Moved to q4; due July 12", &r), "contains missing");
    CHECK(accept("{\"type\":\"contains\",\"any\":[\"x\",\"July\"]}", "July", &r), "contains any");
    CHECK(accept("{\"type\":\"regex\",\"pattern\":\"limit\\\\s+5\",\"flags\":\"i\"}", "SELECT * FROM t LIMIT 5", &r), "regex ci");
    CHECK(!accept("{\"type\":\"regex\",\"pattern\":\"limit\\\\s+5\"}", "SELECT * FROM t LIMIT 5", &r), "regex cs");
    CHECK(!accept("{\"type\":\"regex\",\"pattern\":\"(\"}", "x", &r) && strstr(r.why, "bad regex"), "bad regex reported");
    CHECK(accept("{\"type\":\"needle\",\"value\":\"violet-harbor-42\"}", "The passphrase is VIOLET-HARBOR-42.", &r), "needle");
    const char *js = "{\"type\":\"json_schema\",\"schema\":{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\"}},\"required\":[\"total\"]},"
                     "\"expect\":{\"total\":13.5}}";
    CHECK(accept(js, "{\"total\": 13.5}", &r) && r.json_valid && r.schema_valid, "json_schema ok");
    CHECK(accept(js, "Here:\n```json\n{\"total\": 13.50}\n```", &r), "fenced JSON");
    CHECK(!accept(js, "{\"total\": \"13.5\"}", &r) && r.json_valid && !r.schema_valid, "schema type mismatch");
    CHECK(!accept(js, "{\"total\": 14}", &r) && r.schema_valid, "expect mismatch");
    CHECK(!accept(js, "total is 13.5", &r) && !r.json_valid && r.is_json, "not JSON");
    CHECK(accept("{\"type\":\"json\",\"expect\":[{\"name\":\"ada\",\"age\":36}]}", "[{\"name\":\"Ada\",\"age\":36},{\"name\":\"L\",\"age\":2}]", &r), "json array subset");
}

TEST(haystack) {
    for (int n = 1; n < 3000; n = n * 3 + 1) {
        char *h = eval_haystack(n, 42);
        long words = 0, ends = 0;
        for (const char *p = h; *p; p++) {
            if (*p != ' ' && (p == h || p[-1] == ' ')) words++;
            ends += *p == '.';
        }
        CHECK(words + ends == n, "haystack(%d): %ld words + %ld ends", n, words, ends);
        char *h2 = eval_haystack(n, 42), *h3 = eval_haystack(n, 43);
        CHECK(!strcmp(h, h2) && (n < 10 || strcmp(h, h3)), "deterministic per seed, different across seeds");
        free(h); free(h2); free(h3);
    }
}

TEST(fill_variables) {
    json_t *row = json_pack("{s:s,s:f,s:b}", "city", "Paris", "t", 13.5, "ok", 0);
    json_t *tpl = json_pack("{s:s,s:s,s:s,s:[s]}", "a", "Weather in {{city}} ({{t}})", "b", "{{t}}", "c", "{{missing}}", "d", "{{ok}}");
    json_t *f = eval_fill(tpl, row);
    CHECK(!strcmp(json_string_value(json_object_get(f, "a")), "Weather in Paris (13.5)"), "text substitution: %s", json_string_value(json_object_get(f, "a")));
    CHECK(json_is_real(json_object_get(f, "b")) && json_real_value(json_object_get(f, "b")) == 13.5, "typed substitution");
    CHECK(!strcmp(json_string_value(json_object_get(f, "c")), "{{missing}}"), "unknown variable kept");
    CHECK(json_is_false(json_array_get(json_object_get(f, "d"), 0)), "boolean in array");
    json_decref(f); json_decref(tpl); json_decref(row);
}

TEST(suite_loading) {
    eval_suite s;
    char err[256];
    memset(&s, 0, sizeof s);
    int rc = eval_suite_load(&s, NULL, 0, NULL, 0, 0, err, sizeof err);
    CHECK(rc == 0, "default suite loads: %s", err);
    CHECK(json_array_size(s.templates) == 50, "default suite has 50 templates (%zu)", json_array_size(s.templates));
    int cats[8] = {0};
    const char *names[8] = {"extraction", "classification", "summarisation", "rewriting", "code", "rag", "tool_chain", "long_context"};
    int chain_min = 9, chain_max = 0, schema_rf = 0;
    for (size_t i = 0; i < s.n_items; i++) {
        for (int k = 0; k < 8; k++) cats[k] += !strcmp(s.items[i].category, names[k]);
        json_t *steps = json_object_get(s.items[i].check, "steps");
        if (steps) {
            int n = (int)json_array_size(steps);
            chain_min = n < chain_min ? n : chain_min;
            chain_max = n > chain_max ? n : chain_max;
        }
        if (!strcmp(json_string_value(json_object_get(s.items[i].check, "type")), "json_schema"))
            schema_rf += !strcmp(json_string_value(json_object_get(s.items[i].response_format, "type")), "json_schema");
    }
    for (int k = 0; k < 8; k++) CHECK(cats[k] > 0, "category %s present", names[k]);
    CHECK(chain_min == 2 && chain_max == 5, "tool chains of 2..5 steps (%d..%d)", chain_min, chain_max);
    CHECK(schema_rf >= 10, "json_schema templates send response_format json_schema (%d)", schema_rf);
    eval_suite_free(&s);

    memset(&s, 0, sizeof s);
    CHECK(eval_suite_load(&s, NULL, 3, NULL, 0, 0, err, sizeof err) == 0 && json_array_size(s.templates) == 3, "--limit 3");
    eval_suite_free(&s);

    const char *suite =
        "# comment\n"
        "{\"id\":\"a\",\"prompt\":\"Say {{w}}\",\"data\":[{\"w\":\"x\"},{\"w\":\"y\"}],\"check\":{\"type\":\"exact\",\"value\":\"{{w}}\"}}\n"
        "\n"
        "{\"id\":\"n\",\"prompt\":\"{{document}}\\nCode?\",\"data\":[{\"c\":\"K-1\"}],\"long_context\":{\"sizes\":[256,1024,8192],\"needle\":\"The code is {{c}}.\"},"
        "\"check\":{\"type\":\"needle\",\"value\":\"{{c}}\"}}\n";
    memset(&s, 0, sizeof s);
    rc = eval_suite_parse(&s, suite, NULL, 0, NULL, 0, 2000, err, sizeof err);
    CHECK(rc == 0 && s.n_items == 4, "2 rows + 2 sizes under max-context (%zu) %s", s.n_items, err);
    if (rc == 0 && s.n_items == 4) {
        CHECK(!strcmp(s.items[1].key, "a#2"), "row key %s", s.items[1].key);
        const char *u = json_string_value(json_object_get(json_array_get(s.items[1].messages, 0), "content"));
        CHECK(u && !strcmp(u, "Say y"), "prompt filled: %s", u ? u : "");
        const char *doc = json_string_value(json_object_get(json_array_get(s.items[3].messages, 0), "content"));
        long words = 0, ends = 0;
        for (const char *p = doc; p && *p; p++) {
            if (*p != ' ' && *p != '\n' && (p == doc || p[-1] == ' ' || p[-1] == '\n')) words++;
            ends += *p == '.';
        }
        /* 1024 - 256 (max_tokens) - 64 - 1024/64 = 688 filler tokens, the
         * needle (4 words + 1) and "Code?" */
        CHECK(doc && strstr(doc, "The code is K-1.") && words + ends == 688 + 5 + 1, "haystack of 688 tokens + needle: %ld", words + ends);
        CHECK(s.items[3].lc_size == 1024, "lc size");
        CHECK(!strcmp(json_string_value(json_object_get(s.items[3].check, "value")), "K-1"), "needle check filled");
    }
    eval_suite_free(&s);
    int sizes[2] = {512, 4096};
    memset(&s, 0, sizeof s);
    CHECK(eval_suite_parse(&s, suite, NULL, 0, sizes, 2, 0, err, sizeof err) == 0 && s.n_items == 4 && s.items[3].lc_size == 4096,
          "--long-context sizes override");
    eval_suite_free(&s);

    const char *bad[] = {
        "{\"prompt\":\"x\",\"check\":{\"type\":\"exact\"}}",
        "{\"id\":\"a\",\"prompt\":\"x\",\"check\":{\"type\":\"fuzzy\"}}",
        "{\"id\":\"a\",\"prompt\":\"x\",\"check\":{\"type\":\"exact\"}}\n{\"id\":\"a\",\"prompt\":\"y\",\"check\":{\"type\":\"exact\"}}",
        "{\"id\":\"a\",\"prompt\":\"x\",\"check\":{\"type\":\"tool_chain\",\"steps\":[{\"tool\":\"t\"}]}}",
        "{\"id\":\"a\",\"prompt\":\"x\"",
        "[{\"id\":\"a\"}]",
        "",
    };
    const char *expect[] = {"missing \"id\"", "unknown check type", "appears twice", "needs \"tools\"", "line 1", "needs \"prompt\"", "no templates"};
    for (int i = 0; i < 7; i++) {
        memset(&s, 0, sizeof s);
        err[0] = 0;
        rc = eval_suite_parse(&s, bad[i], NULL, 0, NULL, 0, 0, err, sizeof err);
        CHECK(rc < 0 && strstr(err, expect[i]), "bad suite %d: %s", i, err);
        if (rc == 0) eval_suite_free(&s);
    }
}

static void feed_split(eval_sse *p, const char *s, size_t step) {
    size_t n = strlen(s);
    for (size_t i = 0; i < n; i += step) eval_sse_feed(p, s + i, n - i < step ? n - i : step);
}

TEST(sse_parser) {
    const char *stream =
        ": keep-alive\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"}}]}\r\n\r\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\"}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"c1\",\"function\":{\"name\":\"f\",\"arguments\":\"{\\\"a\\\":\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":{\"arguments\":\"1}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"tool_calls\"}]}\n\n"
        "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":11,\"completion_tokens\":7}}\n\n"
        "data: [DONE]\n\n";
    for (size_t step = 1; step <= 7; step += 3) {
        eval_response r;
        memset(&r, 0, sizeof r);
        r.tool_calls = json_array();
        eval_sse *p = eval_sse_new(&r, now_sec());
        feed_split(p, stream, step);
        int rc = eval_sse_finish(p);
        eval_sse_free(p);
        CHECK(rc == 0 && r.kind == EVAL_OK, "stream ok (step %zu): %s", step, r.error);
        CHECK(!strcmp(r.content, "Hello"), "content %s", r.content);
        CHECK(r.chunks == 4 && r.in_tokens == 11 && r.out_tokens == 7 && r.usage_given, "chunks %d usage %ld/%ld", r.chunks, r.in_tokens, r.out_tokens);
        json_t *fn = json_object_get(json_array_get(r.tool_calls, 0), "function");
        CHECK(!strcmp(json_string_value(json_object_get(fn, "arguments")), "{\"a\":1}") &&
              !strcmp(json_string_value(json_object_get(fn, "name")), "f"), "tool call merged");
        CHECK(!strcmp(r.finish_reason, "tool_calls"), "finish reason");
        eval_response_free(&r);
    }
    struct { const char *s; int kind; } cases[] = {
        {"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {broken\n\ndata: [DONE]\n\n", EVAL_ERR_MALFORMED},
        {"data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\n", EVAL_ERR_MALFORMED},
        {"data: {\"choices\":[{\"delta\":{\"refusal\":\"no\"},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", EVAL_ERR_REFUSAL},
        {"data: {\"choices\":[{\"delta\":{},\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n", EVAL_ERR_EMPTY},
        {"data: {\"error\":{\"message\":\"overloaded\"}}\n\n", EVAL_ERR_HTTP},
        {"{\"choices\":[{\"message\":{\"content\":\"whole\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1}}", EVAL_OK},
        {"", EVAL_ERR_MALFORMED},
    };
    for (int i = 0; i < 7; i++) {
        eval_response r;
        memset(&r, 0, sizeof r);
        r.tool_calls = json_array();
        eval_sse *p = eval_sse_new(&r, now_sec());
        feed_split(p, cases[i].s, 5);
        eval_sse_finish(p);
        eval_sse_free(p);
        CHECK(r.kind == cases[i].kind, "case %d: kind %s, want %s (%s)", i, eval_err_name(r.kind), eval_err_name(cases[i].kind), r.error);
        if (i == 5) CHECK(!strcmp(r.content, "whole") && r.out_tokens == 1, "non-streamed body");
        eval_response_free(&r);
    }
    /* Without usage, output tokens are the chunks. */
    eval_response r;
    memset(&r, 0, sizeof r);
    r.tool_calls = json_array();
    eval_sse *p = eval_sse_new(&r, now_sec());
    feed_split(p, "data: {\"choices\":[{\"delta\":{\"content\":\"a\"}}]}\n\ndata: {\"choices\":[{\"delta\":{\"content\":\"b\"},\"finish_reason\":\"stop\"}]}\n\n", 100);
    CHECK(eval_sse_finish(p) == 0 && r.out_tokens == 2 && !r.usage_given, "token count from chunks");
    eval_sse_free(p);
    eval_response_free(&r);
}

/* Summary from hand-written records: every number is known. */
TEST(summary_exact) {
    json_t *recs = json_array();
    /* 20 successful requests, TTFT 10..200 ms, E2E = TTFT + 100; two
     * attempts on items 0..4 (attempt 2 is requests 15..19). */
    for (int i = 0; i < 20; i++) {
        json_t *r = json_pack("{s:s,s:s,s:i,s:s,s:i,s:b,s:s,s:f,s:f,s:f,s:i,s:i}", "type", "request", "ep", "A", "conc", 4, "key", "k",
                              "attempt", i < 15 ? 1 : 2, "warmup", 0, "error_kind", "ok", "ttft_ms", 10.0 * (i + 1),
                              "e2e_ms", 10.0 * (i + 1) + 100, "itl_ms", 2.0, "in_tokens", 1000, "out_tokens", 200);
        json_array_append_new(recs, r);
    }
    json_array_append_new(recs, json_pack("{s:s,s:s,s:i,s:i,s:b,s:s,s:f,s:i,s:i}", "type", "request", "ep", "A", "conc", 4, "attempt", 1,
                                          "warmup", 1, "error_kind", "ok", "ttft_ms", 9999.0, "in_tokens", 5000, "out_tokens", 5000));
    json_array_append_new(recs, json_pack("{s:s,s:s,s:i,s:i,s:b,s:s,s:f,s:i,s:i}", "type", "request", "ep", "A", "conc", 4, "attempt", 1,
                                          "warmup", 0, "error_kind", "timeout", "e2e_ms", 500.0, "in_tokens", 0, "out_tokens", 0));
    /* 15 items: 10 accepted first try, 3 after a retry, 2 never. */
    for (int i = 0; i < 15; i++) {
        int first = i < 10, acc = i < 13;
        json_t *it = json_pack("{s:s,s:s,s:i,s:s,s:s,s:s,s:i,s:b,s:b}", "type", "item", "ep", "A", "conc", 4, "key", "k", "template",
                               i < 5 ? "t1" : "t2", "category", "c", "attempts", first ? 1 : 2, "accepted", acc, "accepted_first", first);
        json_object_set_new(it, "first", i < 5 ? json_pack("{s:b,s:b}", "json_valid", i < 4, "schema_valid", i < 3)
                                              : json_pack("{s:[b,b],s:b}", "steps", 1, i < 8, "chain_ok", i < 8));
        json_array_append_new(recs, it);
    }
    json_array_append_new(recs, json_pack("{s:s,s:s,s:i,s:f}", "type", "run", "ep", "A", "conc", 4, "wall_ms", 3600000.0));
    eval_options o;
    memset(&o, 0, sizeof o);
    o.n_ep = 1;
    snprintf(o.ep[0].name, sizeof o.ep[0].name, "A");
    o.ep[0].price_in_uusd = 270000;       /* $0.27 / 1M */
    o.ep[0].price_out_uusd = 1100000;     /* $1.10 / 1M */
    o.ep[0].per_hour_uusd = 2000000;      /* $2.00 / hour */
    o.levels[0] = 4;
    o.n_levels = 1;
    o.max_attempts = 2;
    json_t *sum = eval_summarize(&o, "t", recs);
    json_t *g = json_array_get(json_object_get(sum, "groups"), 0);
    json_t *lat = json_object_get(g, "latency");
    json_t *tt = json_object_get(lat, "ttft_ms");
    CHECK(json_integer_value(json_object_get(tt, "n")) == 20, "warm-up and failed requests excluded");
    CHECK(json_real_value(json_object_get(tt, "p50")) == 100 && json_real_value(json_object_get(tt, "p95")) == 190 &&
          json_real_value(json_object_get(tt, "p99")) == 200, "TTFT p50/p95/p99 = 100/190/200");
    CHECK(json_real_value(json_object_get(tt, "mean")) == 105, "TTFT mean 105");
    json_t *e2e = json_object_get(lat, "e2e_ms");
    CHECK(json_real_value(json_object_get(e2e, "p50")) == 200 && json_real_value(json_object_get(e2e, "p95")) == 290, "E2E percentiles");
    json_t *acc = json_object_get(g, "acceptance");
    CHECK(json_integer_value(json_object_get(acc, "items")) == 15 && json_integer_value(json_object_get(acc, "accepted")) == 13 &&
          json_integer_value(json_object_get(acc, "accepted_first")) == 10, "acceptance counts");
    CHECK(fabs(json_real_value(json_object_get(acc, "rate")) - 0.866667) < 1e-9 &&
          fabs(json_real_value(json_object_get(acc, "rate_first")) - 0.666667) < 1e-9, "acceptance rates");
    CHECK(json_integer_value(json_object_get(json_object_get(g, "errors"), "timeout")) == 1, "timeout counted");
    json_t *js = json_object_get(g, "json");
    CHECK(json_integer_value(json_object_get(js, "items")) == 5 && json_integer_value(json_object_get(js, "valid")) == 4 &&
          json_integer_value(json_object_get(js, "schema_valid")) == 3, "JSON validity");
    json_t *tl = json_object_get(g, "tools");
    CHECK(json_integer_value(json_object_get(tl, "chains")) == 10 && json_integer_value(json_object_get(tl, "chains_ok")) == 3 &&
          json_integer_value(json_object_get(tl, "steps")) == 20 && json_integer_value(json_object_get(tl, "steps_ok")) == 13, "tool steps");
    /* Tokens: 20 x (1000 in, 200 out) + the failed request (0).  Token cost
     * = 20 * (1000*0.27 + 200*1.10) / 1e6 = $0.0098; hour cost = $2.00
     * (one hour of wall time).  Total $2.0098 over 13 accepted. */
    json_t *c = json_object_get(g, "cost");
    CHECK(json_integer_value(json_object_get(c, "input_tokens")) == 20000 && json_integer_value(json_object_get(c, "output_tokens")) == 4000, "tokens");
    CHECK(!strcmp(json_string_value(json_object_get(c, "total_usd")), "2.009800"), "total %s", json_string_value(json_object_get(c, "total_usd")));
    CHECK(json_integer_value(json_object_get(c, "per_accepted_pusd")) == 154600000000LL, "per accepted %lld",
          (long long)json_integer_value(json_object_get(c, "per_accepted_pusd")));
    CHECK(!strcmp(json_string_value(json_object_get(c, "per_accepted_usd")), "0.154600"), "per accepted usd");
    json_decref(sum);
    /* Token prices only: first-try cost is the 15 first attempts (+ the
     * failed one, which costs nothing) over 10 accepted first. */
    o.ep[0].per_hour_uusd = 0;
    sum = eval_summarize(&o, "t", recs);
    c = json_object_get(json_array_get(json_object_get(sum, "groups"), 0), "cost");
    CHECK(!strcmp(json_string_value(json_object_get(c, "total_usd")), "0.009800"), "token-only total");
    CHECK(json_integer_value(json_object_get(c, "per_accepted_first_try_pusd")) == 735000000LL, "first try: 15*490000000/10 = %lld",
          (long long)json_integer_value(json_object_get(c, "per_accepted_first_try_pusd")));
    CHECK(json_integer_value(json_object_get(c, "per_accepted_pusd")) == 753846154LL, "with retries: 9800000000/13 rounded = %lld",
          (long long)json_integer_value(json_object_get(c, "per_accepted_pusd")));
    json_t *tpl = json_object_get(json_array_get(json_object_get(sum, "groups"), 0), "templates");
    CHECK(json_array_size(tpl) == 2, "two templates");
    json_decref(sum);
    json_decref(recs);
}

int main(void) {
    RUN(percentiles_nearest_rank);
    RUN(money);
    RUN(schema_validator);
    RUN(checks);
    RUN(fill_variables);
    RUN(haystack);
    RUN(suite_loading);
    RUN(sse_parser);
    RUN(summary_exact);
    return check_summary();
}
