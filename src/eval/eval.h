/*
 * eval.h - `dsv4 eval`: an evaluation harness for any OpenAI-compatible
 * chat-completions endpoint.  It is independent of the engine: it only
 * speaks HTTP (libcurl, streaming server-sent events).
 *
 * The module is split by concern:
 *   eval_suite.c   suite files (JSON lines / JSON array) -> expanded items;
 *                  the built-in default suite (eval_default_suite.S)
 *   eval_http.c    one streamed chat completion over HTTP, parsed from SSE
 *   eval_schema.c  a JSON-schema validator (the subset pipelines use)
 *   eval_check.c   acceptance checks: exact/contains/regex/json/schema/needle
 *   eval_run.c     the runner: worker threads, retries, tool chains, records,
 *                  resume, request rate, warm-up, progress bar
 *   eval_stats.c   percentiles, exact cost arithmetic, summary.json
 *   eval_report.c  report.html (inline SVG charts) and the terminal table
 *   eval_mock.c    a scripted OpenAI-compatible endpoint for tests
 *
 * Records (records.jsonl) are the source of truth: the summary and the
 * report are computed from them alone, which is what makes resume work.
 *
 * Money is integer arithmetic: prices are held in micro-dollars (per
 * million tokens, or per hour) and costs in pico-dollars (1e-12 USD), so
 * a request's cost is exact and sums never drift.
 */
#ifndef DSV4_EVAL_H
#define DSV4_EVAL_H
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#define EVAL_MAX_ENDPOINTS 8
#define EVAL_MAX_LEVELS 8
#define EVAL_MAX_SIZES 16

/* ---- endpoints and options ------------------------------------------- */

typedef struct {
    char name[64];          /* label in the report (host:port unless given) */
    char url[512];          /* base URL, e.g. http://127.0.0.1:8080 (/v1 optional) */
    char model[128];
    char api_key[512];      /* read from the environment, never printed */
    int64_t price_in_uusd;  /* micro-USD per 1M input tokens */
    int64_t price_out_uusd; /* micro-USD per 1M output tokens */
    int64_t per_hour_uusd;  /* micro-USD per hour (self-hosted), 0 = none */
} eval_endpoint;

typedef struct {
    eval_endpoint ep[EVAL_MAX_ENDPOINTS];
    int n_ep;
    int levels[EVAL_MAX_LEVELS];  /* concurrency levels */
    int n_levels;
    double rates[EVAL_MAX_LEVELS];/* request rates (requests/s started); none = unpaced */
    int n_rates;
    int max_attempts;             /* 1 + retries */
    int warmup;                   /* requests per (endpoint, level) excluded */
    double timeout_s;             /* per HTTP request */
    int max_context;              /* tokens; long-context sizes above are skipped, 0 = no cap */
    int lc_sizes[EVAL_MAX_SIZES]; /* override of long-context sizes (tokens) */
    int n_lc_sizes;
    int limit;                    /* first N templates, 0 = all */
    int progress;                 /* draw a progress bar on stderr */
    int resume;
    const char *suite_path;       /* NULL = built-in default suite */
    const char *out_dir;
} eval_options;

/* ---- suites ------------------------------------------------------------ */

typedef struct {
    char key[200];          /* template id + row (+ size/depth): unique */
    const char *template_id;
    const char *category;
    json_t *messages;       /* owned: the conversation to send */
    json_t *tools;          /* owned or NULL */
    json_t *response_format;/* owned or NULL */
    json_t *check;          /* owned: the acceptance check, variables filled */
    int max_tokens;
    double temperature;
    int lc_size;            /* target context size in tokens, 0 = not long-context */
    double lc_depth;        /* needle position 0..1 */
} eval_item;

typedef struct {
    json_t *templates;      /* array of template objects (owned) */
    char name[256];
    eval_item *items;
    size_t n_items;
} eval_suite;

/* Load a suite file (or the built-in default when path is NULL), keep the
 * first `limit` templates (0 = all) and expand it into items.  Long-context
 * templates use sizes (when n_sizes > 0) instead of their own, skipping any
 * above max_context (0 = no cap). */
int eval_suite_load(eval_suite *s, const char *path, int limit, const int *sizes,
                    int n_sizes, int max_context, char *err, size_t errlen);
int eval_suite_parse(eval_suite *s, const char *text, const char *base_dir, int limit,
                     const int *sizes, int n_sizes, int max_context, char *err, size_t errlen);
void eval_suite_free(eval_suite *s);
/* The built-in default suite (JSON lines, NUL-terminated). */
const char *eval_default_suite(void);
/* Replace {{var}} in every string of v from row; a string that is exactly
 * "{{var}}" takes the row's value with its JSON type.  Returns a new ref. */
json_t *eval_fill(json_t *v, json_t *row);
/* Deterministic filler text of about `tokens` tokens (common words, one
 * token each, plus one per sentence end). */
char *eval_haystack(int tokens, uint32_t seed);

/* ---- HTTP client ------------------------------------------------------- */

enum { EVAL_OK = 0, EVAL_ERR_CONNECT, EVAL_ERR_TIMEOUT, EVAL_ERR_HTTP,
       EVAL_ERR_MALFORMED, EVAL_ERR_REFUSAL, EVAL_ERR_EMPTY };
const char *eval_err_name(int kind);

typedef struct {
    int kind;               /* EVAL_OK or an EVAL_ERR_* */
    long http_status;
    char error[256];
    double ttft_s;          /* request start -> first content chunk */
    double e2e_s;           /* request start -> end of stream */
    double last_s;          /* request start -> last content chunk */
    int chunks;             /* chunks that carried output */
    long in_tokens, out_tokens;
    int usage_given;        /* tokens came from the endpoint's usage */
    char finish_reason[32];
    char *content;          /* malloc'd, never NULL after eval_http_chat */
    char *reasoning;
    json_t *tool_calls;     /* array of {id, type, function:{name, arguments}} */
} eval_response;

int eval_http_global_init(void);
/* POST {url}/v1/chat/completions with body (stream is forced on).  Always
 * fills r; returns 0 when a completion arrived, -1 otherwise. */
int eval_http_chat(const eval_endpoint *ep, json_t *body, double timeout_s, eval_response *r);
void eval_response_free(eval_response *r);
/* The endpoint's context limit in tokens from GET /v1/models (vLLM
 * max_model_len, context_length, context_window, llama.cpp meta.n_ctx /
 * n_ctx_train), for model `ep->model` or the first listed; 0 if unknown.
 * When the endpoint lists exactly one model, its id goes to sole_model. */
int eval_http_context_limit(const eval_endpoint *ep, double timeout_s, char *sole_model, size_t n);
/* Feed SSE bytes into a parser (exposed for tests and fuzzing). */
typedef struct eval_sse eval_sse;
eval_sse *eval_sse_new(eval_response *r, double t0);
void eval_sse_feed(eval_sse *p, const char *data, size_t n);
int eval_sse_finish(eval_sse *p);    /* 0 ok, -1 malformed/empty (r->kind set) */
void eval_sse_free(eval_sse *p);

/* ---- schema and checks ------------------------------------------------- */

/* 1 if inst validates against schema, 0 if not (why filled). */
int eval_schema_validate(json_t *schema, json_t *inst, char *why, size_t whylen);

typedef struct {
    int accepted;
    int is_json;        /* the check wanted JSON */
    int json_valid;
    int schema_valid;
    char why[200];
} eval_check_result;

/* Check a final text answer against a check spec (everything except the
 * tool-chain steps, whose "final" sub-check comes here too). */
void eval_check_text(json_t *check, const char *text, eval_check_result *r);
/* Extract the JSON value from an answer (bare, or inside ``` fences).
 * New reference or NULL. */
json_t *eval_extract_json(const char *text);
/* 1 if every key/element of want is in got with an equal value (strings
 * compared case-insensitively, numbers numerically). */
int eval_json_subset(json_t *want, json_t *got);

/* ---- runner ------------------------------------------------------------ */

/* Run every endpoint x level over the suite, appending records to
 * out_dir/records.jsonl.  Returns 0, 1 if interrupted, -1 on error. */
int eval_run(const eval_options *o, const eval_suite *s, char *err, size_t errlen);
/* Ask a running eval_run to stop after the requests in flight (signal safe). */
void eval_interrupt(void);

/* ---- stats, cost, summary --------------------------------------------- */

/* Nearest-rank percentile of v[0..n) (sorted in place): the value at rank
 * ceil(p/100 * n), rank at least 1.  0 when n == 0. */
double eval_percentile(double *v, size_t n, double p);
/* Parse a decimal dollar amount ("0.27", "2", "1.5e0" is refused) into
 * integer micro-dollars.  -1 on a bad string. */
int eval_parse_usd(const char *s, int64_t *uusd);
/* Cost of one request in pico-dollars. */
int64_t eval_request_cost_pusd(long in_tokens, long out_tokens, int64_t price_in_uusd,
                               int64_t price_out_uusd);
/* Format pico-dollars as dollars with `decimals` digits, rounded half up. */
void eval_format_usd(int64_t pusd, int decimals, char *buf, size_t n);
/* Read records.jsonl into an array (bad lines skipped). */
json_t *eval_read_records(const char *path, char *err, size_t errlen);
/* Compute summary.json from options + records. */
json_t *eval_summarize(const eval_options *o, const char *suite_name, json_t *records);

/* ---- report ------------------------------------------------------------ */

int eval_write_report(const char *path, json_t *summary, json_t *records, char *err, size_t errlen);
void eval_print_table(FILE *f, json_t *summary);

/* ---- scripted test endpoint ------------------------------------------- */

typedef struct eval_mock eval_mock;
/* Start a mock endpoint on 127.0.0.1:port (0 = any free port) following
 * the JSON script (see eval_mock.c).  NULL + err on failure. */
eval_mock *eval_mock_start(json_t *script, int port, char *err, size_t errlen);
int eval_mock_port(const eval_mock *m);
long eval_mock_requests(const eval_mock *m);
void eval_mock_stop(eval_mock *m);

#endif
