/*
 * chat.c - DeepSeek-V4 chat encoding: messages (OpenAI-style JSON) to the
 * prompt string, exactly as encode_messages() of the official
 * encoding/encoding_dsv4.py renders it.
 *
 * The pipeline is the official one, step by step:
 *
 *   merge_tool_messages   "tool" messages become tool_result blocks of a
 *                         user turn; consecutive user messages merge
 *   sort_tool_results     tool_result blocks follow the order of the
 *                         preceding assistant's tool_calls ids
 *   drop_thinking         (thinking mode) earlier assistants lose their
 *                         reasoning, earlier developer messages vanish
 *   render_message        each message to text, plus the transition
 *                         tokens (<｜Assistant｜> + think token, task tokens)
 *
 * Values keep Python semantics (text/pyjson.h): truthiness decides what is
 * rendered, non-string values are formatted with str() where the Python
 * code formats them, json.dumps(ensure_ascii=False) writes tool schemas and
 * non-string tool arguments.  Inputs the Python code rejects (an empty
 * developer message, an unknown role, a bad task, ...) give an error whose
 * text starts with the Python exception class and repeats its message.
 */
#include "dsv4_chat.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat_internal.h"
#include "text/pyjson.h"
#include "util/util.h"

static const char REASONING_EFFORT_MAX[] =
    "Reasoning Effort: Absolute maximum with no shortcuts permitted.\n"
    "You MUST be very thorough in your thinking and comprehensively decompose the problem to "
    "resolve the root cause, rigorously stress-testing your logic against all potential paths, "
    "edge cases, and adversarial scenarios.\n"
    "Explicitly write out your entire deliberation process, documenting every intermediate "
    "step, considered alternative, and rejected hypothesis to ensure absolutely no assumption "
    "is left unchecked.\n\n";

/* The tools section; "%s" is the newline-joined tool schemas. */
static const char TOOLS_HEAD[] =
    "## Tools\n\n"
    "You have access to a set of tools to help answer the user's question. You can invoke "
    "tools by writing a \"<" DSV4_DSML_TOKEN "tool_calls>\" block like the following:\n\n"
    "<" DSV4_DSML_TOKEN "tool_calls>\n"
    "<" DSV4_DSML_TOKEN "invoke name=\"$TOOL_NAME\">\n"
    "<" DSV4_DSML_TOKEN "parameter name=\"$PARAMETER_NAME\" string=\"true|false\">"
    "$PARAMETER_VALUE</" DSV4_DSML_TOKEN "parameter>\n"
    "...\n"
    "</" DSV4_DSML_TOKEN "invoke>\n"
    "<" DSV4_DSML_TOKEN "invoke name=\"$TOOL_NAME2\">\n"
    "...\n"
    "</" DSV4_DSML_TOKEN "invoke>\n"
    "</" DSV4_DSML_TOKEN "tool_calls>\n\n"
    "String parameters should be specified as is and set `string=\"true\"`. For all other "
    "types (numbers, booleans, arrays, objects), pass the value in JSON format and set "
    "`string=\"false\"`.\n\n"
    "If thinking_mode is enabled (triggered by <think>), you MUST output your complete "
    "reasoning inside <think>...</think> BEFORE any tool calls or final response.\n\n"
    "Otherwise, output directly after </think> with tool calls or final response.\n\n"
    "### Available Tool Schemas\n\n";
static const char TOOLS_TAIL[] =
    "\n\nYou MUST strictly follow the above defined tool name and parameter schemas to invoke "
    "tool calls.\n";

static const char RESPONSE_FORMAT_HEAD[] =
    "## Response Format:\n\nYou MUST strictly adhere to the following schema to reply:\n";

static const char *const TASK_NAMES[] = {"action", "query", "authority", "domain", "title", "read_url"};
static const char *const TASK_TOKENS[] = {"<｜action｜>", "<｜query｜>", "<｜authority｜>",
                                          "<｜domain｜>", "<｜title｜>", "<｜read_url｜>"};
#define N_TASKS (sizeof TASK_NAMES / sizeof TASK_NAMES[0])

void dsv4_chat_opts_default(dsv4_chat_opts *o) {
    memset(o, 0, sizeof *o);
    o->drop_thinking = 1;
    o->add_default_bos_token = 1;
}

/* ------------------------------------------------------------ error helpers */

typedef struct {
    pj_arena *a;
    pjbuf err;   /* "Type: message" of the first error */
} enc;

/* Report a Python exception: "Type: message".  The message is kept whole
 * (it may quote a whole message dict). */
static int pyerr(enc *e, const char *type, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int pyerr(enc *e, const char *type, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *msg = xmalloc((size_t)(n > 0 ? n : 0) + 1);
    va_start(ap, fmt);
    vsnprintf(msg, (size_t)(n > 0 ? n : 0) + 1, fmt, ap);
    va_end(ap);
    e->err.len = 0;
    pjb_printf(&e->err, "%s: %s", type, msg);
    free(msg);
    return -1;
}

/* str() or repr() of a value as a malloc'd C string. */
static char *value_text(const pj *v, int repr) {
    pjbuf b;
    pjb_init(&b);
    if (repr) pj_repr(&b, v); else pj_str(&b, v);
    pjb_putn(&b, "", 0);
    return pjb_steal(&b);
}

/* x.get(...) on a value that is not a dict. */
static int no_get(enc *e, const pj *v) {
    return pyerr(e, "AttributeError", "'%s' object has no attribute 'get'", pj_type_name(v));
}

/* d.get(key, default): the value or dflt when absent; -1 if d is not a dict. */
static int get(enc *e, const pj *d, const char *key, pj *dflt, pj **out) {
    *out = dflt;
    if (!d || d->type != PJ_DICT) return no_get(e, d);
    pj *v = pj_get(d, key);
    *out = v ? v : dflt;
    return 0;
}

/* obj[key] for a str key. */
static int getitem(enc *e, const pj *obj, const char *key, pj **out) {
    *out = NULL;
    switch (obj->type) {
    case PJ_DICT:
        *out = pj_get(obj, key);
        if (!*out) return pyerr(e, "KeyError", "'%s'", key);
        return 0;
    case PJ_LIST:
        return pyerr(e, "TypeError", "list indices must be integers or slices, not str");
    case PJ_STR:
        return pyerr(e, "TypeError", "string indices must be integers, not 'str'");
    default:
        return pyerr(e, "TypeError", "'%s' object is not subscriptable", pj_type_name(obj));
    }
}

/* iter(v) materialised as a list: list items, dict keys, str characters. */
static int iterate(enc *e, const pj *v, pj **out) {
    if (v->type == PJ_LIST) { *out = (pj *)v; return 0; }
    pj *l = pj_new(e->a, PJ_LIST);
    if (v->type == PJ_DICT) {
        for (size_t i = 0; i < v->n; i++) pj_list_append(e->a, l, v->keys[i]);
    } else if (v->type == PJ_STR) {
        for (size_t i = 0; i < v->len;) {
            size_t n = 1;
            while (i + n < v->len && ((unsigned char)v->s[i + n] & 0xC0) == 0x80) n++;
            pj_list_append(e->a, l, pj_new_str(e->a, v->s + i, n));
            i += n;
        }
    } else {
        return pyerr(e, "TypeError", "'%s' object is not iterable", pj_type_name(v));
    }
    *out = l;
    return 0;
}

static int hashable(enc *e, const pj *v) {
    if (v->type == PJ_LIST || v->type == PJ_DICT)
        return pyerr(e, "TypeError", "unhashable type: '%s'", pj_type_name(v));
    return 0;
}

static int role_is(const pj *msg, const char *role) {
    return pj_is_str(pj_get(msg, "role"), role);
}

/* "\n\n".join(parts): every part must be a str. */
static int join_strs(enc *e, pjbuf *b, pj *const *parts, size_t n, const char *sep) {
    for (size_t i = 0; i < n; i++)
        if (parts[i]->type != PJ_STR)
            return pyerr(e, "TypeError", "sequence item %zu: expected str instance, %s found", i,
                         pj_type_name(parts[i]));
    for (size_t i = 0; i < n; i++) {
        if (i) pjb_puts(b, sep);
        pjb_putn(b, parts[i]->s, parts[i]->len);
    }
    return 0;
}

static pj *list_of(enc *e, pj *const *items, size_t n) {
    pj *l = pj_new(e->a, PJ_LIST);
    for (size_t i = 0; i < n; i++) pj_list_append(e->a, l, items[i]);
    return l;
}

static void set(enc *e, pj *d, const char *key, pj *v) { pj_dict_set(e->a, d, key, strlen(key), v); }

/* ----------------------------------------------------------- preprocessing */

/* merge_tool_messages: tool results and consecutive user messages become
 * user messages with content_blocks. */
static int merge_tool_messages(enc *e, const pj *messages, pj **out) {
    pj *merged = pj_new(e->a, PJ_LIST);
    pj *empty = pj_new_str(e->a, "", 0);
    for (size_t i = 0; i < messages->n; i++) {
        pj *msg = messages->items[i], *role, *v;
        if (get(e, msg, "role", NULL, &role) < 0) return -1;
        pj *last = merged->n ? merged->items[merged->n - 1] : NULL;
        int last_user_blocks = last && role_is(last, "user") && pj_get(last, "content_blocks");
        if (pj_is_str(role, "tool")) {
            pj *block = pj_new(e->a, PJ_DICT);
            set(e, block, "type", pj_new_cstr(e->a, "tool_result"));
            get(e, msg, "tool_call_id", empty, &v);
            set(e, block, "tool_use_id", v);
            get(e, msg, "content", empty, &v);
            set(e, block, "content", v);
            if (last_user_blocks) {
                pj_list_append(e->a, pj_get(last, "content_blocks"), block);
            } else {
                pj *m = pj_new(e->a, PJ_DICT);
                set(e, m, "role", pj_new_cstr(e->a, "user"));
                set(e, m, "content_blocks", list_of(e, &block, 1));
                pj_list_append(e->a, merged, m);
            }
        } else if (pj_is_str(role, "user")) {
            pj *block = pj_new(e->a, PJ_DICT), *content;
            get(e, msg, "content", empty, &content);
            set(e, block, "type", pj_new_cstr(e->a, "text"));
            set(e, block, "text", content);
            pj *task = last ? pj_get(last, "task") : NULL;
            if (last_user_blocks && (!task || task->type == PJ_NULL)) {
                pj_list_append(e->a, pj_get(last, "content_blocks"), block);
            } else {
                pj *m = pj_new(e->a, PJ_DICT);
                set(e, m, "role", pj_new_cstr(e->a, "user"));
                set(e, m, "content", content);
                set(e, m, "content_blocks", list_of(e, &block, 1));
                static const char *const keep[] = {"task", "wo_eos", "mask"};
                for (size_t k = 0; k < 3; k++)
                    if ((v = pj_get(msg, keep[k]))) set(e, m, keep[k], v);
                pj_list_append(e->a, merged, m);
            }
        } else {
            pj_list_append(e->a, merged, msg);
        }
    }
    *out = merged;
    return 0;
}

/* The call order of the latest assistant tool_calls: id -> index. */
typedef struct {
    pj **ids;
    size_t *pos;
    size_t n, cap;
} call_order;

static size_t order_lookup(const call_order *o, const pj *id) {
    for (size_t i = 0; i < o->n; i++)
        if (pj_equal(o->ids[i], id)) return o->pos[i];
    return 0;
}

static void order_set(call_order *o, pj *id, size_t pos) {
    for (size_t i = 0; i < o->n; i++)
        if (pj_equal(o->ids[i], id)) { o->pos[i] = pos; return; }
    if (o->n == o->cap) {
        o->cap = o->cap ? o->cap * 2 : 8;
        o->ids = xrealloc(o->ids, o->cap * sizeof(pj *));
        o->pos = xrealloc(o->pos, o->cap * sizeof(size_t));
    }
    o->ids[o->n] = id;
    o->pos[o->n++] = pos;
}

static int record_call_order(enc *e, pj *msg, call_order *o) {
    pj *calls;
    if (iterate(e, pj_get(msg, "tool_calls"), &calls) < 0) return -1;
    o->n = 0;
    for (size_t idx = 0; idx < calls->n; idx++) {
        pj *tc = calls->items[idx], *id, *fn;
        if (get(e, tc, "id", NULL, &id) < 0) return -1;
        if (!pj_truthy(id)) {
            pj *empty = pj_new_str(e->a, "", 0);
            get(e, tc, "function", NULL, &fn);
            if (!fn) id = empty;
            else if (get(e, fn, "id", empty, &id) < 0) return -1;
        }
        if (pj_truthy(id)) {
            if (hashable(e, id) < 0) return -1;
            order_set(o, id, idx);
        }
    }
    return 0;
}

typedef struct { pj *block; size_t key, seq; } keyed_block;

static int cmp_keyed(const void *a, const void *b) {
    const keyed_block *x = a, *y = b;
    if (x->key != y->key) return x->key < y->key ? -1 : 1;
    return x->seq < y->seq ? -1 : x->seq > y->seq;   /* stable */
}

static int sort_user_blocks(enc *e, pj *msg, const call_order *o) {
    pj *blocks, *type, *id;
    if (iterate(e, pj_get(msg, "content_blocks"), &blocks) < 0) return -1;
    size_t ntool = 0;
    for (size_t i = 0; i < blocks->n; i++) {
        if (get(e, blocks->items[i], "type", NULL, &type) < 0) return -1;
        if (pj_is_str(type, "tool_result")) ntool++;
    }
    if (ntool <= 1 || o->n == 0) return 0;
    keyed_block *kb = xmalloc(ntool * sizeof *kb);
    size_t k = 0;
    for (size_t i = 0; i < blocks->n; i++) {
        pj *b = blocks->items[i];
        if (!pj_is_str(pj_get(b, "type"), "tool_result")) continue;
        get(e, b, "tool_use_id", pj_new_str(e->a, "", 0), &id);
        if (hashable(e, id) < 0) { free(kb); return -1; }
        kb[k].block = b;
        kb[k].key = order_lookup(o, id);
        kb[k].seq = k;
        k++;
    }
    qsort(kb, ntool, sizeof *kb, cmp_keyed);
    pj *sorted = pj_new(e->a, PJ_LIST);
    k = 0;
    for (size_t i = 0; i < blocks->n; i++) {
        pj *b = blocks->items[i];
        pj_list_append(e->a, sorted, pj_is_str(pj_get(b, "type"), "tool_result") ? kb[k++].block : b);
    }
    free(kb);
    set(e, msg, "content_blocks", sorted);
    return 0;
}

/* sort_tool_results_by_call_order (in place on the messages' blocks). */
static int sort_tool_results(enc *e, pj *messages) {
    call_order o = {0};
    int rc = 0;
    for (size_t i = 0; i < messages->n && rc == 0; i++) {
        pj *msg = messages->items[i], *role;
        if ((rc = get(e, msg, "role", NULL, &role)) < 0) break;
        if (pj_is_str(role, "assistant") && pj_truthy(pj_get(msg, "tool_calls")))
            rc = record_call_order(e, msg, &o);
        else if (pj_is_str(role, "user") && pj_truthy(pj_get(msg, "content_blocks")))
            rc = sort_user_blocks(e, msg, &o);
    }
    free(o.ids);
    free(o.pos);
    return rc;
}

/* find_last_user_index: last user or developer message, or -1. */
static long last_user_index(const pj *messages) {
    for (size_t i = messages->n; i-- > 0;)
        if (role_is(messages->items[i], "user") || role_is(messages->items[i], "developer"))
            return (long)i;
    return -1;
}

/* _drop_thinking_messages */
static pj *drop_thinking_messages(enc *e, const pj *messages) {
    static const char *const keep[] = {"user", "system", "tool", "latest_reminder",
                                       "direct_search_results"};
    long last = last_user_index(messages);
    pj *out = pj_new(e->a, PJ_LIST);
    for (size_t i = 0; i < messages->n; i++) {
        pj *msg = messages->items[i];
        int kept = (long)i >= last;
        for (size_t k = 0; k < 5 && !kept; k++) kept = role_is(msg, keep[k]);
        if (kept) {
            pj_list_append(e->a, out, msg);
        } else if (role_is(msg, "assistant")) {
            pj *copy = pj_shallow_copy(e->a, msg);
            pj_dict_del(copy, "reasoning_content");
            pj_list_append(e->a, out, copy);
        }
    }
    return out;
}

/* --------------------------------------------------------------- rendering */

/* Text of a value as "{x}".format(x=v) writes it. */
static void put_str(pjbuf *b, const pj *v) { pj_str(b, v); }

/* `value or ""` formatted */
static void put_str_or_empty(pjbuf *b, const pj *v) {
    if (pj_truthy(v)) put_str(b, v);
}

static void render_tools(pjbuf *b, const pj *functions) {
    pjb_puts(b, TOOLS_HEAD);
    for (size_t i = 0; i < functions->n; i++) {
        if (i) pjb_putc(b, '\n');
        pj_dumps(b, functions->items[i], 0);
    }
    pjb_puts(b, TOOLS_TAIL);
}

static void render_response_format(pjbuf *b, const pj *rf) {
    pjb_puts(b, "\n\n");
    pjb_puts(b, RESPONSE_FORMAT_HEAD);
    pj_dumps(b, rf, 0);
}

/* encode_arguments_to_dsml: the parameters of one call. */
static int encode_arguments(enc *e, pjbuf *b, pj *arguments) {
    pj *args = NULL;
    if (arguments->type == PJ_STR) {
        char dummy[8];
        args = pj_parse(e->a, arguments->s, arguments->len, dummy, sizeof dummy);
    }
    if (!args) {   /* not JSON (or not a str): one "arguments" parameter */
        args = pj_new(e->a, PJ_DICT);
        set(e, args, "arguments", arguments);
    }
    if (args->type != PJ_DICT)
        return pyerr(e, "AttributeError", "'%s' object has no attribute 'items'", pj_type_name(args));
    for (size_t i = 0; i < args->n; i++) {
        pj *v = args->items[i];
        int is_str = v->type == PJ_STR;
        if (i) pjb_putc(b, '\n');
        pjb_puts(b, "<" DSV4_DSML_TOKEN "parameter name=\"");
        pjb_putn(b, args->keys[i]->s, args->keys[i]->len);
        pjb_puts(b, is_str ? "\" string=\"true\">" : "\" string=\"false\">");
        if (is_str) pjb_putn(b, v->s, v->len); else pj_dumps(b, v, 0);
        pjb_puts(b, "</" DSV4_DSML_TOKEN "parameter>");
    }
    return 0;
}

/* The "\n\n<｜DSML｜tool_calls>...</｜DSML｜tool_calls>" block. */
static int render_tool_calls(enc *e, pjbuf *b, const pj *calls) {
    pjb_puts(b, "\n\n<" DSV4_DSML_TOKEN "tool_calls>\n");
    for (size_t i = 0; i < calls->n; i++) {
        pj *tc = calls->items[i];
        if (i) pjb_putc(b, '\n');
        pjb_puts(b, "<" DSV4_DSML_TOKEN "invoke name=\"");
        put_str(b, pj_get(tc, "name"));
        pjb_puts(b, "\">\n");
        if (encode_arguments(e, b, pj_get(tc, "arguments")) < 0) return -1;
        pjb_puts(b, "\n</" DSV4_DSML_TOKEN "invoke>");
    }
    pjb_puts(b, "\n</" DSV4_DSML_TOKEN "tool_calls>");
    return 0;
}

/* The text of a tool_result block's content. */
static int render_tool_content(enc *e, pjbuf *b, pj *content) {
    if (content->type != PJ_LIST) { put_str(b, content); return 0; }
    pj **parts = xmalloc((content->n + 1) * sizeof(pj *));
    for (size_t i = 0; i < content->n; i++) {
        pj *item = content->items[i], *type, *text;
        if (get(e, item, "type", NULL, &type) < 0) { free(parts); return -1; }
        if (pj_is_str(type, "text")) {
            get(e, item, "text", pj_new_str(e->a, "", 0), &text);
            parts[i] = text;
        } else {
            pjbuf t;
            pjb_init(&t);
            pjb_puts(&t, "[Unsupported ");
            put_str(&t, type ? type : pj_new(e->a, PJ_NULL));
            pjb_putc(&t, ']');
            parts[i] = pj_new_str(e->a, t.p, t.len);
            pjb_free(&t);
        }
    }
    int rc = join_strs(e, b, parts, content->n, "\n\n");
    free(parts);
    return rc;
}

static int render_user(enc *e, pjbuf *b, const pj *msg) {
    pjb_puts(b, "<｜User｜>");
    pj *blocks = pj_get(msg, "content_blocks");
    if (!pj_truthy(blocks)) {
        pj *content = pj_get(msg, "content");
        if (!pj_truthy(content)) return 0;
        if (content->type != PJ_STR)
            return pyerr(e, "TypeError", "can only concatenate str (not \"%s\") to str",
                         pj_type_name(content));
        pjb_putn(b, content->s, content->len);
        return 0;
    }
    if (iterate(e, blocks, &blocks) < 0) return -1;
    pj **parts = xmalloc((blocks->n + 1) * sizeof(pj *));
    int rc = 0;
    for (size_t i = 0; i < blocks->n && rc == 0; i++) {
        pj *block = blocks->items[i], *type, *v;
        if ((rc = get(e, block, "type", NULL, &type)) < 0) break;
        if (pj_is_str(type, "text")) {
            get(e, block, "text", pj_new_str(e->a, "", 0), &v);
            parts[i] = v;
            continue;
        }
        pjbuf t;
        pjb_init(&t);
        if (pj_is_str(type, "tool_result")) {
            get(e, block, "content", pj_new_str(e->a, "", 0), &v);
            pjb_puts(&t, "<tool_result>");
            rc = render_tool_content(e, &t, v);
            pjb_puts(&t, "</tool_result>");
        } else {
            pjb_puts(&t, "[Unsupported ");
            put_str(&t, type ? type : pj_new(e->a, PJ_NULL));
            pjb_putc(&t, ']');
        }
        parts[i] = pj_new_str(e->a, t.p, t.len);
        pjb_free(&t);
    }
    if (rc == 0) rc = join_strs(e, b, parts, blocks->n, "\n\n");
    free(parts);
    return rc;
}

typedef struct {
    int thinking, drop_thinking;
    const pj *effort;   /* NULL = None */
} render_opts;

static int render_assistant(enc *e, pjbuf *b, const pj *messages, size_t index, long last_user,
                            const pj *calls, const render_opts *ro) {
    const pj *msg = messages->items[index];
    pjbuf tc;
    pjb_init(&tc);
    if (calls && render_tool_calls(e, &tc, calls) < 0) { pjb_free(&tc); return -1; }
    pj *prev_task = index > 0 ? pj_get(messages->items[index - 1], "task") : NULL;
    int prev_has_task = prev_task && prev_task->type != PJ_NULL;
    if (ro->thinking && !prev_has_task && (!ro->drop_thinking || (long)index > last_user)) {
        put_str_or_empty(b, pj_get(msg, "reasoning_content"));
        pjb_puts(b, "</think>");
    }
    put_str_or_empty(b, pj_get(msg, "content"));
    if (tc.len) pjb_putn(b, tc.p, tc.len);
    pjb_free(&tc);
    if (!pj_truthy(pj_get(msg, "wo_eos"))) pjb_puts(b, DSV4_EOS_TOKEN);
    return 0;
}

/* tools_from_openai_format / tool_calls_from_openai_format */
static int convert_tools(enc *e, pj *tools, pj **out) {
    pj *items, *fn;
    if (iterate(e, tools, &items) < 0) return -1;
    pj *l = pj_new(e->a, PJ_LIST);
    for (size_t i = 0; i < items->n; i++) {
        if (getitem(e, items->items[i], "function", &fn) < 0) return -1;
        pj_list_append(e->a, l, fn);
    }
    *out = l;
    return 0;
}

static int convert_tool_calls(enc *e, pj *calls, pj **out) {
    pj *items, *fn, *name, *args;
    if (iterate(e, calls, &items) < 0) return -1;
    pj *l = pj_new(e->a, PJ_LIST);
    for (size_t i = 0; i < items->n; i++) {
        if (getitem(e, items->items[i], "function", &fn) < 0 || getitem(e, fn, "name", &name) < 0 ||
            getitem(e, fn, "arguments", &args) < 0)
            return -1;
        pj *tc = pj_new(e->a, PJ_DICT);
        set(e, tc, "name", name);
        set(e, tc, "arguments", args);
        pj_list_append(e->a, l, tc);
    }
    *out = l;
    return 0;
}

/* The tokens after a message: task token, or <｜Assistant｜> + think token
 * when the model is to answer a user/developer turn. */
static int render_transition(enc *e, pjbuf *b, const pj *messages, size_t index, long last_user,
                             const render_opts *ro) {
    const pj *msg = messages->items[index];
    if (index + 1 < messages->n) {
        pj *next = messages->items[index + 1];
        if (!role_is(next, "assistant") && !role_is(next, "latest_reminder")) return 0;
    }
    pj *task = pj_get(msg, "task");
    if (task && task->type != PJ_NULL) {
        if (hashable(e, task) < 0) return -1;
        size_t t = 0;
        while (t < N_TASKS && !pj_is_str(task, TASK_NAMES[t])) t++;
        if (t == N_TASKS) {
            char *v = value_text(task, 0);
            pyerr(e, "AssertionError",
                  "Invalid task: '%s'. Valid tasks are: ['action', 'query', 'authority', "
                  "'domain', 'title', 'read_url']", v);
            free(v);
            return -1;
        }
        if (t != 0) {
            pjb_puts(b, TASK_TOKENS[t]);
        } else {
            pjb_puts(b, "<｜Assistant｜>");
            pjb_puts(b, ro->thinking ? "<think>" : "</think>");
            pjb_puts(b, TASK_TOKENS[t]);
        }
    } else if (role_is(msg, "user") || role_is(msg, "developer")) {
        pjb_puts(b, "<｜Assistant｜>");
        if (ro->thinking && (!ro->drop_thinking || (long)index >= last_user))
            pjb_puts(b, "<think>");
        else
            pjb_puts(b, "</think>");
    }
    return 0;
}

/* render_message */
static int render_message(enc *e, pjbuf *b, const pj *messages, size_t index, long last_user,
                          const render_opts *ro) {
    const pj *msg = messages->items[index];
    pj *role = pj_get(msg, "role"), *content = pj_get(msg, "content");
    pj *tools = pj_get(msg, "tools"), *rf = pj_get(msg, "response_format");
    pj *calls = pj_get(msg, "tool_calls");
    if (pj_truthy(tools) && convert_tools(e, tools, &tools) < 0) return -1;
    if (pj_truthy(calls)) {
        if (convert_tool_calls(e, calls, &calls) < 0) return -1;
    } else {
        calls = NULL;
    }
    if (ro->effort && !pj_is_str(ro->effort, "max") && !pj_is_str(ro->effort, "high")) {
        char *v = value_text(ro->effort, 0);
        pyerr(e, "AssertionError", "Invalid reasoning effort: %s", v);
        free(v);
        return -1;
    }
    if (index == 0 && ro->thinking && ro->effort && pj_is_str(ro->effort, "max"))
        pjb_puts(b, REASONING_EFFORT_MAX);

    if (pj_is_str(role, "system")) {
        put_str_or_empty(b, content);
        if (pj_truthy(tools)) { pjb_puts(b, "\n\n"); render_tools(b, tools); }
        if (pj_truthy(rf)) render_response_format(b, rf);
    } else if (pj_is_str(role, "developer")) {
        if (!pj_truthy(content)) {
            char *r = value_text(msg, 1);
            pyerr(e, "AssertionError", "Invalid message for role `developer`: %s", r);
            free(r);
            return -1;
        }
        if (content->type != PJ_STR)
            return pyerr(e, "TypeError", "can only concatenate str (not \"%s\") to str",
                         pj_type_name(content));
        pjb_puts(b, "<｜User｜>");
        pjb_putn(b, content->s, content->len);
        if (pj_truthy(tools)) { pjb_puts(b, "\n\n"); render_tools(b, tools); }
        if (pj_truthy(rf)) render_response_format(b, rf);
    } else if (pj_is_str(role, "user")) {
        if (render_user(e, b, msg) < 0) return -1;
    } else if (pj_is_str(role, "latest_reminder")) {
        pjb_puts(b, "<｜latest_reminder｜>");
        put_str(b, content ? content : pj_new(e->a, PJ_NULL));
    } else if (pj_is_str(role, "tool")) {
        return pyerr(e, "NotImplementedError",
                     "deepseek_v4 merges tool messages into user; please preprocess with "
                     "merge_tool_messages()");
    } else if (pj_is_str(role, "assistant")) {
        if (render_assistant(e, b, messages, index, last_user, calls, ro) < 0) return -1;
    } else {
        char *v = value_text(role ? role : pj_new(e->a, PJ_NULL), 0);
        pyerr(e, "NotImplementedError", "Unknown role: %s", v);
        free(v);
        return -1;
    }
    return render_transition(e, b, messages, index, last_user, ro);
}

/* ------------------------------------------------------------------ encode */

static pj *concat(enc *e, const pj *a, const pj *b) {
    pj *l = pj_new(e->a, PJ_LIST);
    for (size_t i = 0; i < a->n; i++) pj_list_append(e->a, l, a->items[i]);
    for (size_t i = 0; i < b->n; i++) pj_list_append(e->a, l, b->items[i]);
    return l;
}

static pj *slice_from(enc *e, const pj *a, size_t from) {
    pj *l = pj_new(e->a, PJ_LIST);
    for (size_t i = from; i < a->n; i++) pj_list_append(e->a, l, a->items[i]);
    return l;
}

/* Put request-level tools into the conversation the way the encoder reads
 * them: on a leading system message (one with empty content is inserted
 * when the conversation does not start with one). */
static pj *attach_tools(enc *e, pj *list, pj *tools) {
    pj *first = list->n ? list->items[0] : NULL;
    pj *out = slice_from(e, list, 0);
    if (first && first->type == PJ_DICT && role_is(first, "system")) {
        if (pj_truthy(pj_get(first, "tools"))) return out;
        pj *copy = pj_shallow_copy(e->a, first);
        set(e, copy, "tools", tools);
        out->items[0] = copy;
        return out;
    }
    pj *sys = pj_new(e->a, PJ_DICT);
    set(e, sys, "role", pj_new_cstr(e->a, "system"));
    set(e, sys, "content", pj_new_str(e->a, "", 0));
    set(e, sys, "tools", tools);
    pj *l = list_of(e, &sys, 1);
    for (size_t i = 0; i < list->n; i++) pj_list_append(e->a, l, list->items[i]);
    return l;
}

static int encode(enc *e, pj *messages, pj *context, const chat_values *v, pjbuf *b) {
    pj_arena *a = e->a;
    if (!messages) messages = pj_new(a, PJ_NULL);
    if (iterate(e, messages, &messages) < 0) return -1;
    if (!context || !pj_truthy(context)) context = pj_new(a, PJ_LIST);
    if (context->type == PJ_STR)
        return pyerr(e, "TypeError", "can only concatenate str (not \"list\") to str");
    if (context->type != PJ_LIST)
        return pyerr(e, "TypeError", "unsupported operand type(s) for +: '%s' and 'list'",
                     pj_type_name(context));
    if (v->tools && pj_truthy(v->tools)) {
        if (context->n) context = attach_tools(e, context, v->tools);
        else messages = attach_tools(e, messages, v->tools);
    }

    pj *merged;
    if (merge_tool_messages(e, messages, &merged) < 0) return -1;
    pj *all = concat(e, context, merged);
    if (sort_tool_results(e, all) < 0) return -1;
    messages = slice_from(e, all, context->n);
    if (context->n) {
        if (merge_tool_messages(e, context, &context) < 0) return -1;
        if (sort_tool_results(e, context) < 0) return -1;
    }
    pj *full = concat(e, context, messages);

    if (v->add_default_bos_token && context->n == 0) pjb_puts(b, DSV4_BOS_TOKEN);

    int drop = v->drop_thinking;
    for (size_t i = 0; i < full->n; i++)
        if (pj_truthy(pj_get(full->items[i], "tools"))) drop = 0;

    long num_to_render, context_len;
    if (v->thinking && drop) {
        full = drop_thinking_messages(e, full);
        num_to_render = (long)full->n - (long)drop_thinking_messages(e, context)->n;
        context_len = (long)full->n - num_to_render;
    } else {
        num_to_render = (long)messages->n;
        context_len = (long)context->n;
    }
    render_opts ro = {v->thinking, drop, v->effort};
    long last_user = last_user_index(full);
    for (long i = 0; i < num_to_render; i++) {
        if (render_message(e, b, full, (size_t)(i + context_len), last_user, &ro) < 0) return -1;
    }
    return 0;
}

int chat_encode_values(pj_arena *a, pj *messages, pj *context, const chat_values *v, char **prompt,
                       size_t *prompt_len, char **err) {
    enc e = {a, {0}};
    pjbuf b;
    pjb_init(&b);
    pjb_init(&e.err);
    *prompt = NULL;
    *err = NULL;
    if (encode(&e, messages, context, v, &b) < 0) {
        pjb_free(&b);
        pjb_putn(&e.err, "", 0);
        *err = pjb_steal(&e.err);
        return -1;
    }
    pjb_putn(&b, "", 0);
    if (prompt_len) *prompt_len = b.len;
    *prompt = pjb_steal(&b);
    return 0;
}



int dsv4_chat_encode(const char *messages_json, const dsv4_chat_opts *o, char **prompt, char *err,
                     size_t errlen) {
    dsv4_chat_opts def;
    if (!o) { dsv4_chat_opts_default(&def); o = &def; }
    *prompt = NULL;
    pj_arena *a = pj_arena_new();
    int rc = -1;
    chat_values v = {o->thinking, o->drop_thinking, o->add_default_bos_token, NULL, NULL};
    pj *messages = pj_parse(a, messages_json, strlen(messages_json), err, errlen), *context = NULL;
    if (!messages) goto done;
    if (o->context_json && !(context = pj_parse(a, o->context_json, strlen(o->context_json), err, errlen)))
        goto done;
    if (o->tools_json && !(v.tools = pj_parse(a, o->tools_json, strlen(o->tools_json), err, errlen)))
        goto done;
    const char *effort = o->reasoning_effort;
    if (!effort && o->reasoning_effort_max) effort = "max";
    if (effort) v.effort = pj_new_cstr(a, effort);
    char *msg;
    rc = chat_encode_values(a, messages, context, &v, prompt, NULL, &msg);
    if (rc < 0) {
        /* cut at a character boundary */
        size_t n = strlen(msg);
        if (errlen && n >= errlen) {
            n = errlen - 1;
            while (n && ((unsigned char)msg[n] & 0xC0) == 0x80) n--;
        }
        if (errlen) { memcpy(err, msg, n); err[n] = 0; }
        free(msg);
    }
done:
    pj_arena_free(a);
    return rc;
}
