/*
 * eval_mock.c - a scripted OpenAI-compatible endpoint (libmicrohttpd) with
 * known delays and answers, for testing `dsv4 eval` exactly.
 *
 * Script:
 *   {"rules": [ {"match": "REGEX", "turn": K, "responses": [R, R, ...]}, ...],
 *    "default": R}
 * A request's text is all its message contents joined by newlines; the
 * first rule whose regex matches (and, when "turn" is given, whose number
 * of tool messages so far equals K) answers.  A rule's n-th matching
 * request gets responses[n] (the last one repeats, or with "cycle": true
 * they start over), which is how retries are scripted.  A response R:
 *   "content": "text with $1..$9 from the regex captures"
 *   "chunks": N            split content into N chunks (default: per word)
 *   "ttft_ms", "itl_ms"    delay before the first chunk / between chunks
 *   "prompt_tokens", "completion_tokens"   usage (defaults: words + sentence
 *                          ends of the conversation, chunks)
 *   "usage": false         omit the usage chunk
 *   "tool_calls": [{"name": ..., "arguments": {...}}]
 *   "auto": true           answer like a cooperative model: a JSON instance
 *                          of the response_format schema, or the next
 *                          offered tool (one per turn, args from its schema)
 *   "status": 500, "body": "..."   an HTTP error
 *   "malformed": true      a broken event after the first chunk
 *   "truncate": true       close the stream without finish_reason / [DONE]
 *   "hang_ms": N           wait before answering at all (timeouts)
 *   "refusal": "text"      a refusal delta
 *   "finish_reason": "stop"
 * GET /v1/models lists one model, "mock", with "max_model_len" when the
 * script gives "context_length".
 */
#include "eval/eval.h"
#include "util/util.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct eval_mock {
    struct MHD_Daemon *d;
    json_t *script;
    pthread_mutex_t mu;
    json_t *counters;       /* rule index -> times matched */
    atomic_long requests;
    atomic_int stopping;
    int port;
};

static void sleep_ms(eval_mock *m, double msec) {
    /* In slices, so that stopping the mock is never held up long. */
    double end = now_sec() + msec / 1000.0;
    for (;;) {
        double left = (end - now_sec()) * 1000.0;
        if (left <= 0 || atomic_load(&m->stopping)) break;
        double s = left > 20 ? 20 : left;
        struct timespec ts = {0, (long)(s * 1e6)};
        nanosleep(&ts, NULL);
    }
}

/* ---- event stream ------------------------------------------------------- */

typedef struct {
    char **ev;              /* full SSE text of each event */
    double *delay_ms;       /* wait before sending it */
    size_t n, cap, cur, off;
    eval_mock *m;
} stream;

static void push_ev(stream *s, double delay, json_t *obj, const char *raw) {
    if (s->n == s->cap) {
        s->cap = s->cap ? s->cap * 2 : 16;
        s->ev = xrealloc(s->ev, s->cap * sizeof *s->ev);
        s->delay_ms = xrealloc(s->delay_ms, s->cap * sizeof *s->delay_ms);
    }
    char *body = raw ? xstrdup(raw) : json_dumps(obj, JSON_COMPACT);
    json_decref(obj);   /* push_ev owns obj */
    size_t l = strlen(body);
    char *e = xmalloc(l + 9);
    snprintf(e, l + 9, "data: %s\n\n", body);
    free(body);
    s->ev[s->n] = e;
    s->delay_ms[s->n] = delay;
    s->n++;
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    stream *s = cls;
    if (s->cur >= s->n) return MHD_CONTENT_READER_END_OF_STREAM;
    if (s->off == 0 && s->delay_ms[s->cur] > 0) sleep_ms(s->m, s->delay_ms[s->cur]);
    if (atomic_load(&s->m->stopping)) return MHD_CONTENT_READER_END_WITH_ERROR;
    const char *e = s->ev[s->cur];
    size_t l = strlen(e) - s->off;
    if (l > max) l = max;
    memcpy(buf, e + s->off, l);
    s->off += l;
    if (s->off >= strlen(e)) { s->cur++; s->off = 0; }
    return (ssize_t)l;
}

static void stream_free(void *cls) {
    stream *s = cls;
    for (size_t i = 0; i < s->n; i++) free(s->ev[i]);
    free(s->ev);
    free(s->delay_ms);
    free(s);
}

/* ---- answers ------------------------------------------------------------ */

/* A value that validates against schema (the subset the suites use). */
static json_t *instance_of(json_t *schema, int depth) {
    if (!json_is_object(schema) || depth > 8) return json_string("x");
    json_t *c = json_object_get(schema, "const");
    if (c) return json_deep_copy(c);
    json_t *en = json_object_get(schema, "enum");
    if (json_is_array(en) && json_array_size(en)) return json_deep_copy(json_array_get(en, 0));
    json_t *any = json_object_get(schema, "anyOf");
    if (json_is_array(any) && json_array_size(any)) return instance_of(json_array_get(any, 0), depth + 1);
    json_t *t = json_object_get(schema, "type");
    const char *type = json_is_string(t) ? json_string_value(t) : json_is_array(t) ? json_string_value(json_array_get(t, 0)) : NULL;
    if (!type) type = json_object_get(schema, "properties") ? "object" : "string";
    if (!strcmp(type, "object")) {
        json_t *o = json_object();
        const char *k; json_t *p;
        json_object_foreach(json_object_get(schema, "properties"), k, p) json_object_set_new(o, k, instance_of(p, depth + 1));
        return o;
    }
    if (!strcmp(type, "array")) {
        json_t *a = json_array();
        json_int_t n = json_integer_value(json_object_get(schema, "minItems"));
        if (n < 1) n = 1;
        for (json_int_t i = 0; i < n && i < 8; i++) json_array_append_new(a, instance_of(json_object_get(schema, "items"), depth + 1));
        return a;
    }
    if (!strcmp(type, "integer") || !strcmp(type, "number")) {
        json_t *mn = json_object_get(schema, "minimum");
        return json_integer(json_is_number(mn) ? (json_int_t)json_number_value(mn) + 1 : 1);
    }
    if (!strcmp(type, "boolean")) return json_true();
    if (!strcmp(type, "null")) return json_null();
    json_int_t ml = json_integer_value(json_object_get(schema, "minLength"));
    char buf[64] = "x";
    for (json_int_t i = 1; i < ml && i < 63; i++) buf[i] = 'x', buf[i + 1] = 0;
    return json_string(buf);
}

static char *subst_captures(const char *s, char **caps, int ncaps) {
    size_t cap = strlen(s) + 1;
    for (int i = 0; i < ncaps; i++) cap += caps[i] ? strlen(caps[i]) * 4 : 0;
    char *out = xmalloc(cap + 64), *o = out;
    for (const char *p = s; *p; p++) {
        if (p[0] == '$' && p[1] >= '1' && p[1] <= '9') {
            int k = p[1] - '1';
            if (k < ncaps && caps[k]) { size_t l = strlen(caps[k]); memcpy(o, caps[k], l); o += l; }
            p++;
        } else *o++ = *p;
    }
    *o = 0;
    return out;
}

static json_t *subst_json(json_t *v, char **caps, int ncaps) {
    if (json_is_string(v)) {
        char *s = subst_captures(json_string_value(v), caps, ncaps);
        json_t *r = json_string(s);
        free(s);
        return r ? r : json_string("");
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k; json_t *e;
        json_object_foreach(v, k, e) json_object_set_new(o, k, subst_json(e, caps, ncaps));
        return o;
    }
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i; json_t *e;
        json_array_foreach(v, i, e) json_array_append_new(a, subst_json(e, caps, ncaps));
        return a;
    }
    return json_incref(v);
}

static json_t *chunk_obj(json_t *delta, const char *finish) {
    return json_pack("{s:s,s:s,s:i,s:s,s:[{s:i,s:o,s:o}]}", "id", "mock-1", "object", "chat.completion.chunk",
                     "created", 0, "model", "mock", "choices", "index", 0, "delta", delta,
                     "finish_reason", finish ? json_string(finish) : json_null());
}

/* Split text into n pieces on UTF-8 boundaries (n <= 0: one per word). */
static json_t *split_chunks(const char *text, int n) {
    json_t *a = json_array();
    size_t len = strlen(text);
    if (!len) return a;
    if (n <= 0) {
        const char *p = text;
        while (*p) {
            const char *q = p;
            while (*q == ' ' || *q == '\n') q++;
            while (*q && *q != ' ' && *q != '\n') q++;
            char *piece = strndup(p, (size_t)(q - p));
            json_t *s = json_string(piece);
            free(piece);
            if (s) json_array_append_new(a, s);
            p = q;
        }
        return a;
    }
    size_t start = 0;
    for (int i = 0; i < n && start < len; i++) {
        size_t end = i == n - 1 ? len : len * (size_t)(i + 1) / (size_t)n;
        while (end < len && ((unsigned char)text[end] & 0xC0) == 0x80) end++;
        if (end <= start) continue;
        char *piece = strndup(text + start, end - start);
        json_t *s = json_string(piece);
        free(piece);
        if (s) json_array_append_new(a, s);
        start = end;
    }
    return a;
}

static int count_tool_messages(json_t *msgs) {
    int n = 0;
    size_t i; json_t *m;
    json_array_foreach(msgs, i, m) n += !strcmp(json_string_value(json_object_get(m, "role")) ? json_string_value(json_object_get(m, "role")) : "", "tool");
    return n;
}

/* Token estimate of a text: words plus sentence ends (the convention of
 * eval_haystack's filler). */
static long estimate_tokens(const char *t) {
    long n = 0;
    int in_word = 0;
    for (const char *p = t; *p; p++) {
        int space = *p == ' ' || *p == '\n' || *p == '\t';
        if (!space && !in_word) n++;
        in_word = !space;
        if (*p == '.') n++;
    }
    return n;
}

static char *conversation_text(json_t *msgs, size_t *chars) {
    size_t cap = 1, n = 0;
    size_t i; json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *c = json_string_value(json_object_get(m, "content"));
        if (c) cap += strlen(c) + 1;
    }
    char *t = xmalloc(cap);
    t[0] = 0;
    json_array_foreach(msgs, i, m) {
        const char *c = json_string_value(json_object_get(m, "content"));
        if (!c) continue;
        size_t l = strlen(c);
        memcpy(t + n, c, l);
        n += l;
        t[n++] = '\n';
        t[n] = 0;
    }
    *chars = n;
    return t;
}

/* Pick the response for a request; fills captures. */
static json_t *choose(eval_mock *m, json_t *req, char **caps, int *ncaps) {
    json_t *msgs = json_object_get(req, "messages");
    size_t chars;
    char *text = conversation_text(msgs, &chars);
    int turn = count_tool_messages(msgs);
    json_t *rules = json_object_get(m->script, "rules");
    json_t *chosen = NULL;
    *ncaps = 0;
    size_t i; json_t *rule;
    json_array_foreach(rules, i, rule) {
        json_t *jt = json_object_get(rule, "turn");
        if (json_is_integer(jt) && json_integer_value(jt) != turn) continue;
        const char *pat = json_string_value(json_object_get(rule, "match"));
        int matched = 0;
        if (!pat) matched = 1;
        else {
            int ec; PCRE2_SIZE eo;
            pcre2_code *re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_DOTALL, &ec, &eo, NULL);
            if (re) {
                pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
                int rc = pcre2_match(re, (PCRE2_SPTR)text, chars, 0, 0, md, NULL);
                if (rc > 0) {
                    matched = 1;
                    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                    for (int k = 1; k < rc && k <= 9; k++) {
                        caps[k - 1] = ov[2 * k] == PCRE2_UNSET ? NULL : strndup(text + ov[2 * k], ov[2 * k + 1] - ov[2 * k]);
                        *ncaps = k;
                    }
                }
                pcre2_match_data_free(md);
                pcre2_code_free(re);
            }
        }
        if (!matched) continue;
        json_t *resps = json_object_get(rule, "responses");
        if (!json_is_array(resps)) { chosen = json_object_get(rule, "response"); break; }
        char key[32];
        snprintf(key, sizeof key, "%zu", i);
        pthread_mutex_lock(&m->mu);
        json_int_t n = json_integer_value(json_object_get(m->counters, key));
        json_object_set_new(m->counters, key, json_integer(n + 1));
        pthread_mutex_unlock(&m->mu);
        size_t sz = json_array_size(resps);
        if (sz && json_is_true(json_object_get(rule, "cycle"))) chosen = json_array_get(resps, (size_t)n % sz);
        else chosen = sz ? json_array_get(resps, (size_t)n < sz ? (size_t)n : sz - 1) : NULL;
        break;
    }
    free(text);
    if (!chosen) chosen = json_object_get(m->script, "default");
    if (!chosen) chosen = json_pack("{s:b}", "auto", 1);
    else json_incref(chosen);
    return chosen;
}

/* Fill in an "auto" answer: schema instance or the next tool call. */
static json_t *auto_answer(json_t *resp, json_t *req) {
    json_t *r = json_deep_copy(resp);
    json_t *tools = json_object_get(req, "tools");
    int turn = count_tool_messages(json_object_get(req, "messages"));
    if (json_is_array(tools) && (size_t)turn < json_array_size(tools)) {
        json_t *fn = json_object_get(json_array_get(tools, (size_t)turn), "function");
        json_t *call = json_pack("{s:O,s:o}", "name", json_object_get(fn, "name"),
                                 "arguments", instance_of(json_object_get(fn, "parameters"), 0));
        json_object_set_new(r, "tool_calls", json_pack("[o]", call));
        return r;
    }
    json_t *rf = json_object_get(req, "response_format");
    json_t *schema = json_object_get(json_object_get(rf, "json_schema"), "schema");
    if (schema) {
        json_t *inst = instance_of(schema, 0);
        char *s = json_dumps(inst, JSON_COMPACT);
        json_object_set_new(r, "content", json_string(s));
        free(s);
        json_decref(inst);
    } else if (!json_object_get(r, "content")) {
        json_object_set_new(r, "content", json_string(json_is_object(rf) ? "{\"answer\": \"ok\"}" : "OK"));
    }
    return r;
}

static stream *build_stream(eval_mock *m, json_t *resp, json_t *req, char **caps, int ncaps) {
    stream *s = xcalloc(1, sizeof *s);
    s->m = m;
    double ttft = json_number_value(json_object_get(resp, "ttft_ms"));
    double itl = json_number_value(json_object_get(resp, "itl_ms"));
    push_ev(s, 0, chunk_obj(json_pack("{s:s}", "role", "assistant"), NULL), NULL);
    int outputs = 0;
    const char *content = json_string_value(json_object_get(resp, "content"));
    char *filled = content ? subst_captures(content, caps, ncaps) : NULL;
    json_t *pieces = split_chunks(filled ? filled : "", (int)json_integer_value(json_object_get(resp, "chunks")));
    free(filled);
    size_t i; json_t *p;
    json_array_foreach(pieces, i, p) {
        json_t *ev = chunk_obj(json_pack("{s:O}", "content", p), NULL);
        push_ev(s, outputs++ ? itl : ttft, ev, NULL);
        if (i == 0 && json_is_true(json_object_get(resp, "malformed"))) push_ev(s, 0, NULL, "{\"choices\": [ {broken");
    }
    json_decref(pieces);
    const char *refusal = json_string_value(json_object_get(resp, "refusal"));
    if (refusal) {
        json_t *ev = chunk_obj(json_pack("{s:s}", "refusal", refusal), NULL);
        push_ev(s, outputs++ ? itl : ttft, ev, NULL);
    }
    json_t *tcs = json_object_get(resp, "tool_calls");
    json_t *tc;
    json_array_foreach(tcs, i, tc) {
        json_t *args = subst_json(json_object_get(tc, "arguments"), caps, ncaps);
        char *at = json_is_string(args) ? xstrdup(json_string_value(args)) : json_dumps(args ? args : json_object(), JSON_COMPACT);
        json_decref(args);
        char id[32];
        snprintf(id, sizeof id, "call_%zu", i);
        json_t *delta = json_pack("{s:[{s:i,s:s,s:s,s:{s:O,s:s}}]}", "tool_calls", "index", (int)i, "id", id, "type", "function",
                                  "function", "name", json_object_get(tc, "name"), "arguments", at);
        free(at);
        json_t *ev = chunk_obj(delta, NULL);
        push_ev(s, outputs++ ? itl : ttft, ev, NULL);
    }
    if (json_is_true(json_object_get(resp, "truncate"))) return s;
    const char *fr = json_string_value(json_object_get(resp, "finish_reason"));
    if (!fr) fr = json_array_size(tcs) ? "tool_calls" : "stop";
    json_t *ev = chunk_obj(json_object(), fr);
    push_ev(s, 0, ev, NULL);
    if (!json_is_false(json_object_get(resp, "usage"))) {
        size_t chars;
        char *t = conversation_text(json_object_get(req, "messages"), &chars);
        long est = estimate_tokens(t);
        free(t);
        json_t *pt = json_object_get(resp, "prompt_tokens"), *ct = json_object_get(resp, "completion_tokens");
        json_t *u = json_pack("{s:s,s:[],s:{s:I,s:I}}", "id", "mock-1", "choices", "usage",
                              "prompt_tokens", json_is_integer(pt) ? json_integer_value(pt) : (json_int_t)est,
                              "completion_tokens", json_is_integer(ct) ? json_integer_value(ct) : (json_int_t)outputs);
        push_ev(s, 0, u, NULL);
    }
    push_ev(s, 0, NULL, "[DONE]");
    return s;
}

/* ---- HTTP plumbing ------------------------------------------------------ */

typedef struct { char *p; size_t n; } body_buf;

static enum MHD_Result send_text(struct MHD_Connection *c, unsigned status, const char *type, const char *text) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), (void *)text, MHD_RESPMEM_MUST_COPY);
    MHD_add_response_header(r, "Content-Type", type);
    enum MHD_Result ret = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result handle_chat(eval_mock *m, struct MHD_Connection *c, const char *body, size_t n) {
    json_t *req = json_loadb(body, n, 0, NULL);
    if (!json_is_object(req)) {
        json_decref(req);
        return send_text(c, 400, "application/json", "{\"error\":{\"message\":\"bad JSON body\"}}");
    }
    char *caps[9] = {0};
    int ncaps = 0;
    json_t *resp = choose(m, req, caps, &ncaps);
    if (json_is_true(json_object_get(resp, "auto"))) {
        json_t *a = auto_answer(resp, req);
        json_decref(resp);
        resp = a;
    }
    double hang = json_number_value(json_object_get(resp, "hang_ms"));
    if (hang > 0) sleep_ms(m, hang);
    enum MHD_Result ret;
    json_int_t status = json_integer_value(json_object_get(resp, "status"));
    if (status && status != 200) {
        const char *b = json_string_value(json_object_get(resp, "body"));
        ret = send_text(c, (unsigned)status, "application/json", b ? b : "{\"error\":{\"message\":\"scripted error\"}}");
    } else {
        stream *s = build_stream(m, resp, req, caps, ncaps);
        struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_reader, s, stream_free);
        MHD_add_response_header(r, "Content-Type", "text/event-stream");
        MHD_add_response_header(r, "Cache-Control", "no-cache");
        ret = MHD_queue_response(c, 200, r);
        MHD_destroy_response(r);
    }
    for (int i = 0; i < 9; i++) free(caps[i]);
    json_decref(resp);
    json_decref(req);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    eval_mock *m = cls;
    if (strcmp(method, "POST")) {
        if (!strcmp(url, "/v1/models")) {
            json_t *mod = json_pack("{s:s,s:s}", "id", "mock", "object", "model");
            json_t *cl = json_object_get(m->script, "context_length");
            if (json_is_integer(cl)) json_object_set(mod, "max_model_len", cl);
            json_t *list = json_pack("{s:s,s:[o]}", "object", "list", "data", mod);
            char *text = json_dumps(list, JSON_COMPACT);
            json_decref(list);
            enum MHD_Result r = send_text(c, 200, "application/json", text ? text : "{}");
            free(text);
            return r;
        }
        return send_text(c, 404, "application/json", "{\"error\":{\"message\":\"not found\"}}");
    }
    body_buf *b = *con_cls;
    if (!b) {
        *con_cls = xcalloc(1, sizeof *b);
        return MHD_YES;
    }
    if (*upload_size) {
        if (b->n + *upload_size < (64u << 20)) {
            b->p = xrealloc(b->p, b->n + *upload_size + 1);
            memcpy(b->p + b->n, upload, *upload_size);
            b->n += *upload_size;
            b->p[b->n] = 0;
        }
        *upload_size = 0;
        return MHD_YES;
    }
    atomic_fetch_add(&m->requests, 1);
    if (strcmp(url, "/v1/chat/completions"))
        return send_text(c, 404, "application/json", "{\"error\":{\"message\":\"not found\"}}");
    return handle_chat(m, c, b->p ? b->p : "", b->n);
}

static void on_done(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)c; (void)toe;
    body_buf *b = *con_cls;
    if (b) { free(b->p); free(b); *con_cls = NULL; }
}

eval_mock *eval_mock_start(json_t *script, int port, char *err, size_t errlen) {
    eval_mock *m = xcalloc(1, sizeof *m);
    m->script = json_incref(script);
    m->counters = json_object();
    pthread_mutex_init(&m->mu, NULL);
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)port);
    addr.sin_addr.s_addr = htonl(0x7f000001);   /* loopback only */
    m->d = MHD_start_daemon(MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD,
                            0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, &addr,
                            MHD_OPTION_NOTIFY_COMPLETED, on_done, NULL,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)60, MHD_OPTION_END);
    if (!m->d) {
        json_decref(m->script);
        json_decref(m->counters);
        free(m);
        errf(err, errlen, "mock endpoint: cannot listen on 127.0.0.1:%d", port);
        return NULL;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->d, MHD_DAEMON_INFO_BIND_PORT);
    m->port = info ? info->port : port;
    return m;
}

int eval_mock_port(const eval_mock *m) { return m->port; }
long eval_mock_requests(const eval_mock *m) { return atomic_load(&((eval_mock *)m)->requests); }

void eval_mock_stop(eval_mock *m) {
    if (!m) return;
    atomic_store(&m->stopping, 1);
    MHD_stop_daemon(m->d);
    pthread_mutex_destroy(&m->mu);
    json_decref(m->script);
    json_decref(m->counters);
    free(m);
}
