/*
 * dsml.c - parsing DeepSeek-V4 model output: reasoning, content and DSML
 * tool calls, as parse_message_from_completion_text() of the official
 * encoding_dsv4.py does, in full and incrementally.
 *
 * The output grammar (as the official parser reads it):
 *
 *   [reasoning "</think>"]  content
 *   ( EOS | "\n\n<｜DSML｜tool_calls" ">\n"
 *          ( "<｜DSML｜invoke" ' name="N">\n' [ "\n" ]
 *              ( "<｜DSML｜parameter" ' name="K" string="true|false">V<'
 *                "/｜DSML｜parameter" ">\n" )*
 *            "</｜DSML｜invoke" ">\n" )*
 *          "</｜DSML｜tool_calls>" [EOS] )
 *
 * The full parser mirrors the Python step by step: _read_until_stop()
 * (earliest of several stop strings), the two regular expressions (written
 * out by hand, with Python's lazy matching, `$` also matching before a
 * final "\n", and Unicode `\s`), the same error classes and messages, and
 * the same leniency (truncated blocks the Python accepts are accepted).
 * Arguments are built as the Python builds them: '{' + '"k": v' joined by
 * ", " + '}', string="true" values as json.dumps strings, string="false"
 * values pasted raw (so they may be invalid JSON, as in Python).
 *
 * The stream parser runs the same steps over a growing buffer.  Each step
 * waits for its stop string; the text of streaming fields (reasoning,
 * content, parameter values) is released up to the longest suffix that
 * could still begin a marker.  It declares the output dead as soon as an
 * error is certain (then emits nothing more), and at finish runs the full
 * parser over the whole text, which decides success or the ERROR event;
 * it also completes the truncated forms the full parser accepts.
 */
#include "dsv4_chat.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "text/chat_internal.h"
#include "text/pyjson.h"
#include "util/util.h"

#define THINK_START "<think>"
#define THINK_END "</think>"
#define TC_START "\n\n<" DSV4_DSML_TOKEN "tool_calls"
#define TC_END "</" DSV4_DSML_TOKEN "tool_calls>"
#define INVOKE_OPEN "<" DSV4_DSML_TOKEN "invoke"
#define INVOKE_CLOSE "</" DSV4_DSML_TOKEN "invoke"
#define PARAM_OPEN "<" DSV4_DSML_TOKEN "parameter"
#define PARAM_STOP "/" DSV4_DSML_TOKEN "parameter"

/* The special tokens content and reasoning must not contain, in the order
 * the Python checks them. */
static const char *const SPECIAL[] = {DSV4_BOS_TOKEN, DSV4_EOS_TOKEN, THINK_START, THINK_END,
                                      DSV4_DSML_TOKEN};
#define N_SPECIAL 5

/* ----------------------------------------------------------- text helpers */

static const char *find(const char *s, size_t n, size_t from, const char *pat) {
    size_t pl = strlen(pat);
    if (from > n || n - from < pl) return NULL;
    return memmem(s + from, n - from, pat, pl);
}

/* _read_until_stop: the earliest stop at or after from.  Returns the stop's
 * index in stops (the first listed wins a tie) and its position, or -1 with
 * *at = n when none occurs. */
static int read_until(const char *s, size_t n, size_t from, const char *const *stops, int nstops,
                      size_t *at) {
    int which = -1;
    *at = n;
    for (int k = 0; k < nstops; k++) {
        const char *p = find(s, n, from, stops[k]);
        if (p && (size_t)(p - s) < *at) { *at = (size_t)(p - s); which = k; }
    }
    return which;
}

static int span_is(const char *s, size_t n, const char *lit) {
    return n == strlen(lit) && !memcmp(s, lit, n);
}

static int starts_with(const char *s, size_t n, const char *lit) {
    size_t l = strlen(lit);
    return n >= l && !memcmp(s, lit, l);
}

/* Length of the Unicode whitespace character (Python's str.isspace) that
 * starts at s, or 0. */
static size_t py_space_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    if (c == ' ' || (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x1F)) return 1;
    if (n >= 2 && c == 0xC2 && (s[1] == 0x85 || s[1] == 0xA0)) return 2;
    if (n >= 3 && c == 0xE1 && s[1] == 0x9A && s[2] == 0x80) return 3;            /* U+1680 */
    if (n >= 3 && c == 0xE2 && s[1] == 0x80 &&
        ((s[2] >= 0x80 && s[2] <= 0x8A) || s[2] == 0xA8 || s[2] == 0xA9 || s[2] == 0xAF))
        return 3;                                                                /* U+2000-200A, 2028, 2029, 202F */
    if (n >= 3 && c == 0xE2 && s[1] == 0x81 && s[2] == 0x9F) return 3;            /* U+205F */
    if (n >= 3 && c == 0xE3 && s[1] == 0x80 && s[2] == 0x80) return 3;            /* U+3000 */
    return 0;
}

/* re.findall(r'^\s*name="(.*?)">\n$', hdr, flags=re.DOTALL) with exactly
 * one match: the tool name. */
static int match_invoke_name(const char *h, size_t n, size_t *name_off, size_t *name_len) {
    size_t i = 0, k;
    while (i < n && (k = py_space_len((const unsigned char *)h + i, n - i))) i += k;
    if (!starts_with(h + i, n - i, "name=\"")) return 0;
    size_t g = i + 6;
    /* The lazy group ends at the first '">\n' after which $ matches: the
     * one before a final "\n", else the one at the very end. */
    if (n >= g + 4 && !memcmp(h + n - 4, "\">\n\n", 4)) { *name_off = g; *name_len = n - 4 - g; return 1; }
    if (n >= g + 3 && !memcmp(h + n - 3, "\">\n", 3)) { *name_off = g; *name_len = n - 3 - g; return 1; }
    return 0;
}

/* Where the value of a parameter ends: param content matches (.*?)<$ at its
 * end.  Returns the end offset or -1. */
static long param_value_end(const char *p, size_t n) {
    if (n >= 2 && p[n - 2] == '<' && p[n - 1] == '\n') return (long)n - 2;
    if (n >= 1 && p[n - 1] == '<') return (long)n - 1;
    return -1;
}

/* The earliest '" string="true">' or '" string="false">' at or after from
 * (the end of the lazy name group).  Returns its offset or -1; *is_str and
 * *v0 (value start) describe it. */
static long find_param_attr(const char *p, size_t n, size_t from, int *is_str, size_t *v0) {
    static const char T[] = "\" string=\"true\">", F[] = "\" string=\"false\">";
    const char *t = find(p, n, from, T), *f = find(p, n, from, F);
    if (!t && !f) return -1;
    if (t && (!f || t < f)) { *is_str = 1; *v0 = (size_t)(t - p) + sizeof T - 1; return t - p; }
    *is_str = 0;
    *v0 = (size_t)(f - p) + sizeof F - 1;
    return f - p;
}

/* re.findall(r'^ name="(.*?)" string="(true|false)">(.*?)<$', pc, DOTALL). */
static int match_param(const char *p, size_t n, size_t *name_len, int *is_str, size_t *v0,
                       size_t *v_len) {
    if (!starts_with(p, n, " name=\"")) return 0;
    long vend = param_value_end(p, n);
    long at = find_param_attr(p, n, 7, is_str, v0);
    if (vend < 0 || at < 0 || (long)*v0 > vend) return 0;
    *name_len = (size_t)at - 7;
    *v_len = (size_t)vend - *v0;
    return 1;
}

/* Append '"key": value' (the Python _decode_value) to an arguments string. */
static void args_put_key(pjbuf *args, int first, const char *k, size_t kl, int is_str) {
    if (!first) pjb_puts(args, ", ");
    pj_dumps_str(args, k, kl, 0);
    pjb_puts(args, ": ");
    if (is_str) pjb_putc(args, '"');
}

/* The body of a string="true" value: json.dumps of the value without its
 * quotes.  Works on any split of the value, byte by byte. */
static void args_put_escaped(pjbuf *args, const char *v, size_t n) {
    pjbuf t;
    pjb_init(&t);
    pj_dumps_str(&t, v, n, 0);
    pjb_putn(args, t.p + 1, t.len - 2);
    pjb_free(&t);
}

/* ------------------------------------------------------------ full parser */

typedef struct {
    char *name;
    size_t name_len;
    pjbuf args;
} parsed_call;

typedef struct {
    const char *content, *reasoning;
    size_t content_len, reasoning_len;
    parsed_call *calls;
    size_t ncalls, cap;
    const char *etype;   /* NULL on success */
    pjbuf emsg;
} parsed;

static int fail(parsed *r, const char *type, const char *msg, const char *quoted, size_t qlen,
                const char *tail) {
    r->etype = type;
    pjb_puts(&r->emsg, msg);
    if (quoted) pjb_putn(&r->emsg, quoted, qlen);
    if (tail) pjb_puts(&r->emsg, tail);
    return -1;
}

static void parsed_free(parsed *r) {
    for (size_t i = 0; i < r->ncalls; i++) {
        free(r->calls[i].name);
        pjb_free(&r->calls[i].args);
    }
    free(r->calls);
    pjb_free(&r->emsg);
}

typedef struct { size_t off, len; } name_span;

/* parse_tool_calls(): from just after "\n\n<｜DSML｜tool_calls". */
static int parse_tool_calls(const char *s, size_t n, size_t *idx, parsed *r) {
    static const char *const top[] = {INVOKE_OPEN, TC_END};
    static const char *const inner[] = {PARAM_OPEN, INVOKE_CLOSE};
    static const char *const pstop[] = {PARAM_STOP};
    size_t i = *idx, at;
    name_span *names = NULL;
    size_t nnames = 0, names_cap = 0;
    int rc = 0;
    while (i < n) {
        int stop = read_until(s, n, i, top, 2, &at);
        if (!span_is(s + i, at - i, ">\n")) {
            rc = fail(r, "ValueError", "Tool call format error: expected '>\\n' but got '", s + i, at - i, "'");
            break;
        }
        if (stop == 1) { i = at + strlen(TC_END); break; }
        if (stop < 0) { rc = fail(r, "ValueError", "Missing special token in tool calls", NULL, 0, NULL); break; }
        i = at + strlen(INVOKE_OPEN);
        stop = read_until(s, n, i, inner, 2, &at);
        size_t name_off, name_len;
        if (!match_invoke_name(s + i, at - i, &name_off, &name_len)) {
            rc = fail(r, "ValueError", "Tool name format error: '", s + i, at - i, "'");
            break;
        }
        const char *name = s + i + name_off;
        i = at + (stop >= 0 ? strlen(inner[stop]) : 0);
        pjbuf args;
        pjb_init(&args);
        pjb_putc(&args, '{');
        nnames = 0;
        while (stop == 0 && rc == 0) {
            read_until(s, n, i, pstop, 1, &at);
            size_t kl, v0, vl;
            int is_str;
            if (!match_param(s + i, at - i, &kl, &is_str, &v0, &vl)) {
                rc = fail(r, "ValueError", "Parameter format error: '", s + i, at - i, "'");
                break;
            }
            const char *key = s + i + 7;
            for (size_t k = 0; k < nnames; k++)
                if (names[k].len == kl && !memcmp(s + names[k].off, key, kl)) {
                    rc = fail(r, "ValueError", "Duplicate parameter name: '", key, kl, "'");
                    break;
                }
            if (rc) break;
            if (nnames == names_cap) {
                names_cap = names_cap ? names_cap * 2 : 8;
                names = xrealloc(names, names_cap * sizeof *names);
            }
            names[nnames++] = (name_span){(size_t)(key - s), kl};
            args_put_key(&args, nnames == 1, key, kl, is_str);
            if (is_str) { args_put_escaped(&args, s + i + v0, vl); pjb_putc(&args, '"'); }
            else pjb_putn(&args, s + i + v0, vl);
            i = at + (at < n ? strlen(PARAM_STOP) : 0);
            stop = read_until(s, n, i, inner, 2, &at);
            if (!span_is(s + i, at - i, ">\n")) {
                rc = fail(r, "ValueError", "Parameter format error: expected '>\\n' but got '", s + i, at - i, "'");
                break;
            }
            i = at + (stop >= 0 ? strlen(inner[stop]) : 0);
        }
        if (rc) { pjb_free(&args); break; }
        pjb_putc(&args, '}');
        if (r->ncalls == r->cap) {
            r->cap = r->cap ? r->cap * 2 : 4;
            r->calls = xrealloc(r->calls, r->cap * sizeof *r->calls);
        }
        parsed_call *c = &r->calls[r->ncalls++];
        c->name = xmalloc(name_len + 1);
        memcpy(c->name, name, name_len);
        c->name[name_len] = 0;
        c->name_len = name_len;
        c->args = args;
    }
    free(names);
    *idx = i;
    return rc;
}

/* parse_message_from_completion_text() */
static int parse_full(const char *s, size_t n, int thinking, parsed *r) {
    static const char *const reason_stops[] = {THINK_END, TC_START};
    static const char *const content_stops[] = {DSV4_EOS_TOKEN, TC_START};
    static const char *const eos_stop[] = {DSV4_EOS_TOKEN};
    memset(r, 0, sizeof *r);
    r->content = r->reasoning = s;
    size_t i = 0, at;
    if (thinking) {
        int stop = read_until(s, n, i, reason_stops, 2, &at);
        r->reasoning = s;
        r->reasoning_len = at;
        if (stop != 0)
            return fail(r, "AssertionError", "Invalid thinking format: missing </think>", NULL, 0, NULL);
        i = at + strlen(THINK_END);
    }
    int stop = read_until(s, n, i, content_stops, 2, &at);
    r->content = s + i;
    r->content_len = at - i;
    if (stop == 1) {
        i = at + strlen(TC_START);
        if (parse_tool_calls(s, n, &i, r) < 0) return -1;
        stop = read_until(s, n, i, eos_stop, 1, &at);
        if (at != i)
            return fail(r, "AssertionError", "Unexpected content after tool calls", NULL, 0, NULL);
        i = at + (stop == 0 ? strlen(DSV4_EOS_TOKEN) : 0);
    } else if (stop != 0) {
        return fail(r, "AssertionError", "Invalid format: missing EOS token", NULL, 0, NULL);
    } else {
        i = at + strlen(DSV4_EOS_TOKEN);
    }
    if (i != n) return fail(r, "AssertionError", "Unexpected content at end", NULL, 0, NULL);
    for (int k = 0; k < N_SPECIAL; k++)
        if (find(r->content, r->content_len, 0, SPECIAL[k]) ||
            find(r->reasoning, r->reasoning_len, 0, SPECIAL[k]))
            return fail(r, "AssertionError", "Unexpected special token '", SPECIAL[k], strlen(SPECIAL[k]),
                        "' in content");
    return 0;
}

static char *result_json(const parsed *r) {
    pjbuf b;
    pjb_init(&b);
    pjb_puts(&b, "{\"role\": \"assistant\", \"content\": ");
    pj_dumps_str(&b, r->content, r->content_len, 0);
    pjb_puts(&b, ", \"reasoning_content\": ");
    pj_dumps_str(&b, r->reasoning, r->reasoning_len, 0);
    pjb_puts(&b, ", \"tool_calls\": [");
    for (size_t i = 0; i < r->ncalls; i++) {
        if (i) pjb_puts(&b, ", ");
        pjb_puts(&b, "{\"type\": \"function\", \"function\": {\"name\": ");
        pj_dumps_str(&b, r->calls[i].name, r->calls[i].name_len, 0);
        pjb_puts(&b, ", \"arguments\": ");
        pj_dumps_str(&b, r->calls[i].args.p, r->calls[i].args.len, 0);
        pjb_puts(&b, "}}");
    }
    pjb_puts(&b, "]}");
    return pjb_steal(&b);
}

int dsv4_dsml_parse(const char *text, size_t len, int thinking, char **out, char *err_type,
                    size_t typelen, char *err, size_t errlen) {
    parsed r;
    int rc = parse_full(text, len, thinking, &r);
    *out = NULL;
    if (rc == 0) {
        *out = result_json(&r);
    } else {
        if (err_type && typelen) snprintf(err_type, typelen, "%s", r.etype);
        errf(err, errlen, "%s", r.emsg.p ? r.emsg.p : "");
    }
    parsed_free(&r);
    return rc;
}

char *dsv4_dsml_parse_json(const char *text, size_t len, int thinking) {
    parsed r;
    pjbuf b;
    pjb_init(&b);
    if (parse_full(text, len, thinking, &r) == 0) {
        char *res = result_json(&r);
        pjb_puts(&b, "{\"result\": ");
        pjb_puts(&b, res);
        pjb_putc(&b, '}');
        free(res);
    } else {
        pjb_puts(&b, "{\"error\": {\"type\": ");
        pj_dumps_str(&b, r.etype, strlen(r.etype), 0);
        pjb_puts(&b, ", \"message\": ");
        pj_dumps_str(&b, r.emsg.p ? r.emsg.p : "", r.emsg.len, 0);
        pjb_puts(&b, "}}");
    }
    parsed_free(&r);
    return pjb_steal(&b);
}

/* ---------------------------------------------------------- stream parser */

enum {
    ST_REASON,      /* reasoning, until </think> */
    ST_CONTENT,     /* content, until EOS or the tool_calls block */
    ST_TC,          /* in the block: ">\n" then an invoke or the block end */
    ST_HDR,         /* invoke header: ' name="N">\n' */
    ST_PARAM,       /* parameter attributes: ' name="K" string="..">' */
    ST_VALUE,       /* parameter value, until "</｜DSML｜parameter" */
    ST_PARAM_AFTER, /* ">\n" then the next parameter or the invoke end */
    ST_AFTER_TC,    /* after the block: only an EOS may follow */
    ST_DONE         /* after the final EOS: nothing may follow */
};

struct dsv4_dsml_stream {
    int thinking;
    dsv4_dsml_cb cb;
    void *user;
    pjbuf buf;          /* all text so far */
    int state, dead, finished;
    size_t pos;         /* start of the current step (Python's index) */
    size_t emitted;     /* streamed text released up to here */
    size_t scan;        /* no marker of this step starts before here */
    int ncalls;         /* tool calls started */
    /* current parameter */
    int is_str;
    size_t v0;
    /* parameter names of the current call (offsets into buf) */
    name_span *names;
    size_t nnames, names_cap;
    pjbuf tmp;
    char *result;
};

dsv4_dsml_stream *dsv4_dsml_stream_new(int thinking, dsv4_dsml_cb cb, void *user) {
    dsv4_dsml_stream *s = xcalloc(1, sizeof *s);
    s->thinking = thinking;
    s->cb = cb;
    s->user = user;
    s->state = thinking ? ST_REASON : ST_CONTENT;
    pjb_init(&s->buf);
    pjb_init(&s->tmp);
    pjb_putn(&s->buf, "", 0);
    return s;
}

void dsv4_dsml_stream_free(dsv4_dsml_stream *s) {
    if (!s) return;
    pjb_free(&s->buf);
    pjb_free(&s->tmp);
    free(s->names);
    free(s->result);
    free(s);
}

const char *dsv4_dsml_stream_result(const dsv4_dsml_stream *s) { return s->result; }

static void emit(dsv4_dsml_stream *s, dsv4_dsml_event_kind kind, const char *name, size_t name_len,
                 const char *text, size_t len) {
    if (!s->cb) return;
    if ((kind == DSV4_EV_REASONING || kind == DSV4_EV_CONTENT || kind == DSV4_EV_TOOL_ARGS) && !len)
        return;
    dsv4_dsml_event ev = {kind, s->ncalls, name, name_len, text, len};
    s->cb(s->user, &ev);
}

static void emit_args(dsv4_dsml_stream *s) {
    emit(s, DSV4_EV_TOOL_ARGS, NULL, 0, s->tmp.p, s->tmp.len);
    s->tmp.len = 0;
}

static void go(dsv4_dsml_stream *s, int state, size_t pos) {
    s->state = state;
    s->pos = s->scan = s->emitted = pos;
}

/* Length of the longest proper suffix of [from, n) that is a prefix of one
 * of the markers: text that must be held back. */
static size_t hold_len(const char *b, size_t n, size_t from, const char *const *m, int nm) {
    size_t best = 0;
    for (int k = 0; k < nm; k++) {
        size_t ml = strlen(m[k]);
        for (size_t l = ml - 1; l > best; l--)
            if (l <= n - from && !memcmp(b + n - l, m[k], l)) { best = l; break; }
    }
    return best;
}

/* Moves end back to the start of a UTF-8 character cut by it, so that a
 * delta never ends inside a character (the rest comes with the next). */
static size_t utf8_cut(const char *b, size_t from, size_t end) {
    size_t p = end;
    while (p > from && end - p < 4 && ((unsigned char)b[p - 1] & 0xC0) == 0x80) p--;
    if (p == from || end - p >= 4) return end;
    unsigned char c = (unsigned char)b[p - 1];
    size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
    return (p - 1) + need > end ? p - 1 : end;
}

static size_t max_len(const char *const *m, int nm) {
    size_t best = 0;
    for (int k = 0; k < nm; k++) if (strlen(m[k]) > best) best = strlen(m[k]);
    return best;
}

/* After an unsuccessful search over [scan, n): markers can only start in
 * the last (longest - 1) bytes. */
static void advance_scan(dsv4_dsml_stream *s, size_t longest) {
    size_t n = s->buf.len;
    size_t from = n >= longest ? n - longest + 1 : 0;
    if (from > s->scan) s->scan = from;
}

/* Reasoning or content: text until the first stop; a special token inside
 * it is an error.  Returns 1 when the step finished. */
static int step_text(dsv4_dsml_stream *s) {
    static const char *const reason_m[] = {THINK_END, TC_START, DSV4_BOS_TOKEN, DSV4_EOS_TOKEN,
                                           THINK_START, DSV4_DSML_TOKEN};
    static const char *const content_m[] = {DSV4_EOS_TOKEN, TC_START, DSV4_BOS_TOKEN, THINK_START,
                                            THINK_END, DSV4_DSML_TOKEN};
    int reason = s->state == ST_REASON;
    const char *const *m = reason ? reason_m : content_m;
    dsv4_dsml_event_kind kind = reason ? DSV4_EV_REASONING : DSV4_EV_CONTENT;
    const char *b = s->buf.p;
    size_t n = s->buf.len, at;
    int which = read_until(b, n, s->scan, m, 6, &at);
    if (which < 0 || which >= 2) {
        /* Markers 0 and 1 are the stops.  A special token is inside the
         * text (an error) unless a stop that is still arriving could start
         * before the token ends. */
        size_t stop_from = n - hold_len(b, n, s->pos, m, 2);
        if (which >= 2 && at + strlen(m[which]) <= stop_from) { s->dead = 1; return 0; }
        size_t end = n - hold_len(b, n, s->pos, m, 6);
        if (which >= 2 && at < end) end = at;
        end = utf8_cut(b, s->emitted, end);
        if (end > s->emitted) { emit(s, kind, NULL, 0, b + s->emitted, end - s->emitted); s->emitted = end; }
        if (which >= 2) s->scan = at < stop_from ? at : stop_from;
        else advance_scan(s, max_len(m, 6));
        return 0;
    }
    emit(s, kind, NULL, 0, b + s->emitted, at - s->emitted);
    if (reason) {
        if (which == 1) { s->dead = 1; return 0; }   /* tool calls before </think> */
        go(s, ST_CONTENT, at + strlen(THINK_END));
    } else if (which == 0) {
        go(s, ST_DONE, at + strlen(DSV4_EOS_TOKEN));
    } else {
        go(s, ST_TC, at + strlen(TC_START));
    }
    return 1;
}

/* Text that must be exactly ">\n" before one of two stops.  Returns the
 * stop found (0/1), or -1 while waiting (or dead). */
static int step_gt_nl(dsv4_dsml_stream *s, const char *const *stops, size_t *at) {
    const char *b = s->buf.p;
    size_t n = s->buf.len, avail = n - s->pos;
    size_t k = avail < 2 ? avail : 2;
    if (memcmp(b + s->pos, ">\n", k)) { s->dead = 1; return -1; }
    int which = read_until(b, n, s->pos, stops, 2, at);
    if (which >= 0) {
        if (*at != s->pos + 2) s->dead = 1;
        return s->dead ? -1 : which;
    }
    /* A stop would have to start right after ">\n". */
    if (avail > 2) {
        int may = 0;
        for (int j = 0; j < 2; j++) {
            size_t sl = strlen(stops[j]), l = avail - 2 < sl ? avail - 2 : sl;
            if (!memcmp(b + s->pos + 2, stops[j], l)) may = 1;
        }
        if (!may) s->dead = 1;
    }
    return -1;
}

static void start_call(dsv4_dsml_stream *s, const char *name, size_t name_len) {
    char *z = xmalloc(name_len + 1);
    memcpy(z, name, name_len);
    z[name_len] = 0;
    emit(s, DSV4_EV_TOOL_START, z, name_len, NULL, 0);
    free(z);
    pjb_putc(&s->tmp, '{');
    emit_args(s);
    s->nnames = 0;
}

static void end_call(dsv4_dsml_stream *s) {
    pjb_putc(&s->tmp, '}');
    emit_args(s);
    emit(s, DSV4_EV_TOOL_END, NULL, 0, NULL, 0);
    s->ncalls++;
}

static int step_header(dsv4_dsml_stream *s) {
    static const char *const stops[] = {PARAM_OPEN, INVOKE_CLOSE};
    const char *b = s->buf.p;
    size_t at, off, len;
    int which = read_until(b, s->buf.len, s->scan, stops, 2, &at);
    if (which < 0) { advance_scan(s, max_len(stops, 2)); return 0; }
    if (!match_invoke_name(b + s->pos, at - s->pos, &off, &len)) { s->dead = 1; return 0; }
    start_call(s, b + s->pos + off, len);
    if (which == 0) {
        go(s, ST_PARAM, at + strlen(PARAM_OPEN));
    } else {
        end_call(s);
        go(s, ST_TC, at + strlen(INVOKE_CLOSE));
    }
    return 1;
}

static int step_param(dsv4_dsml_stream *s) {
    const char *b = s->buf.p;
    size_t n = s->buf.len, avail = n - s->pos, v0;
    size_t k = avail < 7 ? avail : 7;
    int is_str;
    if (memcmp(b + s->pos, " name=\"", k)) { s->dead = 1; return 0; }
    const char *stop = find(b, n, s->pos, PARAM_STOP);
    long at = avail >= 7 ? find_param_attr(b + s->pos, avail, 7, &is_str, &v0) : -1;
    if (at >= 0 && stop && s->pos + v0 > (size_t)(stop - b)) at = -1;   /* attributes after the stop */
    if (at < 0) {
        if (stop) s->dead = 1;   /* the parameter ended without attributes */
        return 0;
    }
    const char *key = b + s->pos + 7;
    size_t kl = (size_t)at - 7;
    for (size_t j = 0; j < s->nnames; j++)
        if (s->names[j].len == kl && !memcmp(b + s->names[j].off, key, kl)) { s->dead = 1; return 0; }
    if (s->nnames == s->names_cap) {
        s->names_cap = s->names_cap ? s->names_cap * 2 : 8;
        s->names = xrealloc(s->names, s->names_cap * sizeof *s->names);
    }
    s->names[s->nnames++] = (name_span){(size_t)(key - b), kl};
    args_put_key(&s->tmp, s->nnames == 1, key, kl, is_str);
    emit_args(s);
    s->is_str = is_str;
    size_t vstart = s->pos + v0;
    go(s, ST_VALUE, s->pos);
    s->v0 = s->emitted = s->scan = vstart;
    return 1;
}

static void emit_value(dsv4_dsml_stream *s, size_t end) {
    if (end <= s->emitted) return;
    const char *v = s->buf.p + s->emitted;
    if (s->is_str) args_put_escaped(&s->tmp, v, end - s->emitted);
    else pjb_putn(&s->tmp, v, end - s->emitted);
    emit_args(s);
    s->emitted = end;
}

static int step_value(dsv4_dsml_stream *s) {
    static const char *const ends[] = {"<\n" PARAM_STOP, "<" PARAM_STOP};
    static const char *const stop[] = {PARAM_STOP};
    const char *b = s->buf.p;
    size_t n = s->buf.len, at;
    if (read_until(b, n, s->scan, stop, 1, &at) < 0) {
        emit_value(s, utf8_cut(b, s->emitted, n - hold_len(b, n, s->v0, ends, 2)));
        advance_scan(s, strlen(PARAM_STOP));
        return 0;
    }
    long vend = param_value_end(b + s->pos, at - s->pos);
    if (vend < 0 || s->pos + (size_t)vend < s->v0) { s->dead = 1; return 0; }
    emit_value(s, s->pos + (size_t)vend);
    if (s->is_str) { pjb_putc(&s->tmp, '"'); emit_args(s); }
    go(s, ST_PARAM_AFTER, at + strlen(PARAM_STOP));
    return 1;
}

/* Run the steps while they make progress. */
static void advance(dsv4_dsml_stream *s) {
    static const char *const tc_stops[] = {INVOKE_OPEN, TC_END};
    static const char *const param_stops[] = {PARAM_OPEN, INVOKE_CLOSE};
    int progress = 1;
    while (progress && !s->dead) {
        size_t at, n = s->buf.len;
        int which;
        progress = 0;
        switch (s->state) {
        case ST_REASON:
        case ST_CONTENT:
            progress = step_text(s);
            break;
        case ST_TC:
            if ((which = step_gt_nl(s, tc_stops, &at)) < 0) break;
            if (which == 0) go(s, ST_HDR, at + strlen(INVOKE_OPEN));
            else go(s, ST_AFTER_TC, at + strlen(TC_END));
            progress = 1;
            break;
        case ST_HDR:
            progress = step_header(s);
            break;
        case ST_PARAM:
            progress = step_param(s);
            break;
        case ST_VALUE:
            progress = step_value(s);
            break;
        case ST_PARAM_AFTER:
            if ((which = step_gt_nl(s, param_stops, &at)) < 0) break;
            if (which == 0) {
                go(s, ST_PARAM, at + strlen(PARAM_OPEN));
            } else {
                end_call(s);
                go(s, ST_TC, at + strlen(INVOKE_CLOSE));
            }
            progress = 1;
            break;
        case ST_AFTER_TC: {
            size_t avail = n - s->pos, l = strlen(DSV4_EOS_TOKEN);
            if (memcmp(s->buf.p + s->pos, DSV4_EOS_TOKEN, avail < l ? avail : l)) s->dead = 1;
            else if (avail >= l) { go(s, ST_DONE, s->pos + l); progress = 1; }
            break;
        }
        case ST_DONE:
            if (n > s->pos) s->dead = 1;
            break;
        }
    }
}

void dsv4_dsml_stream_feed(dsv4_dsml_stream *s, const char *text, size_t len) {
    if (s->finished || !len) return;
    pjb_putn(&s->buf, text, len);
    advance(s);
}

int dsv4_dsml_stream_finish(dsv4_dsml_stream *s) {
    if (s->finished) return s->result ? s->ncalls : -1;
    s->finished = 1;
    parsed r;
    int rc = parse_full(s->buf.p, s->buf.len, s->thinking, &r);
    if (rc < 0) {
        if (s->cb) {
            dsv4_dsml_event ev = {DSV4_EV_ERROR, s->ncalls, r.etype, strlen(r.etype),
                                  r.emsg.p ? r.emsg.p : "", r.emsg.len};
            s->cb(s->user, &ev);
        }
        parsed_free(&r);
        return -1;
    }
    /* Truncated forms the parser accepts: an invoke header or a parameter
     * list that runs to the end of the text. */
    size_t off, len;
    if (!s->dead && s->state == ST_HDR &&
        match_invoke_name(s->buf.p + s->pos, s->buf.len - s->pos, &off, &len)) {
        start_call(s, s->buf.p + s->pos + off, len);
        end_call(s);
    } else if (!s->dead && s->state == ST_PARAM_AFTER &&
               span_is(s->buf.p + s->pos, s->buf.len - s->pos, ">\n")) {
        end_call(s);
    }
    s->result = result_json(&r);
    rc = (int)r.ncalls;
    parsed_free(&r);
    return rc;
}
