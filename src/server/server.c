/*
 * server.c - HTTP front end (see server.h): routing, authentication, body
 * limits, jobs (one generation request each), response shaping for the
 * OpenAI and Anthropic schemas, Server-Sent Events and metrics.
 *
 * A job is shared by two threads: the connection thread (libmicrohttpd,
 * thread per connection) and the scheduler thread, which calls the job's
 * event and done callbacks.  Events are rendered to response bytes right
 * away under the job's mutex (SSE frames when streaming, accumulated
 * message parts otherwise); the connection thread only copies bytes out.
 * The job is freed by the connection side after the scheduler has called
 * on_done, which happens exactly once (cancellation included).
 */
#include "server/server.h"

#include <arpa/inet.h>
#include <errno.h>
#include <jansson.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "server/api.h"
#include "server/metrics.h"
#include "util/util.h"

#if MHD_VERSION < 0x00097002
typedef int MHD_Result;
#else
typedef enum MHD_Result MHD_Result;
#endif

struct server {
    gen_model *gm;
    server_opts o;
    struct MHD_Daemon *d;
    sched *sc;
    metrics *mx;
    int port;
    long started;
    atomic_long counter;
};

/* ---- byte buffer ------------------------------------------------------- */

static const char *sb_cstr(strbuf *b) { return b->p ? b->p : ""; }

/* ---- UTF-8 repair of deltas -------------------------------------------- */

/* Deltas may split a character (the parser cuts at marker boundaries);
 * JSON needs whole characters.  A carry keeps an incomplete tail for the
 * next delta; bytes that can never form a character become U+FFFD. */
typedef struct { char b[4]; int n; } u8carry;

/* >0: length of the valid character at p; 0: invalid; -1: valid so far
 * but incomplete. */
static int u8_check(const unsigned char *p, size_t n) {
    unsigned c = p[0], lo = 0x80, hi = 0xBF;
    int len;
    if (c < 0x80) return 1;
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; if (c == 0xE0) lo = 0xA0; if (c == 0xED) hi = 0x9F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; if (c == 0xF0) lo = 0x90; if (c == 0xF4) hi = 0x8F; }
    else return 0;
    for (int i = 1; i < len; i++) {
        if ((size_t)i >= n) return -1;
        if (p[i] < (i == 1 ? lo : 0x80) || p[i] > (i == 1 ? hi : 0xBF)) return 0;
    }
    return len;
}

static char *u8_take(u8carry *c, const char *t, size_t n, size_t *out_len, int final) {
    size_t m = (size_t)c->n + n;
    unsigned char *in = xmalloc(m + 1);
    memcpy(in, c->b, (size_t)c->n);
    memcpy(in + c->n, t, n);
    char *o = xmalloc(m * 3 + 1);
    size_t k = 0, i = 0;
    c->n = 0;
    while (i < m) {
        int l = u8_check(in + i, m - i);
        if (l > 0) { memcpy(o + k, in + i, (size_t)l); k += (size_t)l; i += (size_t)l; continue; }
        if (l < 0 && !final) { c->n = (int)(m - i); memcpy(c->b, in + i, m - i); break; }
        memcpy(o + k, "\xEF\xBF\xBD", 3); k += 3; i++;
    }
    o[k] = 0;
    free(in);
    *out_len = k;
    return o;
}

/* ---- jobs -------------------------------------------------------------- */

typedef struct {
    char id[64];
    char *name;
    strbuf args;
} tool_acc;

typedef struct job {
    server *srv;
    api_kind kind;
    int stream, include_usage, thinking, json_output;
    char id[64];
    long created;
    int32_t *prompt;
    int n_prompt;
    sched_req req;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int done;
    gen_finish why;
    sched_usage usage;
    char err[256];
    strbuf out;                 /* streaming bytes not yet sent */
    size_t out_pos;
    strbuf content, reasoning;
    tool_acc *tools;
    int n_tools;
    int block_type;           /* Anthropic: open block 0 none, 1 thinking, 2 text, 3 tool */
    int n_blocks;
    double t_last;
    int fd;
    u8carry carry[3];         /* reasoning, content, tool arguments */
} job;

enum { B_NONE = 0, B_THINKING, B_TEXT, B_TOOL };

static void emit_json(job *j, const char *event, json_t *o) {
    if (!o) return;
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    if (event) { strbuf_str(&j->out, "event: "); strbuf_str(&j->out, event); strbuf_str(&j->out, "\n"); }
    strbuf_str(&j->out, "data: ");
    strbuf_str(&j->out, s);
    strbuf_str(&j->out, "\n\n");
    free(s);
}

static const char *model_id(job *j) { return j->srv->gm->id; }

/* OpenAI chat chunk with the given delta (stolen). */
static void oa_chunk(job *j, json_t *delta, const char *finish) {
    json_t *choice = json_pack("{s:i, s:o, s:n, s:o}", "index", 0, "delta", delta, "logprobs",
                               "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:n, s:[o]}", "id", j->id, "object", "chat.completion.chunk",
                          "created", (json_int_t)j->created, "model", model_id(j), "system_fingerprint", "choices", choice);
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    emit_json(j, NULL, o);
}

static void cmpl_chunk(job *j, const char *text, size_t len, const char *finish) {
    json_t *choice = json_pack("{s:s%, s:i, s:n, s:o}", "text", text, len, "index", 0, "logprobs",
                               "finish_reason", finish ? json_string(finish) : json_null());
    json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[o]}", "id", j->id, "object", "text_completion",
                          "created", (json_int_t)j->created, "model", model_id(j), "choices", choice);
    if (j->include_usage) json_object_set_new(o, "usage", json_null());
    emit_json(j, NULL, o);
}

static void an_close_block(job *j) {
    if (j->block_type == B_NONE) return;
    if (j->block_type == B_THINKING)
        emit_json(j, "content_block_delta", json_pack("{s:s, s:i, s:{s:s, s:s}}", "type", "content_block_delta",
                  "index", j->n_blocks - 1, "delta", "type", "signature_delta", "signature", ""));
    emit_json(j, "content_block_stop", json_pack("{s:s, s:i}", "type", "content_block_stop", "index", j->n_blocks - 1));
    j->block_type = B_NONE;
}

static void an_open_block(job *j, int type, json_t *block) {
    an_close_block(j);
    emit_json(j, "content_block_start", json_pack("{s:s, s:i, s:o}", "type", "content_block_start",
                                                  "index", j->n_blocks, "content_block", block));
    j->n_blocks++;
    j->block_type = type;
}

static void an_delta(job *j, json_t *delta) {
    emit_json(j, "content_block_delta", json_pack("{s:s, s:i, s:o}", "type", "content_block_delta",
                                                  "index", j->n_blocks - 1, "delta", delta));
}

static void tool_id(job *j, int index, char *out, size_t n) {
    snprintf(out, n, "%s_%s_%d", j->kind == API_MESSAGES ? "toolu" : "call", j->id + (j->kind == API_MESSAGES ? 4 : 9), index);
}

static void on_event_valid(job *j, const dsv4_dsml_event *ev);

/* Scheduler thread: one parser event (text repaired to whole characters). */
static void on_event(void *user, const dsv4_dsml_event *ev) {
    job *j = user;
    int k = ev->kind == DSV4_EV_REASONING ? 0 : ev->kind == DSV4_EV_CONTENT ? 1 : ev->kind == DSV4_EV_TOOL_ARGS ? 2 : -1;
    if (k < 0 || !ev->text) { on_event_valid(j, ev); return; }
    dsv4_dsml_event e = *ev;
    size_t n;
    char *t = u8_take(&j->carry[k], ev->text, ev->len, &n, 0);
    e.text = t;
    e.len = n;
    if (n) on_event_valid(j, &e);
    free(t);
}

/* Pending incomplete characters at the end become U+FFFD. */
static void flush_carry(job *j) {
    static const dsv4_dsml_event_kind kinds[3] = {DSV4_EV_REASONING, DSV4_EV_CONTENT, DSV4_EV_TOOL_ARGS};
    for (int k = 0; k < 3; k++) {
        if (!j->carry[k].n) continue;
        size_t n;
        char *t = u8_take(&j->carry[k], "", 0, &n, 1);
        dsv4_dsml_event e;
        memset(&e, 0, sizeof e);
        e.kind = kinds[k];
        e.index = j->n_tools ? j->n_tools - 1 : 0;
        e.text = t;
        e.len = n;
        if (n) on_event_valid(j, &e);
        free(t);
    }
}

static void on_event_valid(job *j, const dsv4_dsml_event *ev) {
    pthread_mutex_lock(&j->mu);
    switch (ev->kind) {
    case DSV4_EV_REASONING:
        strbuf_add(&j->reasoning, ev->text, ev->len);
        if (!j->stream) break;
        if (j->kind == API_CHAT) oa_chunk(j, json_pack("{s:s%}", "reasoning_content", ev->text, ev->len), NULL);
        else if (j->kind == API_MESSAGES) {
            if (j->block_type != B_THINKING) an_open_block(j, B_THINKING, json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", "", "signature", ""));
            an_delta(j, json_pack("{s:s, s:s%}", "type", "thinking_delta", "thinking", ev->text, ev->len));
        }
        break;
    case DSV4_EV_CONTENT:
        strbuf_add(&j->content, ev->text, ev->len);
        if (!j->stream) break;
        if (j->kind == API_CHAT) oa_chunk(j, json_pack("{s:s%}", "content", ev->text, ev->len), NULL);
        else if (j->kind == API_COMPLETIONS) cmpl_chunk(j, ev->text, ev->len, NULL);
        else {
            if (j->block_type != B_TEXT) an_open_block(j, B_TEXT, json_pack("{s:s, s:s}", "type", "text", "text", ""));
            an_delta(j, json_pack("{s:s, s:s%}", "type", "text_delta", "text", ev->text, ev->len));
        }
        break;
    case DSV4_EV_TOOL_START: {
        j->tools = xrealloc(j->tools, (size_t)(j->n_tools + 1) * sizeof *j->tools);
        tool_acc *t = &j->tools[j->n_tools];
        memset(t, 0, sizeof *t);
        tool_id(j, j->n_tools, t->id, sizeof t->id);
        t->name = xstrdup(ev->name ? ev->name : "");
        j->n_tools++;
        if (!j->stream) break;
        if (j->kind == API_CHAT)
            oa_chunk(j, json_pack("{s:[{s:i, s:s, s:s, s:{s:s, s:s}}]}", "tool_calls", "index", j->n_tools - 1, "id", t->id,
                                  "type", "function", "function", "name", t->name, "arguments", ""), NULL);
        else if (j->kind == API_MESSAGES)
            an_open_block(j, B_TOOL, json_pack("{s:s, s:s, s:s, s:{}}", "type", "tool_use", "id", t->id, "name", t->name, "input"));
        break;
    }
    case DSV4_EV_TOOL_ARGS: {
        if (!j->n_tools) break;
        tool_acc *t = &j->tools[j->n_tools - 1];
        strbuf_add(&t->args, ev->text, ev->len);
        if (!j->stream) break;
        if (j->kind == API_CHAT)
            oa_chunk(j, json_pack("{s:[{s:i, s:{s:s%}}]}", "tool_calls", "index", j->n_tools - 1, "function", "arguments", ev->text, ev->len), NULL);
        else if (j->kind == API_MESSAGES)
            an_delta(j, json_pack("{s:s, s:s%}", "type", "input_json_delta", "partial_json", ev->text, ev->len));
        break;
    }
    case DSV4_EV_TOOL_END:
        if (j->stream && j->kind == API_MESSAGES && j->block_type == B_TOOL) an_close_block(j);
        break;
    default:
        break;
    }
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void on_token(void *user, double t) {
    job *j = user;
    server *s = j->srv;
    if (j->t_last > 0) metrics_itl(s->mx, t - j->t_last);
    else metrics_ttft(s->mx, t - j->req.usage.t_submit);
    j->t_last = t;
}

static json_t *usage_json(job *j) {
    if (j->kind == API_MESSAGES)
        return json_pack("{s:i, s:i, s:i}", "input_tokens", j->usage.prompt_tokens, "output_tokens", j->usage.completion_tokens,
                         "cache_read_input_tokens", j->usage.cached_tokens);
    return json_pack("{s:i, s:i, s:i, s:{s:i}}", "prompt_tokens", j->usage.prompt_tokens, "completion_tokens",
                     j->usage.completion_tokens, "total_tokens", j->usage.prompt_tokens + j->usage.completion_tokens,
                     "prompt_tokens_details", "cached_tokens", j->usage.cached_tokens);
}

/* The stream's closing frames. */
static void stream_finish(job *j) {
    if (j->why == GEN_ERROR || j->why == GEN_CANCELLED) {
        char *e = api_error_json(j->kind, 500, j->why == GEN_ERROR ? (j->err[0] ? j->err : "generation failed") : "cancelled", NULL);
        if (j->kind == API_MESSAGES) strbuf_str(&j->out, "event: error\n");
        strbuf_str(&j->out, "data: ");
        strbuf_str(&j->out, e);
        strbuf_str(&j->out, "\n\n");
        free(e);
        if (j->kind != API_MESSAGES) strbuf_str(&j->out, "data: [DONE]\n\n");
        return;
    }
    if (j->kind == API_MESSAGES) {
        an_close_block(j);
        json_t *md = json_pack("{s:s, s:{s:s, s:n}, s:{s:i}}", "type", "message_delta", "delta", "stop_reason",
                               gen_finish_anthropic(j->why), "stop_sequence", "usage", "output_tokens", j->usage.completion_tokens);
        emit_json(j, "message_delta", md);
        emit_json(j, "message_stop", json_pack("{s:s}", "type", "message_stop"));
        return;
    }
    if (j->kind == API_CHAT) oa_chunk(j, json_object(), gen_finish_openai(j->why));
    else cmpl_chunk(j, "", 0, gen_finish_openai(j->why));
    if (j->include_usage) {
        json_t *o = json_pack("{s:s, s:s, s:I, s:s, s:[], s:o}", "id", j->id, "object",
                              j->kind == API_CHAT ? "chat.completion.chunk" : "text_completion", "created",
                              (json_int_t)j->created, "model", model_id(j), "choices", "usage", usage_json(j));
        emit_json(j, NULL, o);
    }
    strbuf_str(&j->out, "data: [DONE]\n\n");
}

static void on_done(void *user, gen_finish why, const sched_usage *u, const char *err) {
    job *j = user;
    server *s = j->srv;
    flush_carry(j);
    metrics_tokens(s->mx, u->prompt_tokens, u->cached_tokens, u->completion_tokens);
    if (u->t_end > 0) metrics_e2e(s->mx, u->t_end - u->t_submit);
    if (why == GEN_CANCELLED) metrics_cancelled(s->mx);
    pthread_mutex_lock(&j->mu);
    j->why = why;
    j->usage = *u;
    if (err) snprintf(j->err, sizeof j->err, "%s", err);
    if (j->stream) stream_finish(j);
    j->done = 1;
    pthread_cond_broadcast(&j->cv);
    pthread_mutex_unlock(&j->mu);
}

static void job_free(job *j) {
    if (!j) return;
    free(j->prompt);
    free(j->out.p); free(j->content.p); free(j->reasoning.p);
    for (int i = 0; i < j->n_tools; i++) { free(j->tools[i].name); free(j->tools[i].args.p); }
    free(j->tools);
    for (int i = 0; i < j->req.params.n_stop; i++) free((char *)j->req.params.stop[i]);
    free((void *)j->req.params.stop);
    pthread_mutex_destroy(&j->mu);
    pthread_cond_destroy(&j->cv);
    free(j);
}

static int peer_gone(int fd) {
    if (fd < 0) return 0;
    struct pollfd p = {fd, POLLRDHUP, 0};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Wait for the scheduler; cancel if the client goes away meanwhile. */
static void wait_done(job *j) {
    pthread_mutex_lock(&j->mu);
    while (!j->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (!j->done && peer_gone(j->fd)) atomic_store(&j->req.cancel, 1);
    }
    pthread_mutex_unlock(&j->mu);
}

/* ---- complete (non-streamed) bodies -------------------------------------- */

static char *final_body(job *j) {
    json_t *o;
    const char *finish = gen_finish_openai(j->why);
    if (j->kind == API_COMPLETIONS) {
        o = json_pack("{s:s, s:s, s:I, s:s, s:[{s:s, s:i, s:n, s:s}], s:o}", "id", j->id, "object", "text_completion",
                      "created", (json_int_t)j->created, "model", model_id(j), "choices", "text", sb_cstr(&j->content),
                      "index", 0, "logprobs", "finish_reason", finish, "usage", usage_json(j));
    } else if (j->kind == API_CHAT) {
        json_t *msg = json_pack("{s:s}", "role", "assistant");
        if (j->content.n || !j->n_tools) json_object_set_new(msg, "content", json_string(sb_cstr(&j->content)));
        else json_object_set_new(msg, "content", json_null());
        if (j->thinking || j->reasoning.n) json_object_set_new(msg, "reasoning_content", json_string(sb_cstr(&j->reasoning)));
        if (j->n_tools) {
            json_t *calls = json_array();
            for (int i = 0; i < j->n_tools; i++)
                json_array_append_new(calls, json_pack("{s:s, s:s, s:{s:s, s:s}}", "id", j->tools[i].id, "type", "function",
                                                       "function", "name", j->tools[i].name, "arguments", sb_cstr(&j->tools[i].args)));
            json_object_set_new(msg, "tool_calls", calls);
        }
        o = json_pack("{s:s, s:s, s:I, s:s, s:n, s:[{s:i, s:o, s:n, s:s}], s:o}", "id", j->id, "object", "chat.completion",
                      "created", (json_int_t)j->created, "model", model_id(j), "system_fingerprint", "choices", "index", 0,
                      "message", msg, "logprobs", "finish_reason", finish, "usage", usage_json(j));
    } else {
        json_t *content = json_array();
        if (j->reasoning.n || j->thinking)
            json_array_append_new(content, json_pack("{s:s, s:s, s:s}", "type", "thinking", "thinking", sb_cstr(&j->reasoning), "signature", ""));
        if (j->content.n || !j->n_tools)
            json_array_append_new(content, json_pack("{s:s, s:s}", "type", "text", "text", sb_cstr(&j->content)));
        for (int i = 0; i < j->n_tools; i++) {
            json_error_t je;
            json_t *input = json_loads(sb_cstr(&j->tools[i].args), 0, &je);
            if (!json_is_object(input)) { json_decref(input); input = json_object(); }
            json_array_append_new(content, json_pack("{s:s, s:s, s:s, s:o}", "type", "tool_use", "id", j->tools[i].id,
                                                     "name", j->tools[i].name, "input", input));
        }
        o = json_pack("{s:s, s:s, s:s, s:s, s:o, s:s, s:n, s:o}", "id", j->id, "type", "message", "role", "assistant",
                      "model", model_id(j), "content", content, "stop_reason", gen_finish_anthropic(j->why),
                      "stop_sequence", "usage", usage_json(j));
    }
    char *s = json_dumps(o, JSON_COMPACT);
    json_decref(o);
    return s;
}

/* ---- HTTP plumbing ------------------------------------------------------- */

typedef struct {
    strbuf body;
    int too_large;
} conn_ctx;

static MHD_Result send_text(struct MHD_Connection *c, int status, const char *ctype, char *body) {
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(r, "Content-Type", ctype);
    MHD_Result ret = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static MHD_Result send_error(server *s, struct MHD_Connection *c, api_kind kind, const char *endpoint, int status,
                             const char *msg, const char *code) {
    metrics_request(s->mx, endpoint, status);
    return send_text(c, status, "application/json", api_error_json(kind, status, msg, code));
}

static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    job *j = cls;
    pthread_mutex_lock(&j->mu);
    while (j->out.n == j->out_pos && !j->done) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 100 * 1000000L;
        if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
        pthread_cond_timedwait(&j->cv, &j->mu, &ts);
        if (j->out.n == j->out_pos && !j->done && peer_gone(j->fd)) {
            pthread_mutex_unlock(&j->mu);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
    ssize_t n;
    if (j->out.n > j->out_pos) {
        size_t avail = j->out.n - j->out_pos;
        if (avail > max) avail = max;
        memcpy(buf, j->out.p + j->out_pos, avail);
        j->out_pos += avail;
        if (j->out_pos == j->out.n) j->out_pos = j->out.n = 0;
        n = (ssize_t)avail;
    } else {
        n = MHD_CONTENT_READER_END_OF_STREAM;
    }
    pthread_mutex_unlock(&j->mu);
    return n;
}

/* The response is gone (sent, or the connection dropped): cancel and wait
 * for the scheduler to let go of the job. */
static void stream_free(void *cls) {
    job *j = cls;
    atomic_store(&j->req.cancel, 1);
    j->fd = -1;
    wait_done(j);
    job_free(j);
}

static const char *endpoint_name(api_kind k) {
    return k == API_CHAT ? "/v1/chat/completions" : k == API_COMPLETIONS ? "/v1/completions" : "/v1/messages";
}

static int authorised(server *s, struct MHD_Connection *c) {
    if (!s->o.api_key || !*s->o.api_key) return 1;
    const char *auth = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
    if (auth && !strncmp(auth, "Bearer ", 7) && !strcmp(auth + 7, s->o.api_key)) return 1;
    const char *xk = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "x-api-key");
    return xk && !strcmp(xk, s->o.api_key);
}

static MHD_Result handle_generate(server *s, struct MHD_Connection *c, api_kind kind, conn_ctx *cc) {
    const char *ep = endpoint_name(kind);
    gen_model *gm = s->gm;
    if (!authorised(s, c)) return send_error(s, c, kind, ep, 401, "invalid or missing API key", "invalid_api_key");
    if (cc->too_large) return send_error(s, c, kind, ep, 413, "request body too large", NULL);
    char err[512] = "";
    api_req r;
    int status = api_parse(kind, cc->body.p ? cc->body.p : "", cc->body.n, &r, err, sizeof err);
    if (status) return send_error(s, c, kind, ep, status, err, NULL);
    if (r.model && strcmp(r.model, gm->id)) {
        snprintf(err, sizeof err, "The model '%s' does not exist; this server serves '%s'", r.model, gm->id);
        api_req_free(&r);
        return send_error(s, c, kind, ep, 404, err, "model_not_found");
    }
    int32_t *ids = NULL;
    int n = 0;
    if (gen_tokenize(gm, r.prompt, &ids, &n)) { api_req_free(&r); return send_error(s, c, kind, ep, 500, "tokenizer failed", NULL); }
    if (kind == API_COMPLETIONS && (n == 0 || ids[0] != gm->bos)) {
        ids = xrealloc(ids, (size_t)(n + 1) * sizeof *ids);
        memmove(ids + 1, ids, (size_t)n * sizeof *ids);
        ids[0] = gm->bos;
        n++;
    }
    if (n >= gm->n_ctx) {
        snprintf(err, sizeof err, "the prompt has %d tokens; this server's context length is %d", n, gm->n_ctx);
        free(ids);
        api_req_free(&r);
        return send_error(s, c, kind, ep, 400, err, "context_length_exceeded");
    }
    int limit = s->o.max_tokens_limit > 0 ? s->o.max_tokens_limit : gm->n_ctx;
    if (r.max_tokens > limit) {
        snprintf(err, sizeof err, "max_tokens %d is above this server's limit of %d", r.max_tokens, limit);
        free(ids);
        api_req_free(&r);
        return send_error(s, c, kind, ep, 400, err, NULL);
    }
    int max_tokens = r.max_tokens;
    if (max_tokens <= 0) max_tokens = s->o.default_max_tokens > 0 ? s->o.default_max_tokens : gm->n_ctx;
    if (max_tokens > gm->n_ctx - n) max_tokens = gm->n_ctx - n;

    job *j = xcalloc(1, sizeof *j);
    pthread_mutex_init(&j->mu, NULL);
    pthread_cond_init(&j->cv, NULL);
    j->srv = s;
    j->kind = kind;
    j->stream = r.stream;
    j->include_usage = r.include_usage;
    j->thinking = r.thinking;
    j->json_output = r.json_output;
    j->created = (long)time(NULL);
    long seq = atomic_fetch_add(&s->counter, 1);
    snprintf(j->id, sizeof j->id, "%s%lx%06lx", kind == API_MESSAGES ? "msg_" : kind == API_CHAT ? "chatcmpl-" : "cmpl-",
             (long)s->started, seq);
    const union MHD_ConnectionInfo *ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    j->fd = ci ? ci->connect_fd : -1;
    j->prompt = ids;
    j->n_prompt = n;
    sched_req *q = &j->req;
    q->prompt = ids;
    q->n_prompt = n;
    q->params.sp.temperature = r.temperature;
    q->params.sp.top_p = r.top_p;
    q->params.sp.top_k = r.top_k;
    q->params.sp.seed = r.has_seed ? r.seed : (uint64_t)time(NULL) * 6364136223846793005ull + (uint64_t)seq;
    q->params.max_tokens = max_tokens;
    q->params.stop = (const char *const *)r.stop;
    q->params.n_stop = r.n_stop;
    r.stop = NULL;
    r.n_stop = 0;
    q->params.thinking = r.thinking;
    q->params.raw = kind == API_COMPLETIONS;
    q->params.grammar = r.grammar;         /* owned by the scheduler once submitted */
    grammar *g = r.grammar;
    r.grammar = NULL;
    q->params.allow_tools = r.has_tools;
    q->on_event = on_event;
    q->on_token = on_token;
    q->on_done = on_done;
    q->user = j;
    api_req_free(&r);
    /* the first frames go out before any token */
    if (j->stream) {
        if (kind == API_CHAT) oa_chunk(j, json_pack("{s:s, s:s}", "role", "assistant", "content", ""), NULL);
        if (kind == API_MESSAGES)
            emit_json(j, "message_start", json_pack("{s:s, s:{s:s, s:s, s:s, s:s, s:[], s:n, s:n, s:{s:i, s:i}}}", "type",
                      "message_start", "message", "id", j->id, "type", "message", "role", "assistant", "model", model_id(j),
                      "content", "stop_reason", "stop_sequence", "usage", "input_tokens", n, "output_tokens", 0));
    }
    if (sched_submit(s->sc, q)) {
        grammar_free(g);
        job_free(j);
        return send_error(s, c, kind, ep, 503, "the server is busy (queue full); retry later", "server_busy");
    }
    if (j->stream) {
        metrics_request(s->mx, ep, 200);
        struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, j, stream_free);
        MHD_add_response_header(resp, "Content-Type", "text/event-stream");
        MHD_add_response_header(resp, "Cache-Control", "no-cache");
        MHD_Result ret = MHD_queue_response(c, MHD_HTTP_OK, resp);
        MHD_destroy_response(resp);
        return ret;
    }
    wait_done(j);
    MHD_Result ret;
    if (j->why == GEN_ERROR) ret = send_error(s, c, kind, ep, 500, j->err[0] ? j->err : "generation failed", NULL);
    else if (j->why == GEN_CANCELLED) ret = send_error(s, c, kind, ep, 499, "cancelled", NULL);
    else {
        metrics_request(s->mx, ep, 200);
        ret = send_text(c, 200, "application/json", final_body(j));
    }
    job_free(j);
    return ret;
}

static MHD_Result handle_get(server *s, struct MHD_Connection *c, const char *url) {
    if (!strcmp(url, "/health")) {
        metrics_request(s->mx, "/health", 200);
        return send_text(c, 200, "application/json", xstrdup("{\"status\":\"ok\"}"));
    }
    if (!strcmp(url, "/metrics")) {
        sched_stats st;
        sched_get_stats(s->sc, &st);
        metrics_request(s->mx, "/metrics", 200);
        return send_text(c, 200, "text/plain; version=0.0.4", metrics_render(s->mx, st.queued, st.active, st.kv_tokens,
                         st.kv_capacity, st.cache_entries, st.batches, st.batched_seqs));
    }
    if (!strcmp(url, "/v1/models") || !strncmp(url, "/v1/models/", 11)) {
        if (!authorised(s, c)) return send_error(s, c, API_CHAT, "/v1/models", 401, "invalid or missing API key", "invalid_api_key");
        json_t *m = json_pack("{s:s, s:s, s:I, s:s, s:i}", "id", s->gm->id, "object", "model", "created",
                              (json_int_t)s->started, "owned_by", "dsv4", "context_length", s->gm->n_ctx);
        json_t *o;
        if (url[10] == '/') {
            if (strcmp(url + 11, s->gm->id)) { json_decref(m); return send_error(s, c, API_CHAT, "/v1/models", 404, "model not found", "model_not_found"); }
            o = m;
        } else {
            o = json_pack("{s:s, s:[o]}", "object", "list", "data", m);
        }
        char *body = json_dumps(o, JSON_COMPACT);
        json_decref(o);
        metrics_request(s->mx, "/v1/models", 200);
        return send_text(c, 200, "application/json", body);
    }
    return send_error(s, c, API_CHAT, "other", 404, "not found", NULL);
}

static MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                             const char *version, const char *upload, size_t *upload_size, void **con_cls) {
    (void)version;
    server *s = cls;
    conn_ctx *cc = *con_cls;
    if (!cc) {
        cc = xcalloc(1, sizeof *cc);
        *con_cls = cc;
        return MHD_YES;
    }
    if (*upload_size) {
        if (cc->body.n + *upload_size > s->o.max_body) cc->too_large = 1;
        else strbuf_add(&cc->body, upload, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    if (!strcmp(method, "GET")) return handle_get(s, c, url);
    if (!strcmp(method, "POST")) {
        if (!strcmp(url, "/v1/chat/completions")) return handle_generate(s, c, API_CHAT, cc);
        if (!strcmp(url, "/v1/completions")) return handle_generate(s, c, API_COMPLETIONS, cc);
        if (!strcmp(url, "/v1/messages")) return handle_generate(s, c, API_MESSAGES, cc);
        return send_error(s, c, API_CHAT, "other", 404, "not found", NULL);
    }
    return send_error(s, c, API_CHAT, "other", 405, "method not allowed", NULL);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **con_cls, enum MHD_RequestTerminationCode toe) {
    (void)cls; (void)c; (void)toe;
    conn_ctx *cc = *con_cls;
    if (cc) { free(cc->body.p); free(cc); }
    *con_cls = NULL;
}

server *server_start(gen_model *gm, const server_opts *o, char *err, size_t errlen) {
    server *s = xcalloc(1, sizeof *s);
    s->gm = gm;
    s->o = *o;
    if (!s->o.host) s->o.host = "127.0.0.1";
    if (!s->o.max_body) s->o.max_body = 8u << 20;
    if (s->o.threads <= 0) s->o.threads = 64;
    s->started = (long)time(NULL);
    s->mx = metrics_new();
    gen_model_gvocab(gm);          /* build the grammar trie before serving */
    s->sc = sched_new(gm, &s->o.sched, err, errlen);
    if (!s->sc) { metrics_free(s->mx); free(s); return NULL; }
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)o->port);
    if (inet_pton(AF_INET, s->o.host, &sa.sin_addr) != 1) {
        errf(err, errlen, "--host must be an IPv4 address, got '%s'", s->o.host);
        sched_free(s->sc); metrics_free(s->mx); free(s);
        return NULL;
    }
    s->d = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION,
                            (uint16_t)o->port, NULL, NULL, on_request, s,
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&sa,
                            MHD_OPTION_CONNECTION_LIMIT, (unsigned)s->o.threads,
                            MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)600,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL,
                            MHD_OPTION_END);
    if (!s->d) {
        errf(err, errlen, "cannot listen on %s:%d (%s)", s->o.host, o->port, strerror(errno));
        sched_free(s->sc); metrics_free(s->mx); free(s);
        return NULL;
    }
    const union MHD_DaemonInfo *di = MHD_get_daemon_info(s->d, MHD_DAEMON_INFO_BIND_PORT);
    s->port = di ? di->port : o->port;
    return s;
}

int server_port(const server *s) { return s->port; }

void server_stop(server *s) {
    if (!s) return;
    sched_free(s->sc);          /* ends every generation: streams close */
    MHD_stop_daemon(s->d);
    metrics_free(s->mx);
    free(s);
}
