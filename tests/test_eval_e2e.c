/*
 * test_eval_e2e.c - `dsv4 eval` against the scripted mock endpoint
 * (eval_mock.c) on a free loopback port: known answers, delays, errors
 * and token counts, so acceptance, retries, error accounting and cost are
 * checked exactly and latency percentiles within a small tolerance (the
 * scripted delay is a lower bound; the tolerance only covers scheduling).
 * Also: the CLI end to end (report files), resume after an interrupted
 * run, and an interrupt mid-run.
 */
#include "check.h"
#include "eval/eval.h"
#include "util/util.h"
#include <math.h>
#include <pthread.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *suite_text =
    "{\"id\":\"cls\",\"category\":\"classification\",\"prompt\":\"cls {{n}}\",\"data\":[{\"n\":1},{\"n\":2},{\"n\":3},{\"n\":4}],"
    "\"check\":{\"type\":\"exact\",\"value\":\"yes\"}}\n"
    "{\"id\":\"js\",\"category\":\"extraction\",\"prompt\":\"json please\",\"check\":{\"type\":\"json_schema\","
    "\"schema\":{\"type\":\"object\",\"properties\":{\"total\":{\"type\":\"number\"}},\"required\":[\"total\"]}}}\n"
    "{\"id\":\"chain\",\"category\":\"tool_chain\",\"prompt\":\"weather in Paris in F\","
    "\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\",\"properties\":{\"city\":{\"type\":\"string\"}},\"required\":[\"city\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"c2f\",\"parameters\":{\"type\":\"object\",\"properties\":{\"celsius\":{\"type\":\"number\"}}}}}],"
    "\"check\":{\"type\":\"tool_chain\",\"steps\":[{\"tool\":\"get_weather\",\"args\":{\"city\":\"Paris\"},\"result\":{\"celsius\":20}},"
    "{\"tool\":\"c2f\",\"args\":{\"celsius\":20},\"result\":{\"f\":68}}],\"final\":{\"type\":\"contains\",\"value\":\"68\"}}}\n"
    "{\"id\":\"err\",\"category\":\"robustness\",\"prompt\":\"err case\",\"check\":{\"type\":\"contains\",\"value\":\"fine\"}}\n"
    "{\"id\":\"slow\",\"category\":\"robustness\",\"prompt\":\"slow case\",\"check\":{\"type\":\"contains\",\"value\":\"x\"}}\n"
    "{\"id\":\"trunc\",\"category\":\"robustness\",\"prompt\":\"trunc case\",\"check\":{\"type\":\"contains\",\"value\":\"ok\"}}\n";

/* Every successful answer reports 100 prompt and 10 completion tokens. */
#define U "\"prompt_tokens\":100,\"completion_tokens\":10"
static const char *script_text =
    "{\"context_length\":3000,\"rules\":["
    "{\"match\":\"The secret passphrase is ([\\\\w-]+)\\\\.\",\"response\":{\"content\":\"$1\",\"ttft_ms\":5}},"
    "{\"match\":\"cls 1\",\"response\":{\"content\":\"yes\",\"ttft_ms\":100," U "}},"
    "{\"match\":\"cls 2\",\"response\":{\"content\":\"Yes.\",\"ttft_ms\":200," U "}},"
    "{\"match\":\"cls 3\",\"response\":{\"content\":\"yes\",\"ttft_ms\":300," U "}},"
    "{\"match\":\"cls 4\",\"responses\":[{\"content\":\"no\",\"ttft_ms\":400," U "},{\"content\":\"yes\",\"ttft_ms\":500," U "}]},"
    "{\"match\":\"json please\",\"response\":{\"content\":\"{\\\"total\\\": \\\"twelve\\\"}\",\"chunks\":1,\"ttft_ms\":10," U "}},"
    "{\"match\":\"weather in (\\\\w+)\",\"turn\":0,\"response\":{\"tool_calls\":[{\"name\":\"get_weather\",\"arguments\":{\"city\":\"$1\"}}],\"ttft_ms\":10," U "}},"
    "{\"match\":\"weather\",\"turn\":1,\"response\":{\"tool_calls\":[{\"name\":\"c2f\",\"arguments\":{\"celsius\":20}}],\"ttft_ms\":10," U "}},"
    "{\"match\":\"weather\",\"turn\":2,\"response\":{\"content\":\"68 F\",\"ttft_ms\":10,\"itl_ms\":25," U "}},"
    "{\"match\":\"err case\",\"responses\":[{\"status\":500,\"body\":\"{\\\"error\\\":{\\\"message\\\":\\\"boom\\\"}}\"},"
    "{\"content\":\"a b\",\"malformed\":true," U "},{\"content\":\"fine\",\"ttft_ms\":10," U "}]},"
    "{\"match\":\"slow case\",\"response\":{\"hang_ms\":4000,\"content\":\"x\"}},"
    "{\"match\":\"trunc case\",\"responses\":[{\"content\":\"x y\",\"truncate\":true},{\"refusal\":\"I cannot help\"," U "},"
    "{\"content\":\"ok\",\"ttft_ms\":10," U "}]}"
    "]}";

static char tmpdir[64];
static eval_mock *mock;
static eval_suite suite;

static void options(eval_options *o, const char *out) {
    memset(o, 0, sizeof *o);
    o->n_ep = 1;
    snprintf(o->ep[0].name, sizeof o->ep[0].name, "mock");
    snprintf(o->ep[0].url, sizeof o->ep[0].url, "http://127.0.0.1:%d", eval_mock_port(mock));
    o->ep[0].price_in_uusd = 1000000;     /* $1 per 1M input tokens: 1 micro-dollar each */
    o->ep[0].price_out_uusd = 2000000;    /* $2 per 1M output tokens */
    o->levels[0] = 3;
    o->n_levels = 1;
    o->max_attempts = 3;
    o->warmup = 1;
    o->timeout_s = 1.5;   /* well above the slowest scripted answer (500 ms), below the hang */
    o->out_dir = out;
}

static json_t *group0(json_t *sum) { return json_array_get(json_object_get(sum, "groups"), 0); }
static double num(json_t *o, const char *a, const char *b) {
    json_t *v = json_object_get(o, a);
    if (b) v = json_object_get(v, b);
    return json_number_value(v);
}

TEST(scripted_run) {
    char out[128], err[256], path[256];
    snprintf(out, sizeof out, "%s/run1", tmpdir);
    mkdir(out, 0755);
    eval_options o;
    options(&o, out);
    long before = eval_mock_requests(mock);
    double t0 = now_sec();
    int rc = eval_run(&o, &suite, err, sizeof err);
    double took = now_sec() - t0;
    CHECK(rc == 0, "run: %d %s", rc, err);
    CHECK(took < 20, "bounded in time (%.2fs): the hung request is cut by the timeout", took);
    /* 1 warm-up + cls 5 + js 3 + chain 3 + err 3 + slow 3 + trunc 3 */
    CHECK(eval_mock_requests(mock) - before == 21,
          "requests reaching the mock: %ld", eval_mock_requests(mock) - before);
    json_t *recs = eval_read_records(path_join(path, sizeof path, out, "records.jsonl"), err, sizeof err);
    CHECK(recs != NULL, "records: %s", err);
    size_t nreq = 0, nitem = 0, nwarm = 0;
    size_t i; json_t *r;
    json_array_foreach(recs, i, r) {
        const char *t = json_string_value(json_object_get(r, "type"));
        nreq += !strcmp(t, "request") && !json_is_true(json_object_get(r, "warmup"));
        nwarm += !strcmp(t, "request") && json_is_true(json_object_get(r, "warmup"));
        nitem += !strcmp(t, "item");
    }
    CHECK(nreq == 20 && nwarm == 1 && nitem == 9, "records: %zu requests, %zu warm-up, %zu items", nreq, nwarm, nitem);
    json_t *sum = eval_summarize(&o, "e2e", recs);
    json_t *g = group0(sum);
    CHECK(num(g, "acceptance", "items") == 9 && num(g, "acceptance", "accepted") == 7 && num(g, "acceptance", "accepted_first") == 4,
          "acceptance %g/%g first %g", num(g, "acceptance", "accepted"), num(g, "acceptance", "items"), num(g, "acceptance", "accepted_first"));
    CHECK(num(g, "acceptance", "attempts") == 5 + 3 + 1 + 3 + 3 + 3, "attempts %g", num(g, "acceptance", "attempts"));
    json_t *errs = json_object_get(g, "errors");
    CHECK(num(errs, "http", NULL) == 1 && num(errs, "malformed", NULL) == 2 && num(errs, "timeout", NULL) == 3 && num(errs, "refusal", NULL) == 1,
          "errors http %g malformed %g timeout %g refusal %g", num(errs, "http", NULL), num(errs, "malformed", NULL),
          num(errs, "timeout", NULL), num(errs, "refusal", NULL));
    CHECK(num(g, "json", "items") == 1 && num(g, "json", "valid") == 1 && num(g, "json", "schema_valid") == 0, "JSON valid, schema invalid");
    CHECK(num(g, "tools", "chains") == 1 && num(g, "tools", "chains_ok") == 1 && num(g, "tools", "steps_ok") == 2, "tool chain correct");
    /* Latency: 13 successful requests with TTFTs 10 (x8), 100, 200, 300,
     * 400, 500 ms.  Nearest rank: p50 = rank 7 = 10 ms, p95 = p99 = rank
     * 13 = 500 ms. */
    json_t *tt = json_object_get(json_object_get(g, "latency"), "ttft_ms");
    double tol = 150;   /* scheduling on a loaded machine; the lower bounds are exact */
    CHECK(json_integer_value(json_object_get(tt, "n")) == 13, "successful requests %lld", (long long)json_integer_value(json_object_get(tt, "n")));
    double p50 = json_real_value(json_object_get(tt, "p50")), p95 = json_real_value(json_object_get(tt, "p95"));
    CHECK(p50 >= 10 && p50 < 10 + tol, "TTFT p50 %.3f ms", p50);
    CHECK(p95 >= 500 && p95 < 500 + tol, "TTFT p95 %.3f ms", p95);
    double p99 = json_real_value(json_object_get(tt, "p99")), mx = json_real_value(json_object_get(tt, "max"));
    CHECK(p99 == mx, "p99 of 13 values is the maximum");
    json_t *itl = json_object_get(json_object_get(g, "latency"), "itl_ms");
    double i50 = json_real_value(json_object_get(itl, "p50"));
    /* A gap between two chunks is seen by the client with jitter both
     * ways (a late first chunk shortens it). */
    CHECK(json_integer_value(json_object_get(itl, "n")) == 1 && i50 >= 15 && i50 < 25 + tol, "ITL p50 %.3f ms", i50);
    /* Cost: input 1400 tokens x $1/M + output 143 tokens x $2/M = $0.001686
     * (failed requests without usage count their streamed chunks). */
    json_t *c = json_object_get(g, "cost");
    CHECK(num(c, "input_tokens", NULL) == 1400 && num(c, "output_tokens", NULL) == 143, "tokens in %g out %g",
          num(c, "input_tokens", NULL), num(c, "output_tokens", NULL));
    CHECK(!strcmp(json_string_value(json_object_get(c, "total_usd")), "0.001686"), "total %s", json_string_value(json_object_get(c, "total_usd")));
    CHECK(json_integer_value(json_object_get(c, "per_accepted_pusd")) == 240857143LL, "per accepted %lld",
          (long long)json_integer_value(json_object_get(c, "per_accepted_pusd")));
    CHECK(json_integer_value(json_object_get(c, "per_accepted_first_try_pusd")) == 241000000LL, "per accepted first try %lld",
          (long long)json_integer_value(json_object_get(c, "per_accepted_first_try_pusd")));
    char cents[32];
    eval_format_usd(json_integer_value(json_object_get(c, "total_pusd")) * 1000, 2, cents, sizeof cents);
    CHECK(!strcmp(cents, "1.69"), "1000 such runs cost $%s", cents);
    json_t *tpl = json_object_get(g, "templates");
    json_array_foreach(tpl, i, r)
        if (!strcmp(json_string_value(json_object_get(r, "id")), "cls"))
            CHECK(num(r, "rate_first", NULL) == 0.75 && num(r, "rate", NULL) == 1.0, "cls: 3/4 first try, 4/4 with retries");
    char html[256];
    path_join(html, sizeof html, out, "report.html");
    CHECK(eval_write_report(html, sum, recs, err, sizeof err) == 0, "report: %s", err);
    char *text = read_file(html, NULL, err, sizeof err);
    CHECK(text && strstr(text, "<svg") && strstr(text, "Acceptance rate") && !strstr(text, "http://www.w3.org/1999/xhtml\" src"), "report has charts");
    CHECK(text && !strstr(text, "<script") && !strstr(text, "https://"), "report is self-contained");
    free(text);
    json_decref(sum);
    json_decref(recs);
}

static char dsv4_path[512];

static int run_cli(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s eval %s >%s/cli.log 2>&1", dsv4_path, args, tmpdir);
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

TEST(cli_and_resume) {
    char suite_path[256], out[256], args[1500], err[256], path[300];
    snprintf(suite_path, sizeof suite_path, "%s/suite.jsonl", tmpdir);
    write_file(suite_path, suite_text, strlen(suite_text), err, sizeof err);
    snprintf(out, sizeof out, "%s/cli", tmpdir);
    snprintf(args, sizeof args, "--endpoint http://127.0.0.1:%d,name=mock --compare http://127.0.0.1:%d,name=second,price-in=0.5 "
             "--suite %s --out %s --quiet --timeout 0.3 --retries 0 --warmup 0 --concurrency 2,4 --price-in 1 --price-out 2",
             eval_mock_port(mock), eval_mock_port(mock), suite_path, out);
    int rc = run_cli(args);
    CHECK(rc == 0, "dsv4 eval exit %d", rc);
    const char *files[3] = {"report.html", "summary.json", "records.jsonl"};
    for (int i = 0; i < 3; i++) {
        path_join(path, sizeof path, out, files[i]);
        CHECK(access(path, R_OK) == 0, "%s written", files[i]);
    }
    path_join(path, sizeof path, out, "summary.json");
    json_t *sum = json_load_file(path, 0, NULL);
    CHECK(json_array_size(json_object_get(sum, "groups")) == 4, "2 endpoints x 2 levels");
    json_decref(sum);

    /* Simulate an interrupted run: drop the last item record, leave an
     * orphan request of it and a torn line; --resume must redo exactly
     * that item and nothing else. */
    path_join(path, sizeof path, out, "records.jsonl");
    json_t *recs = eval_read_records(path, err, sizeof err);
    size_t last = 0, items_before = 0;
    size_t i; json_t *r;
    json_array_foreach(recs, i, r) if (!strcmp(json_string_value(json_object_get(r, "type")), "item")) { last = i; items_before++; }
    json_t *victim = json_incref(json_array_get(recs, last));
    json_array_remove(recs, last);
    FILE *f = fopen(path, "w");
    json_array_foreach(recs, i, r) { char *l = json_dumps(r, JSON_COMPACT); fprintf(f, "%s\n", l); free(l); }
    fprintf(f, "{\"type\":\"request\",\"ep\":\"%s\",\"conc\":%lld,\"key\":\"%s\",\"attempt\":1,\"warmup\":false,\"error_kind\":\"ok\",\"in_tokens\":777777}\n",
            json_string_value(json_object_get(victim, "ep")), (long long)json_integer_value(json_object_get(victim, "conc")),
            json_string_value(json_object_get(victim, "key")));
    fprintf(f, "{\"type\":\"req");
    fclose(f);
    json_decref(recs);
    const char *vkey = json_string_value(json_object_get(victim, "key"));
    long expect_reqs = !strcmp(vkey, "chain") ? 3 : 1;
    long before = eval_mock_requests(mock);
    rc = run_cli(strcat(args, " --resume"));
    CHECK(rc == 0, "resume exit %d", rc);
    CHECK(eval_mock_requests(mock) - before == expect_reqs, "resume ran only %s (%ld requests)", vkey, eval_mock_requests(mock) - before);
    recs = eval_read_records(path, err, sizeof err);
    size_t items_after = 0, orphans = 0;
    json_array_foreach(recs, i, r) {
        items_after += !strcmp(json_string_value(json_object_get(r, "type")), "item");
        orphans += json_integer_value(json_object_get(r, "in_tokens")) == 777777;
    }
    CHECK(items_after == items_before && orphans == 0, "items %zu/%zu, orphans %zu", items_after, items_before, orphans);
    json_decref(recs);
    json_decref(victim);

    /* Bad input gets a clear error, not a crash. */
    CHECK(run_cli("--endpoint ftp://x --out /tmp/x") == 2, "bad URL is a usage error");
    CHECK(run_cli("--suite /nonexistent --endpoint http://127.0.0.1:1 --out /tmp/x") == 1, "missing suite");
    snprintf(args, sizeof args, "--endpoint http://127.0.0.1:1 --suite %s --out %s/refused --quiet --retries 0 --warmup 0 --timeout 2", suite_path, tmpdir);
    CHECK(run_cli(args) == 0, "refused connections are recorded, the run completes");
    snprintf(path, sizeof path, "%s/refused/summary.json", tmpdir);
    sum = json_load_file(path, 0, NULL);
    CHECK(num(json_object_get(group0(sum), "errors"), "connect", NULL) == 9, "9 connect errors");
    json_decref(sum);
}

/* Long context up to the limit the endpoint reports (3000 tokens). */
TEST(long_context_auto) {
    char suite_path[256], out[256], args[1024], err[256], path[300];
    const char *lc =
        "{\"id\":\"needle\",\"category\":\"long_context\",\"prompt\":\"{{document}}\\nWhat is the passphrase?\","
        "\"data\":[{\"code\":\"amber-fox-7\"}],\"long_context\":{\"sizes\":[1024,2048,4096],\"depths\":[0.2,0.8],"
        "\"needle\":\"The secret passphrase is {{code}}.\"},\"check\":{\"type\":\"needle\",\"value\":\"{{code}}\"}}\n";
    snprintf(suite_path, sizeof suite_path, "%s/lc.jsonl", tmpdir);
    write_file(suite_path, lc, strlen(lc), err, sizeof err);
    const char *modes[2] = {"", "--long-context auto"};
    int want[2][3] = {{1024, 2048, 0}, {1024, 2048, 2812}};
    for (int m = 0; m < 2; m++) {
        snprintf(out, sizeof out, "%s/lc%d", tmpdir, m);
        snprintf(args, sizeof args, "--endpoint http://127.0.0.1:%d --suite %s --out %s --quiet --warmup 0 --retries 0 %s",
                 eval_mock_port(mock), suite_path, out, modes[m]);
        CHECK(run_cli(args) == 0, "long-context run %d", m);
        snprintf(path, sizeof path, "%s/summary.json", out);
        json_t *sum = json_load_file(path, 0, NULL);
        json_t *lcs = json_object_get(group0(sum), "long_context");
        int n = want[m][2] ? 3 : 2;
        CHECK((int)json_array_size(lcs) == n, "mode %d: %zu sizes", m, json_array_size(lcs));
        for (int k = 0; k < n && k < (int)json_array_size(lcs); k++) {
            json_t *e = json_array_get(lcs, (size_t)k);
            double size = num(e, "size", NULL), prompt = num(e, "prompt_tokens", "mean");
            CHECK(size == want[m][k] && num(e, "items", NULL) == 2 && num(e, "rate_first", NULL) == 1.0,
                  "size %g: %g items, retrieved %g", size, num(e, "items", NULL), num(e, "rate_first", NULL));
            /* prompt + answer (max_tokens 256) fit in size */
            CHECK(prompt > size - 256 - 64 - size / 64 && prompt + 256 <= size, "size %g: prompt tokens %g", size, prompt);
        }
        json_decref(sum);
    }
}

static void *interrupter(void *arg) {
    (void)arg;
    usleep(150000);
    eval_interrupt();
    return NULL;
}

TEST(interrupt_then_resume) {
    char out[128], err[256];
    snprintf(out, sizeof out, "%s/intr", tmpdir);
    mkdir(out, 0755);
    eval_options o;
    options(&o, out);
    o.levels[0] = 1;
    o.warmup = 0;
    o.timeout_s = 0.3;   /* only completeness is checked here */
    pthread_t th;
    pthread_create(&th, NULL, interrupter, NULL);
    int rc = eval_run(&o, &suite, err, sizeof err);
    pthread_join(th, NULL);
    CHECK(rc == 1, "interrupted run returns 1 (%d)", rc);
    char path[256];
    json_t *recs = eval_read_records(path_join(path, sizeof path, out, "records.jsonl"), err, sizeof err);
    size_t items = 0, i; json_t *r;
    json_array_foreach(recs, i, r) items += !strcmp(json_string_value(json_object_get(r, "type")), "item");
    CHECK(items < 9, "stopped early (%zu items)", items);
    json_decref(recs);
    o.resume = 1;
    rc = eval_run(&o, &suite, err, sizeof err);
    CHECK(rc == 0, "resumed run completes (%d %s)", rc, err);
    recs = eval_read_records(path, err, sizeof err);
    items = 0;
    json_array_foreach(recs, i, r) items += !strcmp(json_string_value(json_object_get(r, "type")), "item");
    CHECK(items == 9, "all 9 items after resume (%zu)", items);
    json_decref(recs);
}

int main(void) {
    const char *d = getenv("DSV4");
    snprintf(dsv4_path, sizeof dsv4_path, "%s", d ? d : "build/dsv4");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/dsv4-eval-XXXXXX");
    if (!mkdtemp(tmpdir)) { fprintf(stderr, "mkdtemp failed\n"); return 1; }
    eval_http_global_init();
    char err[256];
    json_t *script = json_loads(script_text, 0, NULL);
    CHECK(script != NULL, "script parses");
    mock = eval_mock_start(script, 0, err, sizeof err);
    json_decref(script);
    CHECK(mock != NULL, "mock starts: %s", err);
    if (!mock) return check_summary();
    int rc = eval_suite_parse(&suite, suite_text, NULL, 0, NULL, 0, 0, err, sizeof err);
    CHECK(rc == 0 && suite.n_items == 9, "suite: %s", err);
    RUN(scripted_run);
    RUN(cli_and_resume);
    RUN(long_context_auto);
    RUN(interrupt_then_resume);
    eval_suite_free(&suite);
    eval_mock_stop(mock);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", tmpdir);
    if (!getenv("KEEP") && system(cmd) != 0) fprintf(stderr, "could not remove %s\n", tmpdir);
    return check_summary();
}
