/*
 * eval_http.c - one streamed chat completion against an OpenAI-compatible
 * endpoint, with the timings the harness reports.
 *
 * The request is POSTed with "stream": true and stream_options.include_usage
 * so that token counts come from the endpoint when it gives them; otherwise
 * output tokens are the number of chunks that carried output.  The SSE
 * parser is incremental (fed by libcurl's write callback) and timestamps
 * the first and last chunk carrying output (content, reasoning or a tool
 * call delta).  Anything the endpoint does wrong - refused connection,
 * timeout, HTTP error status, a malformed or truncated stream, a refusal -
 * ends up in eval_response.kind/error; nothing here aborts the run.  An
 * endpoint that ignores "stream" and answers with one JSON object is
 * accepted too (its TTFT is then its end-to-end time).
 */
#include "eval/eval.h"
#include "util/util.h"
#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

const char *eval_err_name(int kind) {
    switch (kind) {
    case EVAL_OK: return "ok";
    case EVAL_ERR_CONNECT: return "connect";
    case EVAL_ERR_TIMEOUT: return "timeout";
    case EVAL_ERR_HTTP: return "http";
    case EVAL_ERR_MALFORMED: return "malformed";
    case EVAL_ERR_REFUSAL: return "refusal";
    case EVAL_ERR_EMPTY: return "empty";
    }
    return "error";
}

/* ---- SSE parser ------------------------------------------------------------- */

struct eval_sse {
    eval_response *r;
    double t0;
    strbuf line;          /* the current, incomplete line */
    strbuf data;          /* data: fields of the current event */
    strbuf raw;           /* the first bytes, for error messages / non-SSE bodies */
    strbuf content, reasoning;
    int events, done, malformed, refused;
};

eval_sse *eval_sse_new(eval_response *r, double t0) {
    eval_sse *p = xcalloc(1, sizeof *p);
    p->r = r;
    p->t0 = t0;
    return p;
}

void eval_sse_free(eval_sse *p) {
    if (!p) return;
    free(p->line.p); free(p->data.p); free(p->raw.p);
    free(p->content.p); free(p->reasoning.p);
    free(p);
}

static void mark_output(eval_sse *p) {
    double t = now_sec() - p->t0;
    if (p->r->chunks == 0) p->r->ttft_s = t;
    p->r->last_s = t;
    p->r->chunks++;
}

/* Merge one streamed tool-call delta into r->tool_calls by its index. */
static void merge_tool_delta(eval_response *r, json_t *d, size_t fallback_index) {
    json_t *ji = json_object_get(d, "index");
    size_t idx = json_is_integer(ji) && json_integer_value(ji) >= 0 ? (size_t)json_integer_value(ji) : fallback_index;
    if (idx > 64) return;
    while (json_array_size(r->tool_calls) <= idx)
        json_array_append_new(r->tool_calls, json_pack("{s:s,s:s,s:{s:s,s:s}}", "id", "", "type", "function",
                                                       "function", "name", "", "arguments", ""));
    json_t *tc = json_array_get(r->tool_calls, idx);
    json_t *fn = json_object_get(tc, "function");
    const char *id = json_string_value(json_object_get(d, "id"));
    if (id && *id) json_object_set_new(tc, "id", json_string(id));
    json_t *dfn = json_object_get(d, "function");
    const char *name = json_string_value(json_object_get(dfn, "name"));
    json_t *jargs = json_object_get(dfn, "arguments");
    char *args_dump = json_is_object(jargs) ? json_dumps(jargs, JSON_COMPACT) : NULL;  /* some servers send an object */
    const char *args = args_dump ? args_dump : json_string_value(jargs);
    if (name && *name) {
        /* Names arrive whole in practice; append handles split names too. */
        char buf[256];
        snprintf(buf, sizeof buf, "%s%s", json_string_value(json_object_get(fn, "name")), name);
        json_object_set_new(fn, "name", json_string(buf));
    }
    if (args && *args) {
        const char *old = json_string_value(json_object_get(fn, "arguments"));
        size_t ol = strlen(old), al = strlen(args);
        char *cat = xmalloc(ol + al + 1);
        memcpy(cat, old, ol);
        memcpy(cat + ol, args, al + 1);
        json_object_set_new(fn, "arguments", json_string(cat));
        free(cat);
    }
    free(args_dump);
}

static void take_usage(eval_response *r, json_t *u) {
    if (!json_is_object(u)) return;
    json_t *pt = json_object_get(u, "prompt_tokens"), *ct = json_object_get(u, "completion_tokens");
    if (json_is_integer(pt) && json_is_integer(ct)) {
        r->in_tokens = (long)json_integer_value(pt);
        r->out_tokens = (long)json_integer_value(ct);
        r->usage_given = 1;
    }
}

/* One choice object from a chunk ("delta") or a whole response ("message"). */
static void take_choice(eval_sse *p, json_t *ch, int whole) {
    json_t *d = json_object_get(ch, whole ? "message" : "delta");
    if (!d) d = json_object_get(ch, "message");
    int output = 0;
    const char *c = json_string_value(json_object_get(d, "content"));
    if (c && *c) { strbuf_add(&p->content, c, strlen(c)); output = 1; }
    const char *rc = json_string_value(json_object_get(d, "reasoning_content"));
    if (!rc) rc = json_string_value(json_object_get(d, "reasoning"));
    if (rc && *rc) { strbuf_add(&p->reasoning, rc, strlen(rc)); output = 1; }
    const char *ref = json_string_value(json_object_get(d, "refusal"));
    if (ref && *ref) { p->refused = 1; strbuf_add(&p->content, ref, strlen(ref)); output = 1; }
    json_t *tcs = json_object_get(d, "tool_calls");
    if (json_is_array(tcs) && json_array_size(tcs)) {
        size_t i; json_t *tc;
        json_array_foreach(tcs, i, tc) merge_tool_delta(p->r, tc, i);
        output = 1;
    }
    if (output && !whole) mark_output(p);
    const char *fr = json_string_value(json_object_get(ch, "finish_reason"));
    if (fr) {
        snprintf(p->r->finish_reason, sizeof p->r->finish_reason, "%s", fr);
        if (!strcmp(fr, "content_filter")) p->refused = 1;
    }
}

static void take_event_json(eval_sse *p, json_t *ev, int whole) {
    json_t *e = json_object_get(ev, "error");
    if (e) {
        const char *msg = json_string_value(json_object_get(e, "message"));
        if (!msg) msg = json_string_value(e);
        p->r->kind = EVAL_ERR_HTTP;
        snprintf(p->r->error, sizeof p->r->error, "endpoint error: %s", msg ? msg : "(no message)");
        p->done = 1;
        return;
    }
    json_t *choices = json_object_get(ev, "choices");
    if (json_is_array(choices) && json_array_size(choices))
        take_choice(p, json_array_get(choices, 0), whole);
    take_usage(p->r, json_object_get(ev, "usage"));
}

static void dispatch(eval_sse *p) {
    if (!p->data.n) return;
    const char *d = p->data.p;
    p->events++;
    if (!strcmp(d, "[DONE]")) { p->done = 1; }
    else if (!p->done && !p->malformed) {
        json_error_t je;
        json_t *ev = json_loads(d, 0, &je);
        if (!json_is_object(ev)) {
            p->malformed = 1;
            snprintf(p->r->error, sizeof p->r->error, "malformed stream event %d: %.80s", p->events, d);
        } else {
            take_event_json(p, ev, 0);
        }
        json_decref(ev);
    }
    p->data.n = 0;
    p->data.p[0] = 0;
}

static void take_line(eval_sse *p, char *s, size_t n) {
    if (n && s[n - 1] == '\r') s[--n] = 0;
    if (n == 0) { dispatch(p); return; }
    if (s[0] == ':') return;                          /* comment / keep-alive */
    if (n >= 5 && !strncmp(s, "data:", 5)) {
        const char *v = s + 5;
        if (*v == ' ') v++;
        if (p->data.n) strbuf_add(&p->data, "\n", 1);
        strbuf_add(&p->data, v, strlen(v));
        /* Most servers send one data line per event without waiting for
         * the blank line; dispatching a complete JSON line at once keeps
         * the timestamps honest. */
        if (p->data.p[0] == '{' && p->data.p[p->data.n - 1] == '}') {
            json_t *probe = json_loads(p->data.p, JSON_DECODE_ANY, NULL);
            if (probe) { json_decref(probe); dispatch(p); }
        } else if (!strcmp(p->data.p, "[DONE]")) {
            dispatch(p);
        }
    }
    /* event:, id:, retry: lines carry nothing we need. */
}

void eval_sse_feed(eval_sse *p, const char *data, size_t n) {
    if (p->raw.n < 4096) strbuf_add(&p->raw, data, n < 4096 - p->raw.n ? n : 4096 - p->raw.n);
    for (size_t i = 0; i < n; i++) {
        if (data[i] == '\n') {
            if (!p->line.p) strbuf_add(&p->line, "", 0);
            take_line(p, p->line.p, p->line.n);
            p->line.n = 0;
            p->line.p[0] = 0;
        } else {
            size_t j = i;
            while (j < n && data[j] != '\n') j++;
            strbuf_add(&p->line, data + i, j - i);
            i = j - 1;
        }
    }
}

int eval_sse_finish(eval_sse *p) {
    eval_response *r = p->r;
    if (p->line.n) take_line(p, p->line.p, p->line.n);
    dispatch(p);
    if (p->events == 0 && p->raw.n && p->raw.p[0] == '{') {
        /* A non-streamed JSON response. */
        json_t *ev = json_loads(p->raw.p, 0, NULL);
        if (json_is_object(ev)) {
            take_event_json(p, ev, 1);
            if (p->content.n || json_array_size(r->tool_calls)) {
                r->ttft_s = r->last_s = now_sec() - p->t0;
                r->chunks = 1;
            }
            p->done = 1;
        } else {
            p->malformed = 1;
            snprintf(r->error, sizeof r->error, "malformed response body: %.80s", p->raw.p);
        }
        json_decref(ev);
    }
    free(r->content);
    free(r->reasoning);
    r->content = xstrdup(p->content.p ? p->content.p : "");
    r->reasoning = xstrdup(p->reasoning.p ? p->reasoning.p : "");
    /* Without usage, output tokens are the chunks that arrived (also for a
     * failed request: what was streamed was generated). */
    if (!r->usage_given) r->out_tokens = r->chunks;
    if (r->kind != EVAL_OK) return -1;
    if (p->malformed) { r->kind = EVAL_ERR_MALFORMED; return -1; }
    if (!p->done && !r->finish_reason[0]) {
        r->kind = EVAL_ERR_MALFORMED;
        snprintf(r->error, sizeof r->error, p->events ? "stream ended without finish_reason or [DONE]"
                                                      : "empty response: %.80s", p->raw.p ? p->raw.p : "");
        return -1;
    }
    if (p->refused) {
        r->kind = EVAL_ERR_REFUSAL;
        snprintf(r->error, sizeof r->error, "refusal (finish_reason %s)", r->finish_reason[0] ? r->finish_reason : "-");
        return -1;
    }
    if (r->chunks == 0) {
        r->kind = EVAL_ERR_EMPTY;
        snprintf(r->error, sizeof r->error, "no output (finish_reason %s)", r->finish_reason[0] ? r->finish_reason : "-");
        return -1;
    }
    return 0;
}

/* ---- HTTP ------------------------------------------------------------------ */

int eval_http_global_init(void) {
    return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -1;
}

void eval_response_free(eval_response *r) {
    free(r->content);
    free(r->reasoning);
    json_decref(r->tool_calls);
    memset(r, 0, sizeof *r);
}

static size_t on_body(char *ptr, size_t size, size_t nmemb, void *ud) {
    eval_sse_feed(ud, ptr, size * nmemb);
    return size * nmemb;
}

static void chat_url(const char *base, char *out, size_t n) {
    size_t l = strlen(base);
    while (l && base[l - 1] == '/') l--;
    if (l >= 17 && !strncmp(base + l - 17, "/chat/completions", 17)) snprintf(out, n, "%.*s", (int)l, base);
    else if (l >= 3 && !strncmp(base + l - 3, "/v1", 3)) snprintf(out, n, "%.*s/chat/completions", (int)l, base);
    else snprintf(out, n, "%.*s/v1/chat/completions", (int)l, base);
}

int eval_http_chat(const eval_endpoint *ep, json_t *body, double timeout_s, eval_response *r) {
    memset(r, 0, sizeof *r);
    r->tool_calls = json_array();
    json_t *b = json_copy(body);
    json_object_set_new(b, "stream", json_true());
    json_object_set_new(b, "stream_options", json_pack("{s:b}", "include_usage", 1));
    if (ep->model[0] && !json_object_get(b, "model")) json_object_set_new(b, "model", json_string(ep->model));
    char *payload = json_dumps(b, JSON_COMPACT | JSON_REAL_PRECISION(15));
    json_decref(b);
    char url[640];
    chat_url(ep->url, url, sizeof url);

    CURL *c = curl_easy_init();
    if (!c || !payload) {
        free(payload);
        if (c) curl_easy_cleanup(c);
        r->kind = EVAL_ERR_CONNECT;
        snprintf(r->error, sizeof r->error, "cannot create HTTP request");
        r->content = xstrdup(""); r->reasoning = xstrdup("");
        return -1;
    }
    struct curl_slist *h = NULL;
    h = curl_slist_append(h, "Content-Type: application/json");
    h = curl_slist_append(h, "Accept: text/event-stream");
    char auth[600];
    if (ep->api_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", ep->api_key);
        h = curl_slist_append(h, auth);
    }
    double t0 = now_sec();
    eval_sse *p = eval_sse_new(r, t0);
    long tmo = (long)(timeout_s * 1000.0);
    if (tmo <= 0) tmo = 600000;
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, p);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, tmo);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, tmo < 10000 ? tmo : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
    CURLcode cc = curl_easy_perform(c);
    r->e2e_s = now_sec() - t0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->http_status);
    int rc;
    if (cc != CURLE_OK) {
        r->kind = cc == CURLE_OPERATION_TIMEDOUT ? EVAL_ERR_TIMEOUT
                : (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) ? EVAL_ERR_CONNECT
                : EVAL_ERR_MALFORMED;
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(cc));
        eval_sse_finish(p);
        r->kind = cc == CURLE_OPERATION_TIMEDOUT ? EVAL_ERR_TIMEOUT
                : (cc == CURLE_COULDNT_CONNECT || cc == CURLE_COULDNT_RESOLVE_HOST) ? EVAL_ERR_CONNECT
                : EVAL_ERR_MALFORMED;
        snprintf(r->error, sizeof r->error, "%s", curl_easy_strerror(cc));
        rc = -1;
    } else if (r->http_status < 200 || r->http_status >= 300) {
        eval_sse_finish(p);
        r->kind = EVAL_ERR_HTTP;
        char snippet[160];
        snprintf(snippet, sizeof snippet, "%s", p->raw.p ? p->raw.p : "");
        for (char *q = snippet; *q; q++) if (*q == '\n' || *q == '\r') *q = ' ';
        snprintf(r->error, sizeof r->error, "HTTP %ld: %s", r->http_status, snippet);
        rc = -1;
    } else {
        rc = eval_sse_finish(p);
    }
    eval_sse_free(p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    free(payload);
    return rc;
}

/* ---- context limit ------------------------------------------------------------ */

typedef struct { char *p; size_t n; } membuf;

static size_t on_mem(char *ptr, size_t size, size_t nmemb, void *ud) {
    membuf *m = ud;
    size_t n = size * nmemb;
    if (m->n + n > (4u << 20)) return 0;   /* a model list is small */
    m->p = xrealloc(m->p, m->n + n + 1);
    memcpy(m->p + m->n, ptr, n);
    m->n += n;
    m->p[m->n] = 0;
    return n;
}

static int limit_of(json_t *model) {
    static const char *const keys[] = {"max_model_len", "context_length", "context_window", "max_context_length",
                                       "max_context", "n_ctx", NULL};
    json_t *where[2] = {model, json_object_get(model, "meta")};
    for (int w = 0; w < 2; w++)
        for (int k = 0; keys[k]; k++) {
            json_t *v = json_object_get(where[w], keys[k]);
            if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30)) return (int)json_integer_value(v);
        }
    json_t *v = json_object_get(json_object_get(model, "meta"), "n_ctx_train");
    if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30)) return (int)json_integer_value(v);
    return 0;
}

int eval_http_context_limit(const eval_endpoint *ep, double timeout_s, char *sole_model, size_t n) {
    if (sole_model && n) sole_model[0] = 0;
    char url[640];
    chat_url(ep->url, url, sizeof url);
    char *tail = strstr(url, "/chat/completions");
    if (!tail) return 0;
    snprintf(tail, sizeof url - (size_t)(tail - url), "/models");
    CURL *c = curl_easy_init();
    if (!c) return 0;
    membuf m = {0};
    struct curl_slist *h = NULL;
    char auth[600];
    if (ep->api_key[0]) {
        snprintf(auth, sizeof auth, "Authorization: Bearer %s", ep->api_key);
        h = curl_slist_append(h, auth);
    }
    long tmo = (long)(timeout_s * 1000);
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, h);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_mem);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, tmo > 0 ? tmo : 10000L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "127.0.0.1,localhost,::1");
    long status = 0;
    int limit = 0;
    if (curl_easy_perform(c) == CURLE_OK && curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status) == CURLE_OK &&
        status == 200 && m.p) {
        json_t *doc = json_loads(m.p, 0, NULL);
        json_t *data = json_object_get(doc, "data");
        size_t i; json_t *mod;
        json_array_foreach(data, i, mod) {
            const char *id = json_string_value(json_object_get(mod, "id"));
            if (ep->model[0] && (!id || strcmp(id, ep->model))) continue;
            limit = limit_of(mod);
            break;
        }
        if (!limit && json_array_size(data)) limit = limit_of(json_array_get(data, 0));
        const char *only = json_string_value(json_object_get(json_array_get(data, 0), "id"));
        if (json_array_size(data) == 1 && only && sole_model) snprintf(sole_model, n, "%s", only);
        json_decref(doc);
    }
    free(m.p);
    curl_slist_free_all(h);
    curl_easy_cleanup(c);
    return limit;
}
