/*
 * api.c - OpenAI / Anthropic request parsing and validation (see api.h).
 *
 * Chat requests are normalised to the OpenAI message list that the V4 chat
 * encoder reads; Anthropic content blocks map as: text -> content,
 * thinking -> reasoning_content, tool_use -> tool_calls, tool_result ->
 * role "tool" messages (which the encoder merges into the user turn).
 */
#include "server/api.h"

#include <jansson.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "util/util.h"

#define MAX_STOP 8
#define BAD(...) (errf(err, errlen, __VA_ARGS__), 400)

void api_req_free(api_req *r) {
    if (!r) return;
    free(r->model);
    free(r->prompt);
    for (int i = 0; i < r->n_stop; i++) free(r->stop[i]);
    free(r->stop);
    grammar_free(r->grammar);
    memset(r, 0, sizeof *r);
}

char *api_error_json(api_kind kind, int status, const char *message, const char *code) {
    /* messages can end in a character cut by errf's buffer: keep them
     * valid UTF-8 by dropping non-ASCII bytes if jansson refuses them */
    char safe[512];
    json_t *probe = json_string(message);
    if (!probe) {
        size_t k = 0;
        for (const char *p = message; *p && k + 1 < sizeof safe; p++) safe[k++] = (*p & 0x80) ? '?' : *p;
        safe[k] = 0;
        message = safe;
    }
    json_decref(probe);
    json_t *e;
    if (kind == API_MESSAGES) {
        const char *type = status == 401 ? "authentication_error" : status == 404 ? "not_found_error"
                         : status == 413 ? "request_too_large" : status == 429 || status == 503 ? "overloaded_error"
                         : status >= 500 ? "api_error" : "invalid_request_error";
        e = json_pack("{s:s, s:{s:s, s:s}}", "type", "error", "error", "type", type, "message", message);
    } else {
        const char *type = status == 401 ? "authentication_error" : status >= 500 ? "server_error"
                         : status == 429 || status == 503 ? "rate_limit_error" : "invalid_request_error";
        e = json_pack("{s:{s:s, s:s, s:n, s:o}}", "error", "message", message, "type", type, "param",
                      "code", code ? json_string(code) : json_null());
    }
    char *s = json_dumps(e, JSON_COMPACT);
    json_decref(e);
    return s;
}

/* ---- common fields ------------------------------------------------------- */

static int get_number(json_t *o, const char *key, double lo, double hi, double *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_number(v)) return BAD("'%s' must be a number", key);
    double x = json_number_value(v);
    if (!(x >= lo && x <= hi)) return BAD("'%s' must be between %g and %g", key, lo, hi);
    *out = x;
    return 0;
}

static int get_int(json_t *o, const char *key, long lo, long hi, long *out, int *present, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_integer(v)) return BAD("'%s' must be an integer", key);
    long x = (long)json_integer_value(v);
    if (x < lo || x > hi) return BAD("'%s' must be between %ld and %ld", key, lo, hi);
    *out = x;
    if (present) *present = 1;
    return 0;
}

static int get_bool(json_t *o, const char *key, int *out, char *err, size_t errlen) {
    json_t *v = json_object_get(o, key);
    if (!v || json_is_null(v)) return 0;
    if (!json_is_boolean(v)) return BAD("'%s' must be a boolean", key);
    *out = json_is_true(v);
    return 0;
}

static int get_stop(json_t *v, api_req *r, const char *key, char *err, size_t errlen) {
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        r->stop = xcalloc(1, sizeof *r->stop);
        if (json_string_length(v)) r->stop[r->n_stop++] = xstrdup(json_string_value(v));
        return 0;
    }
    if (!json_is_array(v)) return BAD("'%s' must be a string or an array of strings", key);
    if (json_array_size(v) > MAX_STOP) return BAD("'%s' has more than %d entries", key, MAX_STOP);
    r->stop = xcalloc(json_array_size(v) + 1, sizeof *r->stop);
    size_t i;
    json_t *s;
    json_array_foreach(v, i, s) {
        if (!json_is_string(s)) return BAD("'%s' entries must be strings", key);
        if (json_string_length(s)) r->stop[r->n_stop++] = xstrdup(json_string_value(s));
    }
    return 0;
}

static int common_sampling(json_t *o, api_req *r, char *err, size_t errlen) {
    int rc;
    double t = 1.0, p = 1.0;
    if ((rc = get_number(o, "temperature", 0, 2, &t, err, errlen))) return rc;
    if ((rc = get_number(o, "top_p", 0, 1, &p, err, errlen))) return rc;
    r->temperature = (float)t;
    r->top_p = p > 0 ? (float)p : 1.0f;
    long k = 0, seed = 0;
    if ((rc = get_int(o, "top_k", 0, 1000000, &k, NULL, err, errlen))) return rc;
    r->top_k = (int)k;
    json_t *sv = json_object_get(o, "seed");
    if (sv && !json_is_null(sv)) {
        if (!json_is_integer(sv)) return BAD("'seed' must be an integer");
        seed = (long)json_integer_value(sv);
        r->seed = (uint64_t)seed;
        r->has_seed = 1;
    }
    if ((rc = get_bool(o, "stream", &r->stream, err, errlen))) return rc;
    json_t *m = json_object_get(o, "model");
    if (m && !json_is_null(m)) {
        if (!json_is_string(m)) return BAD("'model' must be a string");
        r->model = xstrdup(json_string_value(m));
    }
    return 0;
}

/* Text of an OpenAI content value (string, null, or text parts). */
static int content_text(json_t *c, char **out, char *err, size_t errlen) {
    if (!c || json_is_null(c)) { *out = xstrdup(""); return 0; }
    if (json_is_string(c)) { *out = xstrdup(json_string_value(c)); return 0; }
    if (!json_is_array(c)) return BAD("message 'content' must be a string or an array of parts");
    size_t total = 1, i;
    json_t *part;
    json_array_foreach(c, i, part) {
        json_t *tx = json_object_get(part, "text");
        const char *type = json_string_value(json_object_get(part, "type"));
        if (!json_is_object(part) || !type) return BAD("content parts must be objects with a 'type'");
        if (strcmp(type, "text") && strcmp(type, "input_text")) return BAD("content part type '%s' is not supported", type);
        if (!json_is_string(tx)) return BAD("text content parts need a string 'text'");
        total += json_string_length(tx);
    }
    char *s = xmalloc(total);
    size_t n = 0;
    json_array_foreach(c, i, part) {
        json_t *tx = json_object_get(part, "text");
        memcpy(s + n, json_string_value(tx), json_string_length(tx));
        n += json_string_length(tx);
    }
    s[n] = 0;
    *out = s;
    return 0;
}

/* ---- tools --------------------------------------------------------------- */

/* Validate an OpenAI tools array; returns it normalised (new ref). */
static int check_tools(json_t *tools, json_t **out, int *any_strict, char *err, size_t errlen) {
    *out = NULL;
    if (!tools || json_is_null(tools)) return 0;
    if (!json_is_array(tools)) return BAD("'tools' must be an array");
    json_t *norm = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *type = json_string_value(json_object_get(t, "type"));
        if (!json_is_object(t) || (type && strcmp(type, "function")) || !json_is_object(fn)) {
            json_decref(norm);
            return BAD("tools[%zu] must be {\"type\":\"function\",\"function\":{...}}", i);
        }
        json_t *name = json_object_get(fn, "name"), *params = json_object_get(fn, "parameters");
        if (!json_is_string(name) || !json_string_length(name)) { json_decref(norm); return BAD("tools[%zu].function.name must be a string", i); }
        if (params && !json_is_object(params) && !json_is_null(params)) { json_decref(norm); return BAD("tools[%zu].function.parameters must be an object", i); }
        if (json_is_true(json_object_get(fn, "strict"))) *any_strict = 1;
        json_t *f2 = json_object();
        json_object_set(f2, "name", name);
        json_t *desc = json_object_get(fn, "description");
        if (json_is_string(desc)) json_object_set(f2, "description", desc);
        json_object_set_new(f2, "parameters", json_is_object(params) ? json_incref(params) : json_pack("{s:s, s:{}}", "type", "object", "properties"));
        json_array_append_new(norm, json_pack("{s:s, s:o}", "type", "function", "function", f2));
    }
    *out = norm;
    return 0;
}

/* tool_choice -> mode: 0 none, 1 auto, 2 required, 3 named (*name set) */
static int parse_tool_choice(json_t *tc, int *mode, const char **name, char *err, size_t errlen) {
    *mode = 1;
    *name = NULL;
    if (!tc || json_is_null(tc)) return 0;
    if (json_is_string(tc)) {
        const char *s = json_string_value(tc);
        if (!strcmp(s, "none")) *mode = 0;
        else if (!strcmp(s, "auto")) *mode = 1;
        else if (!strcmp(s, "required")) *mode = 2;
        else return BAD("'tool_choice' must be none, auto, required or a function");
        return 0;
    }
    json_t *fn = json_object_get(tc, "function");
    const char *n = json_string_value(json_object_get(fn, "name"));
    if (!json_is_object(tc) || !n) return BAD("'tool_choice' object must name a function");
    *mode = 3;
    *name = n;
    return 0;
}

/* ---- chat ---------------------------------------------------------------- */

static int normalise_messages(json_t *msgs, json_t **out, char *err, size_t errlen) {
    if (!json_is_array(msgs) || !json_array_size(msgs)) return BAD("'messages' must be a non-empty array");
    json_t *res = json_array();
    size_t i;
    json_t *m;
    int rc = 0;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        if (!json_is_object(m) || !role) { rc = BAD("messages[%zu] needs a string 'role'", i); break; }
        if (strcmp(role, "system") && strcmp(role, "developer") && strcmp(role, "user") &&
            strcmp(role, "assistant") && strcmp(role, "tool")) {
            rc = BAD("messages[%zu].role '%s' is not one of system, developer, user, assistant, tool", i, role);
            break;
        }
        char *text = NULL;
        if ((rc = content_text(json_object_get(m, "content"), &text, err, errlen))) break;
        json_t *o = json_pack("{s:s, s:s}", "role", role, "content", text);
        free(text);
        if (!strcmp(role, "developer") && !json_string_length(json_object_get(o, "content"))) {
            json_decref(o);
            rc = BAD("messages[%zu]: a developer message needs content", i);
            break;
        }
        if (!strcmp(role, "assistant")) {
            json_t *rc_ = json_object_get(m, "reasoning_content");
            if (json_is_string(rc_)) json_object_set(o, "reasoning_content", rc_);
            json_t *calls = json_object_get(m, "tool_calls");
            if (calls && !json_is_null(calls)) {
                if (!json_is_array(calls)) { json_decref(o); rc = BAD("messages[%zu].tool_calls must be an array", i); break; }
                json_t *nc = json_array();
                size_t k;
                json_t *c;
                json_array_foreach(calls, k, c) {
                    json_t *fn = json_object_get(c, "function");
                    json_t *name = json_object_get(fn, "name"), *args = json_object_get(fn, "arguments");
                    if (!json_is_string(name)) { rc = BAD("messages[%zu].tool_calls[%zu].function.name must be a string", i, k); break; }
                    char *a = json_is_string(args) ? xstrdup(json_string_value(args))
                            : args ? json_dumps(args, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                if (!a) a = xstrdup("{}");
                    json_t *id = json_object_get(c, "id");
                    json_t *call = json_pack("{s:s, s:{s:O, s:s}}", "type", "function", "function", "name", name, "arguments", a);
                    if (json_is_string(id)) json_object_set(call, "id", id);
                    free(a);
                    json_array_append_new(nc, call);
                }
                if (rc) { json_decref(nc); json_decref(o); break; }
                json_object_set_new(o, "tool_calls", nc);
            }
        }
        if (!strcmp(role, "tool")) {
            json_t *id = json_object_get(m, "tool_call_id");
            if (json_is_string(id)) json_object_set(o, "tool_call_id", id);
        }
        json_array_append_new(res, o);
    }
    if (rc) { json_decref(res); return rc; }
    *out = res;
    return 0;
}

/* Anthropic messages + system -> OpenAI-style message list. */
static int anthropic_messages(json_t *root, json_t **out, char *err, size_t errlen) {
    json_t *res = json_array();
    json_t *sys = json_object_get(root, "system");
    int rc = 0;
    if (sys && !json_is_null(sys)) {
        char *text = NULL;
        if (json_is_string(sys)) text = xstrdup(json_string_value(sys));
        else if ((rc = content_text(sys, &text, err, errlen))) { json_decref(res); return rc; }
        json_array_append_new(res, json_pack("{s:s, s:s}", "role", "system", "content", text));
        free(text);
    }
    json_t *msgs = json_object_get(root, "messages");
    if (!json_is_array(msgs) || !json_array_size(msgs)) { json_decref(res); return BAD("'messages' must be a non-empty array"); }
    size_t i;
    json_t *m;
    json_array_foreach(msgs, i, m) {
        const char *role = json_string_value(json_object_get(m, "role"));
        json_t *content = json_object_get(m, "content");
        if (!json_is_object(m) || !role || (strcmp(role, "user") && strcmp(role, "assistant"))) {
            rc = BAD("messages[%zu].role must be user or assistant", i);
            break;
        }
        if (json_is_string(content)) {
            json_array_append_new(res, json_pack("{s:s, s:O}", "role", role, "content", content));
            continue;
        }
        if (!json_is_array(content)) { rc = BAD("messages[%zu].content must be a string or an array of blocks", i); break; }
        /* accumulate */
        size_t k;
        json_t *b;
        char *text = xstrdup(""), *reasoning = NULL;
        json_t *calls = json_array();
        json_array_foreach(content, k, b) {
            const char *type = json_string_value(json_object_get(b, "type"));
            if (!json_is_object(b) || !type) { rc = BAD("messages[%zu].content[%zu] needs a 'type'", i, k); break; }
            if (!strcmp(type, "text")) {
                json_t *t = json_object_get(b, "text");
                if (!json_is_string(t)) { rc = BAD("text blocks need a string 'text'"); break; }
                size_t n = strlen(text);
                text = xrealloc(text, n + json_string_length(t) + 1);
                memcpy(text + n, json_string_value(t), json_string_length(t) + 1);
            } else if (!strcmp(type, "thinking") && !strcmp(role, "assistant")) {
                json_t *t = json_object_get(b, "thinking");
                if (json_is_string(t)) { free(reasoning); reasoning = xstrdup(json_string_value(t)); }
            } else if (!strcmp(type, "redacted_thinking")) {
                /* nothing to render */
            } else if (!strcmp(type, "tool_use") && !strcmp(role, "assistant")) {
                json_t *name = json_object_get(b, "name"), *id = json_object_get(b, "id"), *input = json_object_get(b, "input");
                if (!json_is_string(name)) { rc = BAD("tool_use blocks need a 'name'"); break; }
                char *args = input ? json_dumps(input, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
                if (!args) args = xstrdup("{}");
                json_t *call = json_pack("{s:s, s:{s:O, s:s}}", "type", "function", "function", "name", name, "arguments", args);
                free(args);
                if (json_is_string(id)) json_object_set(call, "id", id);
                json_array_append_new(calls, call);
            } else if (!strcmp(type, "tool_result") && !strcmp(role, "user")) {
                json_t *id = json_object_get(b, "tool_use_id");
                char *rt = NULL;
                json_t *c = json_object_get(b, "content");
                if ((rc = content_text(c, &rt, err, errlen))) break;
                json_t *tm = json_pack("{s:s, s:s}", "role", "tool", "content", rt);
                free(rt);
                if (json_is_string(id)) json_object_set(tm, "tool_call_id", id);
                json_array_append_new(res, tm);
            } else {
                rc = BAD("content block type '%s' is not supported here", type);
                break;
            }
        }
        if (rc) { free(text); free(reasoning); json_decref(calls); break; }
        if (!strcmp(role, "assistant")) {
            json_t *o = json_pack("{s:s, s:s}", "role", "assistant", "content", text);
            if (reasoning) json_object_set_new(o, "reasoning_content", json_string(reasoning));
            if (json_array_size(calls)) json_object_set(o, "tool_calls", calls);
            json_array_append_new(res, o);
        } else if (text[0] || !json_array_size(res) ||
                   strcmp(json_string_value(json_object_get(json_array_get(res, json_array_size(res) - 1), "role")), "tool")) {
            json_array_append_new(res, json_pack("{s:s, s:s}", "role", "user", "content", text));
        }
        free(text);
        free(reasoning);
        json_decref(calls);
    }
    if (rc) { json_decref(res); return rc; }
    *out = res;
    return 0;
}

/* Anthropic tools -> OpenAI tools. */
static int anthropic_tools(json_t *tools, json_t **out, char *err, size_t errlen) {
    *out = NULL;
    if (!tools || json_is_null(tools)) return 0;
    if (!json_is_array(tools)) return BAD("'tools' must be an array");
    json_t *res = json_array();
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
        if (!json_is_string(name)) { json_decref(res); return BAD("tools[%zu].name must be a string", i); }
        json_t *fn = json_pack("{s:O}", "name", name);
        json_t *desc = json_object_get(t, "description");
        if (json_is_string(desc)) json_object_set(fn, "description", desc);
        json_object_set_new(fn, "parameters", json_is_object(schema) ? json_incref(schema) : json_pack("{s:s, s:{}}", "type", "object", "properties"));
        if (json_is_true(json_object_get(t, "strict"))) json_object_set_new(fn, "strict", json_true());
        json_array_append_new(res, json_pack("{s:s, s:o}", "type", "function", "function", fn));
    }
    *out = res;
    return 0;
}

/* Put tools / response_format on the leading system message. */
static void attach_to_system(json_t *msgs, const char *key, json_t *value) {
    json_t *first = json_array_get(msgs, 0);
    if (!first || strcmp(json_string_value(json_object_get(first, "role")), "system")) {
        first = json_pack("{s:s, s:s}", "role", "system", "content", "");
        json_array_insert_new(msgs, 0, first);
    }
    json_object_set(first, key, value);
}

static int build_grammar(api_req *r, json_t *tools, int tool_mode, const char *tool_name, int any_strict,
                         json_t *rf, char *err, size_t errlen) {
    char gerr[256] = "";
    if (tools && json_array_size(tools) && (tool_mode >= 2 || (tool_mode == 1 && any_strict))) {
        char *tj = json_dumps(tools, JSON_COMPACT);
        r->grammar = grammar_dsml_tools(tj, tool_mode == 3 ? tool_name : NULL, tool_mode == 1, gerr, sizeof gerr);
        free(tj);
        if (!r->grammar) return BAD("tools: %s", gerr);
    } else if (rf) {
        const char *type = json_string_value(json_object_get(rf, "type"));
        if (!json_is_object(rf) || !type) return BAD("'response_format' must be an object with a 'type'");
        if (!strcmp(type, "json_object")) {
            r->grammar = grammar_from_json_schema(NULL, gerr, sizeof gerr);
            r->json_output = 1;
        } else if (!strcmp(type, "json_schema")) {
            json_t *js = json_object_get(rf, "json_schema");
            json_t *schema = json_object_get(js, "schema");
            if (!json_is_object(js)) return BAD("response_format json_schema needs a 'json_schema' object");
            if (schema && !json_is_object(schema) && !json_is_boolean(schema)) return BAD("json_schema.schema must be an object");
            char *sj = schema ? json_dumps(schema, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
            r->grammar = grammar_from_json_schema(sj ? sj : "true", gerr, sizeof gerr);
            free(sj);
            r->json_output = 1;
        } else if (strcmp(type, "text")) {
            return BAD("response_format type '%s' is not supported", type);
        }
        if (r->json_output && !r->grammar) return BAD("response_format: %s", gerr);
    }
    if (r->grammar && r->thinking && grammar_add_thinking_prefix(r->grammar, gerr, sizeof gerr))
        return BAD("grammar: %s", gerr);
    return 0;
}

/* thinking / reasoning_effort (OpenAI side; DeepSeek's extensions). */
static int parse_thinking(json_t *o, int *thinking, const char **effort, char *err, size_t errlen) {
    json_t *th = json_object_get(o, "thinking");
    if (th && !json_is_null(th)) {
        if (json_is_boolean(th)) *thinking = json_is_true(th);
        else if (json_is_object(th)) {
            const char *t = json_string_value(json_object_get(th, "type"));
            if (!t || (strcmp(t, "enabled") && strcmp(t, "disabled"))) return BAD("'thinking.type' must be enabled or disabled");
            *thinking = !strcmp(t, "enabled");
        } else return BAD("'thinking' must be a boolean or {\"type\": \"enabled\"|\"disabled\"}");
    }
    json_t *kw = json_object_get(o, "chat_template_kwargs");
    if (json_is_object(kw) && json_is_boolean(json_object_get(kw, "thinking")))
        *thinking = json_is_true(json_object_get(kw, "thinking"));
    json_t *re = json_object_get(o, "reasoning_effort");
    if (re && !json_is_null(re)) {
        if (!json_is_string(re)) return BAD("'reasoning_effort' must be a string");
        const char *s = json_string_value(re);
        if (!strcmp(s, "none")) { *thinking = 0; return 0; }
        if (strcmp(s, "minimal") && strcmp(s, "low") && strcmp(s, "medium") && strcmp(s, "high") && strcmp(s, "max"))
            return BAD("'reasoning_effort' must be none, minimal, low, medium, high or max");
        *thinking = 1;
        *effort = !strcmp(s, "max") ? "max" : "high";
    }
    return 0;
}

static int parse_chat_like(api_kind kind, json_t *root, api_req *r, char *err, size_t errlen) {
    int rc;
    json_t *msgs = NULL, *tools = NULL;
    int any_strict = 0, tool_mode = 1;
    const char *tool_name = NULL, *effort = NULL;
    json_t *rf = NULL;
    if ((rc = common_sampling(root, r, err, errlen))) return rc;
    long mt = 0;
    int has_mt = 0;
    if (kind == API_MESSAGES) {
        if ((rc = get_int(root, "max_tokens", 1, 1 << 30, &mt, &has_mt, err, errlen))) return rc;
        if (!has_mt) return BAD("'max_tokens' is required");
        if ((rc = get_stop(json_object_get(root, "stop_sequences"), r, "stop_sequences", err, errlen))) return rc;
        if ((rc = anthropic_messages(root, &msgs, err, errlen))) return rc;
        if ((rc = anthropic_tools(json_object_get(root, "tools"), &tools, err, errlen))) goto out;
        json_t *fnl;
        size_t i;
        json_array_foreach(tools, i, fnl) if (json_is_true(json_object_get(json_object_get(fnl, "function"), "strict"))) any_strict = 1;
        json_t *tc = json_object_get(root, "tool_choice");
        if (tc && !json_is_null(tc)) {
            const char *t = json_string_value(json_object_get(tc, "type"));
            if (!json_is_object(tc) || !t) { rc = BAD("'tool_choice' must be an object with a 'type'"); goto out; }
            if (!strcmp(t, "auto")) tool_mode = 1;
            else if (!strcmp(t, "any")) tool_mode = 2;
            else if (!strcmp(t, "none")) tool_mode = 0;
            else if (!strcmp(t, "tool")) {
                tool_mode = 3;
                tool_name = json_string_value(json_object_get(tc, "name"));
                if (!tool_name) { rc = BAD("tool_choice type tool needs a 'name'"); goto out; }
            } else { rc = BAD("tool_choice type '%s' is not supported", t); goto out; }
        }
        json_t *th = json_object_get(root, "thinking");
        if (th && !json_is_null(th)) {
            const char *t = json_string_value(json_object_get(th, "type"));
            if (!json_is_object(th) || !t || (strcmp(t, "enabled") && strcmp(t, "disabled") && strcmp(t, "adaptive"))) {
                rc = BAD("'thinking' must be {\"type\": \"enabled\"|\"disabled\"}");
                goto out;
            }
            r->thinking = strcmp(t, "disabled") != 0;
        }
    } else {
        int has_mct = 0;
        long mct = 0;
        if ((rc = get_int(root, "max_tokens", 1, 1 << 30, &mt, &has_mt, err, errlen))) return rc;
        if ((rc = get_int(root, "max_completion_tokens", 1, 1 << 30, &mct, &has_mct, err, errlen))) return rc;
        if (has_mct) { mt = mct; has_mt = 1; }
        long n = 1;
        if ((rc = get_int(root, "n", 1, 1, &n, NULL, err, errlen))) return BAD("only n=1 is supported");
        json_t *so = json_object_get(root, "stream_options");
        if (so && !json_is_null(so)) {
            if (!json_is_object(so)) return BAD("'stream_options' must be an object");
            if ((rc = get_bool(so, "include_usage", &r->include_usage, err, errlen))) return rc;
        }
        if ((rc = get_stop(json_object_get(root, "stop"), r, "stop", err, errlen))) return rc;
        if ((rc = parse_thinking(root, &r->thinking, &effort, err, errlen))) return rc;
        if ((rc = normalise_messages(json_object_get(root, "messages"), &msgs, err, errlen))) return rc;
        if ((rc = check_tools(json_object_get(root, "tools"), &tools, &any_strict, err, errlen))) goto out;
        if ((rc = parse_tool_choice(json_object_get(root, "tool_choice"), &tool_mode, &tool_name, err, errlen))) goto out;
        rf = json_object_get(root, "response_format");
        if (json_is_null(rf)) rf = NULL;
        if (rf && !json_is_object(rf)) { rc = BAD("'response_format' must be an object"); goto out; }
        if (rf && !strcmp(json_string_value(json_object_get(rf, "type")) ? json_string_value(json_object_get(rf, "type")) : "", "text")) rf = NULL;
    }
    r->max_tokens = has_mt ? (int)mt : 0;
    if (tool_mode >= 2 && (!tools || !json_array_size(tools))) { rc = BAD("tool_choice requires 'tools'"); goto out; }
    if (tools && json_array_size(tools) && tool_mode != 0) {
        attach_to_system(msgs, "tools", tools);
        r->has_tools = 1;
    }
    if (rf) attach_to_system(msgs, "response_format", rf);
    if ((rc = build_grammar(r, r->has_tools ? tools : NULL, tool_mode, tool_name, any_strict, rf, err, errlen))) goto out;
    {
        dsv4_chat_opts co;
        dsv4_chat_opts_default(&co);
        co.thinking = r->thinking;
        co.reasoning_effort = r->thinking ? effort : NULL;
        char *mj = json_dumps(msgs, JSON_COMPACT);
        char cerr[512] = "";
        if (dsv4_chat_encode(mj, &co, &r->prompt, cerr, sizeof cerr)) rc = BAD("messages: %s", cerr);
        free(mj);
    }
out:
    json_decref(msgs);
    json_decref(tools);
    return rc;
}

static int parse_completions(json_t *root, api_req *r, char *err, size_t errlen) {
    int rc;
    if ((rc = common_sampling(root, r, err, errlen))) return rc;
    long mt = 16;
    int has = 0;
    if ((rc = get_int(root, "max_tokens", 1, 1 << 30, &mt, &has, err, errlen))) return rc;
    r->max_tokens = (int)mt;
    long n = 1;
    if (get_int(root, "n", 1, 1, &n, NULL, err, errlen)) return BAD("only n=1 is supported");
    if (json_is_true(json_object_get(root, "echo"))) return BAD("'echo' is not supported");
    json_t *so = json_object_get(root, "stream_options");
    if (json_is_object(so) && (rc = get_bool(so, "include_usage", &r->include_usage, err, errlen))) return rc;
    if ((rc = get_stop(json_object_get(root, "stop"), r, "stop", err, errlen))) return rc;
    json_t *p = json_object_get(root, "prompt");
    if (json_is_array(p) && json_array_size(p) == 1 && json_is_string(json_array_get(p, 0))) p = json_array_get(p, 0);
    if (!json_is_string(p)) return BAD("'prompt' must be a string");
    r->prompt = xstrdup(json_string_value(p));
    return 0;
}

int api_parse(api_kind kind, const char *body, size_t len, api_req *r, char *err, size_t errlen) {
    memset(r, 0, sizeof *r);
    r->kind = kind;
    r->temperature = 1.0f;
    r->top_p = 1.0f;
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) return BAD("invalid JSON body: %s (line %d)", je.text, je.line);
    int rc;
    if (!json_is_object(root)) rc = BAD("the request body must be a JSON object");
    else if (kind == API_COMPLETIONS) rc = parse_completions(root, r, err, errlen);
    else rc = parse_chat_like(kind, root, r, err, errlen);
    json_decref(root);
    if (rc) api_req_free(r);
    return rc;
}
