/*
 * cmd_eval.c - `dsv4 eval`: measure OpenAI-compatible endpoints on a suite
 * of prompt templates (latency percentiles, acceptance with and without
 * retries, JSON / tool-call correctness, cost per accepted answer, long
 * context) and write DIR/report.html, DIR/summary.json, DIR/records.jsonl.
 * The work is done by src/eval/; this file parses options and wires it up.
 * `dsv4 eval --mock-serve SCRIPT` runs the scripted test endpoint.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "cli/cli.h"
#include "eval/eval.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f,
"usage: dsv4 eval --endpoint URL [options] --out DIR\n"
"       dsv4 eval --mock-serve SCRIPT.json [--port N]\n"
"\n"
"Endpoints (OpenAI-compatible: dsv4 serve, vLLM, llama-server, hosted APIs):\n"
"  --endpoint URL[,opt=v...]  base URL (http://host:port, /v1 optional)\n"
"  --compare URL[,opt=v...]   more endpoints, side by side (repeatable; several URLs allowed)\n"
"      per-endpoint opts: name=LABEL model=NAME api-key-env=VAR price-in=USD\n"
"                         price-out=USD cost-per-hour=USD\n"
"  --model NAME               model name sent to every endpoint (default: none)\n"
"  --api-key-env VAR          read the bearer token from environment variable VAR\n"
"  --name LABEL               label of the --endpoint in the report\n"
"  --price-in USD             price per 1M input tokens of --endpoint (e.g. 0.27)\n"
"  --price-out USD            price per 1M output tokens of --endpoint\n"
"  --cost-per-hour USD        self-hosted: cost per hour of --endpoint\n"
"Suite:\n"
"  --suite FILE               JSON lines / JSON suite (default: the built-in suite)\n"
"  --limit N                  only the first N templates\n"
"  --only LIST                only these template ids or categories (comma-separated)\n"
"  --long-context SIZES       context sizes for long-context templates, e.g. 1k,4k,16k;\n"
"                             auto: 1k, 2k, 4k ... up to the context limit\n"
"  --max-context N            the context limit: skip sizes above N tokens (default: what\n"
"                             the endpoints report in /v1/models, if they do)\n"
"  --list                     print the expanded items and exit\n"
"Load and policy:\n"
"  --concurrency C[,C...]     concurrency levels (default 1); each runs the whole suite\n"
"  --request-rate R[,R...]    request rates (requests/s started, evenly spaced); each level\n"
"                             runs the suite at every rate (default: unpaced)\n"
"  --warmup N                 warm-up requests per endpoint and level, excluded (default 1)\n"
"  --retries N                retry a failed item up to N more times (default 2)\n"
"  --max-attempts N           the same as --retries N-1\n"
"  --timeout S                per-request timeout in seconds (default 120)\n"
"Output:\n"
"  --out DIR                  report.html, summary.json, records.jsonl (created)\n"
"  --resume                   keep DIR/records.jsonl and run only unfinished items\n"
"  --report-only              rebuild summary and report from DIR/records.jsonl\n"
"  --progress / --no-progress progress bar on stderr (default: when a terminal)\n"
"See docs/eval.md for the suite format and the metric definitions.\n");
}

static int parse_sizes(const char *s, int *out, int max) {
    int n = 0;
    const char *p = s;
    while (*p) {
        char *end;
        double v = strtod(p, &end);
        if (end == p || v <= 0) return -1;
        if (*end == 'k' || *end == 'K') { v *= 1024; end++; }
        else if (*end == 'm' || *end == 'M') { v *= 1024 * 1024; end++; }
        if (n == max || v > 1e9) return -1;
        out[n++] = (int)v;
        if (*end == ',') end++;
        else if (*end) return -1;
        p = end;
    }
    return n;
}

/* --long-context auto: 1k, 2k, 4k, ... below the limit, then 15/16 of the
 * limit itself (room for the question and the answer). */
static void auto_sizes(eval_options *o) {
    int n = 0, top = (int)((long long)o->max_context * 15 / 16);
    for (int s = 1024; s < top && n < EVAL_MAX_SIZES - 1; s *= 2) o->lc_sizes[n++] = s;
    if (top > 0) o->lc_sizes[n++] = top;
    o->n_lc_sizes = n;
}

static void default_name(eval_endpoint *e) {
    const char *u = strstr(e->url, "://");
    u = u ? u + 3 : e->url;
    snprintf(e->name, sizeof e->name, "%.*s", (int)strcspn(u, "/"), u);
}

/* "URL,key=value,..." -> endpoint. */
static int parse_endpoint(const char *spec, eval_endpoint *e, char *err, size_t errlen) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", spec);
    char *save = NULL;
    char *url = strtok_r(buf, ",", &save);
    if (!url || strncmp(url, "http", 4)) return errf(err, errlen, "endpoint \"%s\" is not an http(s) URL", spec);
    snprintf(e->url, sizeof e->url, "%s", url);
    for (char *kv = strtok_r(NULL, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) return errf(err, errlen, "endpoint option \"%s\" is not key=value", kv);
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        if (!strcmp(k, "name")) snprintf(e->name, sizeof e->name, "%s", v);
        else if (!strcmp(k, "model")) snprintf(e->model, sizeof e->model, "%s", v);
        else if (!strcmp(k, "api-key-env")) {
            const char *key = getenv(v);
            if (!key) return errf(err, errlen, "environment variable %s is not set", v);
            snprintf(e->api_key, sizeof e->api_key, "%s", key);
        } else if (!strcmp(k, "price-in")) { if (eval_parse_usd(v, &e->price_in_uusd) < 0) return errf(err, errlen, "bad price-in \"%s\"", v); }
        else if (!strcmp(k, "price-out")) { if (eval_parse_usd(v, &e->price_out_uusd) < 0) return errf(err, errlen, "bad price-out \"%s\"", v); }
        else if (!strcmp(k, "cost-per-hour")) { if (eval_parse_usd(v, &e->per_hour_uusd) < 0) return errf(err, errlen, "bad cost-per-hour \"%s\"", v); }
        else return errf(err, errlen, "unknown endpoint option \"%s\"", k);
    }
    return 0;
}

/* --only a,b,c: keep the items whose template id or category is listed. */
static int in_list(const char *list, const char *name) {
    size_t l = strlen(name);
    for (const char *p = list; *p;) {
        const char *e = strchr(p, ',');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n == l && !strncmp(p, name, n)) return 1;
        p += n + (e != NULL);
    }
    return 0;
}

static void filter_items(eval_suite *s, const char *only) {
    size_t w = 0;
    for (size_t i = 0; i < s->n_items; i++) {
        eval_item *it = &s->items[i];
        if (in_list(only, it->template_id) || in_list(only, it->category)) { s->items[w++] = *it; continue; }
        json_decref(it->messages);
        json_decref(it->tools);
        json_decref(it->response_format);
        json_decref(it->check);
    }
    s->n_items = w;
}

static int mkdir_p(const char *dir) {
    char buf[1024];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; if (mkdir(buf, 0755) != 0 && errno != EEXIST) return -1; *p = '/'; }
    return mkdir(buf, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

static volatile sig_atomic_t got_signal;
static void on_signal(int sig) {
    (void)sig;
    got_signal = 1;
    eval_interrupt();
}

static int mock_serve(const char *script_path, int port) {
    char err[256];
    char *text = read_file(script_path, NULL, err, sizeof err);
    if (!text) { fprintf(stderr, "dsv4 eval: %s\n", err); return 1; }
    json_error_t je;
    json_t *script = json_loads(text, 0, &je);
    free(text);
    if (!json_is_object(script)) {
        fprintf(stderr, "dsv4 eval: %s: line %d: %s\n", script_path, je.line, script ? "not an object" : je.text);
        json_decref(script);
        return 1;
    }
    eval_mock *m = eval_mock_start(script, port, err, sizeof err);
    json_decref(script);
    if (!m) { fprintf(stderr, "dsv4 eval: %s\n", err); return 1; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    printf("mock endpoint listening on http://127.0.0.1:%d\n", eval_mock_port(m));
    fflush(stdout);
    while (!got_signal) pause();
    printf("mock endpoint: %ld requests served\n", eval_mock_requests(m));
    eval_mock_stop(m);
    return 0;
}

static int finish(const eval_options *o, const char *suite_name, int quiet) {
    char path[1100], err[256];
    path_join(path, sizeof path, o->out_dir, "records.jsonl");
    json_t *records = eval_read_records(path, err, sizeof err);
    if (!records) { fprintf(stderr, "dsv4 eval: %s\n", err); return 1; }
    json_t *sum = eval_summarize(o, suite_name, records);
    path_join(path, sizeof path, o->out_dir, "summary.json");
    int rc = 0;
    if (json_dump_file(sum, path, JSON_INDENT(2) | JSON_REAL_PRECISION(10)) != 0) {
        fprintf(stderr, "dsv4 eval: cannot write %s\n", path);
        rc = 1;
    }
    path_join(path, sizeof path, o->out_dir, "report.html");
    if (eval_write_report(path, sum, records, err, sizeof err) < 0) { fprintf(stderr, "dsv4 eval: %s\n", err); rc = 1; }
    if (!quiet) {
        eval_print_table(stdout, sum);
        printf("wrote %s/report.html, summary.json, records.jsonl\n", o->out_dir);
        fflush(stdout);   /* before any message on stderr */
    }
    json_decref(sum);
    json_decref(records);
    return rc;
}

int cmd_eval(int argc, char **argv) {
    eval_options o;
    memset(&o, 0, sizeof o);
    o.max_attempts = 3;
    o.warmup = 1;
    o.timeout_s = 120;
    o.progress = isatty(2);
    o.levels[0] = 1;
    o.n_levels = 1;
    const char *endpoint = NULL, *model = NULL, *key_env = NULL, *name = NULL;
    const char *price_in = NULL, *price_out = NULL, *per_hour = NULL, *mock = NULL, *only = NULL;
    const char *compare[EVAL_MAX_ENDPOINTS];
    int n_compare = 0, list = 0, report_only = 0, quiet = 0, port = 0, lc_auto = 0;
    char err[256];

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        int has = i + 1 < argc;
#define NEXT() (has ? argv[++i] : (fprintf(stderr, "dsv4 eval: %s needs a value\n", a), (char *)NULL))
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--endpoint")) { if (!(endpoint = NEXT())) return 2; }
        else if (!strcmp(a, "--compare")) {
            if (!has) { fprintf(stderr, "dsv4 eval: --compare needs a URL\n"); return 2; }
            while (i + 1 < argc && strncmp(argv[i + 1], "--", 2)) {
                if (n_compare + 1 >= EVAL_MAX_ENDPOINTS) { fprintf(stderr, "dsv4 eval: at most %d endpoints\n", EVAL_MAX_ENDPOINTS); return 2; }
                compare[n_compare++] = argv[++i];
            }
        }
        else if (!strcmp(a, "--model")) { if (!(model = NEXT())) return 2; }
        else if (!strcmp(a, "--api-key-env")) { if (!(key_env = NEXT())) return 2; }
        else if (!strcmp(a, "--name")) { if (!(name = NEXT())) return 2; }
        else if (!strcmp(a, "--price-in")) { if (!(price_in = NEXT())) return 2; }
        else if (!strcmp(a, "--price-out")) { if (!(price_out = NEXT())) return 2; }
        else if (!strcmp(a, "--cost-per-hour")) { if (!(per_hour = NEXT())) return 2; }
        else if (!strcmp(a, "--suite")) { if (!(o.suite_path = NEXT())) return 2; }
        else if (!strcmp(a, "--out")) { if (!(o.out_dir = NEXT())) return 2; }
        else if (!strcmp(a, "--mock-serve")) { if (!(mock = NEXT())) return 2; }
        else if (!strcmp(a, "--only")) { if (!(only = NEXT())) return 2; }
        else if (!strcmp(a, "--list")) list = 1;
        else if (!strcmp(a, "--resume")) o.resume = 1;
        else if (!strcmp(a, "--report-only")) report_only = 1;
        else if (!strcmp(a, "--progress")) o.progress = 1;
        else if (!strcmp(a, "--no-progress")) o.progress = 0;
        else if (!strcmp(a, "--quiet")) { quiet = 1; o.progress = 0; }
        else if (!strcmp(a, "--limit") || !strcmp(a, "--warmup") || !strcmp(a, "--retries") || !strcmp(a, "--max-attempts") ||
                 !strcmp(a, "--max-context") || !strcmp(a, "--port")) {
            const char *v = NEXT();
            if (!v) return 2;
            char *end;
            long n = strtol(v, &end, 10);
            if (*end || n < 0 || n > 100000000) { fprintf(stderr, "dsv4 eval: %s: bad number \"%s\"\n", a, v); return 2; }
            if (!strcmp(a, "--limit")) o.limit = (int)n;
            else if (!strcmp(a, "--warmup")) o.warmup = (int)n;
            else if (!strcmp(a, "--retries")) o.max_attempts = (int)n + 1;
            else if (!strcmp(a, "--max-attempts")) o.max_attempts = n < 1 ? 1 : (int)n;
            else if (!strcmp(a, "--max-context")) o.max_context = (int)n;
            else port = (int)n;
        }
        else if (!strcmp(a, "--request-rate")) {
            const char *v = NEXT();
            if (!v) return 2;
            o.n_rates = 0;
            for (const char *p = v; *p;) {
                char *end;
                double d = strtod(p, &end);
                if (end == p || d <= 0 || o.n_rates == EVAL_MAX_LEVELS || (*end && *end != ',')) {
                    fprintf(stderr, "dsv4 eval: --request-rate: bad list \"%s\"\n", v);
                    return 2;
                }
                o.rates[o.n_rates++] = d;
                p = *end ? end + 1 : end;
            }
        }
        else if (!strcmp(a, "--timeout")) {
            const char *v = NEXT();
            if (!v) return 2;
            char *end;
            double d = strtod(v, &end);
            if (*end || d < 0) { fprintf(stderr, "dsv4 eval: %s: bad number \"%s\"\n", a, v); return 2; }
            o.timeout_s = d;
        }
        else if (!strcmp(a, "--concurrency")) {
            const char *v = NEXT();
            if (!v) return 2;
            int n = parse_sizes(v, o.levels, EVAL_MAX_LEVELS);
            if (n <= 0) { fprintf(stderr, "dsv4 eval: --concurrency: bad list \"%s\"\n", v); return 2; }
            for (int k = 0; k < n; k++) if (o.levels[k] > 1024) { fprintf(stderr, "dsv4 eval: concurrency above 1024\n"); return 2; }
            o.n_levels = n;
        }
        else if (!strcmp(a, "--long-context")) {
            const char *v = NEXT();
            if (!v) return 2;
            if (!strcmp(v, "auto")) { lc_auto = 1; continue; }
            int n = parse_sizes(v, o.lc_sizes, EVAL_MAX_SIZES);
            if (n <= 0) { fprintf(stderr, "dsv4 eval: --long-context: bad list \"%s\"\n", v); return 2; }
            o.n_lc_sizes = n;
        }
        else { fprintf(stderr, "dsv4 eval: unknown option %s\n", a); usage(stderr); return 2; }
#undef NEXT
    }
    if (mock) return mock_serve(mock, port);
    if (lc_auto && o.max_context > 0) auto_sizes(&o);

    eval_suite suite;
    if (eval_suite_load(&suite, o.suite_path, o.limit, o.lc_sizes, o.n_lc_sizes, o.max_context, err, sizeof err) < 0) {
        fprintf(stderr, "dsv4 eval: %s\n", err);
        return 1;
    }
    if (only) filter_items(&suite, only);
    if (suite.n_items == 0) {
        fprintf(stderr, "dsv4 eval: --only %s matches no template id or category\n", only ? only : "");
        eval_suite_free(&suite);
        return 2;
    }
    if (list) {
        for (size_t i = 0; i < suite.n_items; i++)
            printf("%-40s %-14s %s\n", suite.items[i].key, suite.items[i].category,
                   json_string_value(json_object_get(suite.items[i].check, "type")));
        printf("%zu templates, %zu items\n", json_array_size(suite.templates), suite.n_items);
        eval_suite_free(&suite);
        return 0;
    }
    if (!endpoint || !o.out_dir) {
        fprintf(stderr, "dsv4 eval: --endpoint and --out are required\n");
        usage(stderr);
        eval_suite_free(&suite);
        return 2;
    }
    /* Endpoints: --endpoint then --compare, sharing model and key. */
    const char *specs[EVAL_MAX_ENDPOINTS];
    specs[0] = endpoint;
    for (int i = 0; i < n_compare; i++) specs[i + 1] = compare[i];
    o.n_ep = n_compare + 1;
    int rc = 0;
    for (int i = 0; i < o.n_ep && !rc; i++) {
        eval_endpoint *e = &o.ep[i];
        if (model) snprintf(e->model, sizeof e->model, "%s", model);
        if (key_env) {
            const char *k = getenv(key_env);
            if (!k) { fprintf(stderr, "dsv4 eval: environment variable %s is not set\n", key_env); rc = 2; break; }
            snprintf(e->api_key, sizeof e->api_key, "%s", k);
        }
        if (i == 0) {
            if ((price_in && eval_parse_usd(price_in, &e->price_in_uusd) < 0) ||
                (price_out && eval_parse_usd(price_out, &e->price_out_uusd) < 0) ||
                (per_hour && eval_parse_usd(per_hour, &e->per_hour_uusd) < 0)) {
                fprintf(stderr, "dsv4 eval: prices are decimal dollars with at most 6 decimals, e.g. 0.27\n");
                rc = 2;
                break;
            }
            if (name) snprintf(e->name, sizeof e->name, "%s", name);
        }
        if (parse_endpoint(specs[i], e, err, sizeof err) < 0) { fprintf(stderr, "dsv4 eval: %s\n", err); rc = 2; break; }
        if (!e->name[0]) default_name(e);
        for (int j = 0; j < i; j++)
            if (!strcmp(o.ep[j].name, e->name)) {
                char base[48];
                snprintf(base, sizeof base, "%s", e->name);
                snprintf(e->name, sizeof e->name, "%s#%d", base, i + 1);
            }
    }
    if (rc) { eval_suite_free(&suite); return rc; }
    if (!report_only && (o.max_context == 0 || lc_auto)) {
        /* Long context goes up to the endpoints' limit when they report it. */
        int limit = 0;
        eval_http_global_init();
        for (int i = 0; i < o.n_ep; i++) {
            char sole[128];
            int l = eval_http_context_limit(&o.ep[i], 10, sole, sizeof sole);
            if (!o.ep[i].model[0] && sole[0]) snprintf(o.ep[i].model, sizeof o.ep[i].model, "%s", sole);
            if (l > 0 && (limit == 0 || l < limit)) limit = l;
        }
        if (o.max_context == 0 && limit > 0) {
            o.max_context = limit;
            if (!quiet) fprintf(stderr, "dsv4 eval: context limit %d tokens (from /v1/models)\n", limit);
        }
        if (lc_auto && o.max_context == 0) {
            fprintf(stderr, "dsv4 eval: --long-context auto needs --max-context N: the endpoints do not report their limit\n");
            eval_suite_free(&suite);
            return 2;
        }
        if (lc_auto) auto_sizes(&o);
        if (o.max_context > 0) {
            eval_suite_free(&suite);
            if (eval_suite_load(&suite, o.suite_path, o.limit, o.lc_sizes, o.n_lc_sizes, o.max_context, err, sizeof err) < 0) {
                fprintf(stderr, "dsv4 eval: %s\n", err);
                return 1;
            }
            if (only) filter_items(&suite, only);
        }
    }
    if (mkdir_p(o.out_dir) < 0) {
        fprintf(stderr, "dsv4 eval: cannot create %s: %s\n", o.out_dir, strerror(errno));
        eval_suite_free(&suite);
        return 1;
    }
    if (report_only) {
        rc = finish(&o, suite.name, quiet);
        eval_suite_free(&suite);
        return rc;
    }
    if (eval_http_global_init() < 0) { fprintf(stderr, "dsv4 eval: cannot initialise libcurl\n"); eval_suite_free(&suite); return 1; }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = (int)SA_RESETHAND;   /* a second Ctrl-C kills at once */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    if (!quiet)
        fprintf(stderr, "dsv4 eval: %zu items x %d endpoint(s) x %d level(s), up to %d attempt(s) each\n", suite.n_items, o.n_ep,
                o.n_levels * (o.n_rates ? o.n_rates : 1), o.max_attempts);
    int run = eval_run(&o, &suite, err, sizeof err);
    if (run < 0) { fprintf(stderr, "dsv4 eval: %s\n", err); eval_suite_free(&suite); return 1; }
    rc = finish(&o, suite.name, quiet);
    if (run == 1) {
        fprintf(stderr, "dsv4 eval: interrupted; the report covers the finished items. Rerun with --resume to continue.\n");
        rc = 1;
    }
    eval_suite_free(&suite);
    return rc;
}
