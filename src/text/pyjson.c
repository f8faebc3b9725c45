/*
 * pyjson.c - JSON values with Python semantics (see pyjson.h).
 *
 * The parser follows CPython's json C scanner: the number grammar
 * -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)? with a fraction or exponent
 * making a float (a partial "1." or "1e" stops before the dot or e), the
 * NaN/Infinity/-Infinity literals, raw control characters rejected in
 * strings, \u escapes combined into surrogate pairs when they pair up and
 * kept as lone surrogates (WTF-8 encoded) when they do not, and the 4300
 * digit limit on integer conversion of Python 3.11.
 *
 * The writers follow json.dumps (encoder.py / _json.c) and the repr() of
 * str, int, float, bool, None, list and dict.
 */
#include "text/pyjson.h"

#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "util/util.h"

/* ---------------------------------------------------------------- buffers */

void pjb_init(pjbuf *b) { b->p = NULL; b->len = b->cap = 0; }
void pjb_free(pjbuf *b) { free(b->p); pjb_init(b); }

static void pjb_reserve(pjbuf *b, size_t extra) {
    if (b->len + extra + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1) cap *= 2;
    b->p = xrealloc(b->p, cap);
    b->cap = cap;
}

void pjb_putn(pjbuf *b, const char *s, size_t n) {
    pjb_reserve(b, n);
    if (n) memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = 0;
}

void pjb_puts(pjbuf *b, const char *s) { pjb_putn(b, s, strlen(s)); }
void pjb_putc(pjbuf *b, char c) { pjb_putn(b, &c, 1); }

void pjb_printf(pjbuf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0) return;
    pjb_reserve(b, (size_t)n);
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

char *pjb_steal(pjbuf *b) {
    pjb_reserve(b, 0);
    char *p = b->p;
    pjb_init(b);
    return p;
}

/* ------------------------------------------------------------------ arena */

/* Nodes and their strings are carved from large blocks; containers grow
 * with realloc'd arrays that the arena also tracks. */
typedef struct arena_block {
    struct arena_block *next;
    size_t used, size;
    max_align_t data[];
} arena_block;

struct pj_arena {
    arena_block *blocks;
    void **arrays;          /* realloc'd item/key arrays to free */
    size_t narrays, arrays_cap;
};

pj_arena *pj_arena_new(void) { return xcalloc(1, sizeof(pj_arena)); }

void pj_arena_free(pj_arena *a) {
    if (!a) return;
    for (arena_block *b = a->blocks; b;) {
        arena_block *next = b->next;
        free(b);
        b = next;
    }
    for (size_t i = 0; i < a->narrays; i++) free(a->arrays[i]);
    free(a->arrays);
    free(a);
}

static void *arena_alloc(pj_arena *a, size_t n) {
    n = (n + sizeof(max_align_t) - 1) / sizeof(max_align_t) * sizeof(max_align_t);
    arena_block *b = a->blocks;
    if (!b || b->size - b->used < n) {
        size_t size = n > 65536 ? n : 65536;
        b = xmalloc(sizeof(arena_block) + size);
        b->used = 0;
        b->size = size;
        b->next = a->blocks;
        a->blocks = b;
    }
    void *p = (char *)b->data + b->used;
    b->used += n;
    return p;
}

/* Arrays of a container: tracked by index so they can be realloc'd. */
static void arena_track(pj_arena *a, void *p) {
    if (a->narrays == a->arrays_cap) {
        a->arrays_cap = a->arrays_cap ? a->arrays_cap * 2 : 64;
        a->arrays = xrealloc(a->arrays, a->arrays_cap * sizeof(void *));
    }
    a->arrays[a->narrays++] = p;
}

static void arena_retrack(pj_arena *a, void *old, void *p) {
    for (size_t i = a->narrays; i-- > 0;)
        if (a->arrays[i] == old) { a->arrays[i] = p; return; }
    arena_track(a, p);
}

pj *pj_new(pj_arena *a, pj_type t) {
    pj *v = arena_alloc(a, sizeof(pj));
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

pj *pj_new_str(pj_arena *a, const char *s, size_t len) {
    pj *v = pj_new(a, PJ_STR);
    v->s = arena_alloc(a, len + 1);
    if (len) memcpy(v->s, s, len);
    v->s[len] = 0;
    v->len = len;
    return v;
}

pj *pj_new_cstr(pj_arena *a, const char *s) { return pj_new_str(a, s, strlen(s)); }

static void container_grow(pj_arena *a, pj *c) {
    if (c->n < c->cap) return;
    size_t cap = c->cap ? c->cap * 2 : 4;
    pj **items = xrealloc(c->items, cap * sizeof(pj *));
    if (c->items) arena_retrack(a, c->items, items); else arena_track(a, items);
    c->items = items;
    if (c->type == PJ_DICT) {
        pj **keys = xrealloc(c->keys, cap * sizeof(pj *));
        if (c->keys) arena_retrack(a, c->keys, keys); else arena_track(a, keys);
        c->keys = keys;
    }
    c->cap = cap;
}

void pj_list_append(pj_arena *a, pj *list, pj *v) {
    container_grow(a, list);
    list->items[list->n++] = v;
}

static long dict_find(const pj *d, const char *key, size_t keylen) {
    for (size_t i = 0; i < d->n; i++)
        if (d->keys[i]->len == keylen && !memcmp(d->keys[i]->s, key, keylen))
            return (long)i;
    return -1;
}

void pj_dict_set(pj_arena *a, pj *d, const char *key, size_t keylen, pj *v) {
    long i = dict_find(d, key, keylen);
    if (i >= 0) { d->items[i] = v; return; }
    container_grow(a, d);
    d->keys[d->n] = pj_new_str(a, key, keylen);
    d->items[d->n++] = v;
}

pj *pj_shallow_copy(pj_arena *a, const pj *v) {
    pj *c = pj_new(a, v->type);
    *c = *v;
    c->items = NULL;
    c->keys = NULL;
    c->n = c->cap = 0;
    for (size_t i = 0; i < v->n; i++) {
        if (v->type == PJ_DICT) pj_dict_set(a, c, v->keys[i]->s, v->keys[i]->len, v->items[i]);
        else pj_list_append(a, c, v->items[i]);
    }
    return c;
}

pj *pj_get(const pj *d, const char *key) {
    if (!d || d->type != PJ_DICT) return NULL;
    long i = dict_find(d, key, strlen(key));
    return i < 0 ? NULL : d->items[i];
}

void pj_dict_del(pj *d, const char *key) {
    if (!d || d->type != PJ_DICT) return;
    long i = dict_find(d, key, strlen(key));
    if (i < 0) return;
    for (size_t j = (size_t)i + 1; j < d->n; j++) {
        d->items[j - 1] = d->items[j];
        d->keys[j - 1] = d->keys[j];
    }
    d->n--;
}

/* -------------------------------------------------------------- semantics */

static int int_is_zero(const pj *v) { return v->len == 1 && v->s[0] == '0'; }

int pj_truthy(const pj *v) {
    if (!v) return 0;
    switch (v->type) {
    case PJ_NULL: return 0;
    case PJ_BOOL: return v->b;
    case PJ_INT: return !int_is_zero(v);
    case PJ_FLOAT: return v->d != 0.0;
    case PJ_STR: return v->len > 0;
    case PJ_LIST: case PJ_DICT: return v->n > 0;
    }
    return 0;
}

int pj_is_str(const pj *v, const char *s) {
    return v && v->type == PJ_STR && v->len == strlen(s) && !memcmp(v->s, s, v->len);
}

const char *pj_type_name(const pj *v) {
    switch (v ? v->type : PJ_NULL) {
    case PJ_NULL: return "NoneType";
    case PJ_BOOL: return "bool";
    case PJ_INT: return "int";
    case PJ_FLOAT: return "float";
    case PJ_STR: return "str";
    case PJ_LIST: return "list";
    case PJ_DICT: return "dict";
    }
    return "object";
}

static int is_number(const pj *v) {
    return v->type == PJ_BOOL || v->type == PJ_INT || v->type == PJ_FLOAT;
}

static double number_value(const pj *v) {
    if (v->type == PJ_BOOL) return v->b;
    if (v->type == PJ_INT) return strtod(v->s, NULL);
    return v->d;
}

int pj_equal(const pj *a, const pj *b) {
    if (!a || !b) return a == b;
    if (is_number(a) && is_number(b)) {
        if (a->type == PJ_INT && b->type == PJ_INT)
            return a->len == b->len && !memcmp(a->s, b->s, a->len);
        if (a->type == PJ_BOOL && b->type == PJ_INT) return pj_equal(b, a);
        if (a->type == PJ_INT && b->type == PJ_BOOL)
            return a->len == 1 && a->s[0] == (b->b ? '1' : '0');
        return number_value(a) == number_value(b);
    }
    if (a->type != b->type) return 0;
    switch (a->type) {
    case PJ_NULL: return 1;
    case PJ_STR: return a->len == b->len && !memcmp(a->s, b->s, a->len);
    case PJ_LIST:
        if (a->n != b->n) return 0;
        for (size_t i = 0; i < a->n; i++)
            if (!pj_equal(a->items[i], b->items[i])) return 0;
        return 1;
    case PJ_DICT:
        if (a->n != b->n) return 0;
        for (size_t i = 0; i < a->n; i++) {
            long j = dict_find(b, a->keys[i]->s, a->keys[i]->len);
            if (j < 0 || !pj_equal(a->items[i], b->items[j])) return 0;
        }
        return 1;
    default: return 0;
    }
}

/* ----------------------------------------------------------------- parser */

typedef struct {
    pj_arena *a;
    const char *s;
    size_t n, i;
    int depth;
    char *err;
    size_t errlen;
    int failed;
} parser;

#define MAX_DEPTH 500

static pj *perr(parser *p, const char *msg, size_t at) {
    if (!p->failed) {
        /* Python reports line/column/char as code points; we report the
         * byte offset, which is enough to find the problem. */
        errf(p->err, p->errlen, "JSONDecodeError: %s: char %zu", msg, at);
        p->failed = 1;
    }
    return NULL;
}

static void skip_ws(parser *p) {
    while (p->i < p->n) {
        char c = p->s[p->i];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->i++;
    }
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(parser *p, size_t at, unsigned *out) {
    if (at + 4 > p->n) return -1;
    unsigned v = 0;
    for (int k = 0; k < 4; k++) {
        int h = hexval(p->s[at + k]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

/* UTF-8 (WTF-8 for lone surrogates) encoding of one code point. */
static void put_cp(pjbuf *b, unsigned cp) {
    char u[4];
    size_t n;
    if (cp < 0x80) { u[0] = (char)cp; n = 1; }
    else if (cp < 0x800) { u[0] = (char)(0xC0 | (cp >> 6)); u[1] = (char)(0x80 | (cp & 0x3F)); n = 2; }
    else if (cp < 0x10000) {
        u[0] = (char)(0xE0 | (cp >> 12)); u[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        u[2] = (char)(0x80 | (cp & 0x3F)); n = 3;
    } else {
        u[0] = (char)(0xF0 | (cp >> 18)); u[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        u[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); u[3] = (char)(0x80 | (cp & 0x3F)); n = 4;
    }
    pjb_putn(b, u, n);
}

static pj *parse_string(parser *p) {
    size_t start = p->i;    /* at the opening quote */
    p->i++;
    pjbuf b;
    pjb_init(&b);
    for (;;) {
        size_t run = p->i;
        while (p->i < p->n && p->s[p->i] != '"' && p->s[p->i] != '\\' &&
               (unsigned char)p->s[p->i] >= 0x20)
            p->i++;
        pjb_putn(&b, p->s + run, p->i - run);
        if (p->i >= p->n) {
            pjb_free(&b);
            return perr(p, "Unterminated string starting at", start);
        }
        char c = p->s[p->i];
        if (c == '"') { p->i++; break; }
        if (c != '\\') {
            pjb_free(&b);
            return perr(p, "Invalid control character at", p->i);
        }
        if (p->i + 1 >= p->n) {
            pjb_free(&b);
            return perr(p, "Unterminated string starting at", start);
        }
        char e = p->s[p->i + 1];
        const char *simple = NULL;
        switch (e) {
        case '"': simple = "\""; break;
        case '\\': simple = "\\"; break;
        case '/': simple = "/"; break;
        case 'b': simple = "\b"; break;
        case 'f': simple = "\f"; break;
        case 'n': simple = "\n"; break;
        case 'r': simple = "\r"; break;
        case 't': simple = "\t"; break;
        default: break;
        }
        if (simple) { pjb_putc(&b, simple[0]); p->i += 2; continue; }
        if (e != 'u') {
            pjb_free(&b);
            return perr(p, "Invalid \\escape", p->i);
        }
        unsigned cp;
        if (read_hex4(p, p->i + 2, &cp) < 0) {
            pjb_free(&b);
            return perr(p, "Invalid \\uXXXX escape", p->i + 1);
        }
        p->i += 6;
        /* A high surrogate followed by an escaped low one is one char. */
        if (cp >= 0xD800 && cp <= 0xDBFF && p->i + 1 < p->n && p->s[p->i] == '\\' &&
            p->s[p->i + 1] == 'u') {
            unsigned lo;
            if (read_hex4(p, p->i + 2, &lo) < 0) {
                pjb_free(&b);
                return perr(p, "Invalid \\uXXXX escape", p->i + 1);
            }
            if (lo >= 0xDC00 && lo <= 0xDFFF) {
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                p->i += 6;
            }
        }
        put_cp(&b, cp);
    }
    pj *v = pj_new_str(p->a, b.p ? b.p : "", b.len);
    pjb_free(&b);
    return v;
}

static int is_digit(char c) { return c >= '0' && c <= '9'; }

static pj *parse_number(parser *p) {
    size_t start = p->i, i = p->i;
    if (i < p->n && p->s[i] == '-') i++;
    if (i < p->n && p->s[i] == '0') i++;
    else if (i < p->n && p->s[i] >= '1' && p->s[i] <= '9')
        while (i < p->n && is_digit(p->s[i])) i++;
    else
        return perr(p, "Expecting value", start);
    int is_float = 0;
    if (i + 1 < p->n && p->s[i] == '.' && is_digit(p->s[i + 1])) {
        i += 2;
        while (i < p->n && is_digit(p->s[i])) i++;
        is_float = 1;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        size_t j = i + 1;
        if (j < p->n && (p->s[j] == '+' || p->s[j] == '-')) j++;
        if (j < p->n && is_digit(p->s[j])) {
            while (j < p->n && is_digit(p->s[j])) j++;
            i = j;
            is_float = 1;
        }
    }
    p->i = i;
    if (is_float) {
        char *tmp = xmalloc(i - start + 1);
        memcpy(tmp, p->s + start, i - start);
        tmp[i - start] = 0;
        pj *v = pj_new(p->a, PJ_FLOAT);
        v->d = strtod(tmp, NULL);   /* overflow gives +-inf, as float() does */
        free(tmp);
        return v;
    }
    /* int(): "-0" is 0; more than 4300 digits is refused (Python 3.11). */
    int neg = p->s[start] == '-';
    size_t d0 = start + (size_t)neg;
    if (i - d0 > 4300)
        return perr(p, "Exceeds the limit (4300 digits) for integer string conversion", start);
    if (i - d0 == 1 && p->s[d0] == '0') neg = 0;
    pj *v = pj_new(p->a, PJ_INT);
    v->len = i - d0 + (size_t)neg;
    v->s = arena_alloc(p->a, v->len + 1);
    if (neg) v->s[0] = '-';
    memcpy(v->s + neg, p->s + d0, i - d0);
    v->s[v->len] = 0;
    return v;
}

static int match_word(parser *p, const char *w) {
    size_t n = strlen(w);
    if (p->i + n <= p->n && !memcmp(p->s + p->i, w, n)) { p->i += n; return 1; }
    return 0;
}

static pj *parse_value(parser *p);

static pj *parse_list(parser *p) {
    pj *v = pj_new(p->a, PJ_LIST);
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == ']') { p->i++; return v; }
    for (;;) {
        skip_ws(p);
        pj *item = parse_value(p);
        if (!item) return NULL;
        pj_list_append(p->a, v, item);
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ']') { p->i++; return v; }
        if (p->i >= p->n || p->s[p->i] != ',')
            return perr(p, "Expecting ',' delimiter", p->i);
        p->i++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == ']')
            return perr(p, "Illegal trailing comma before end of array", p->i);
    }
}

static pj *parse_dict(parser *p) {
    pj *v = pj_new(p->a, PJ_DICT);
    p->i++;
    skip_ws(p);
    if (p->i < p->n && p->s[p->i] == '}') { p->i++; return v; }
    for (;;) {
        if (p->i >= p->n || p->s[p->i] != '"')
            return perr(p, "Expecting property name enclosed in double quotes", p->i);
        pj *key = parse_string(p);
        if (!key) return NULL;
        skip_ws(p);
        if (p->i >= p->n || p->s[p->i] != ':')
            return perr(p, "Expecting ':' delimiter", p->i);
        p->i++;
        skip_ws(p);
        pj *item = parse_value(p);
        if (!item) return NULL;
        pj_dict_set(p->a, v, key->s, key->len, item);
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == '}') { p->i++; return v; }
        if (p->i >= p->n || p->s[p->i] != ',')
            return perr(p, "Expecting ',' delimiter", p->i);
        p->i++;
        skip_ws(p);
        if (p->i < p->n && p->s[p->i] == '}')
            return perr(p, "Illegal trailing comma before end of object", p->i);
    }
}

static pj *parse_value(parser *p) {
    if (p->i >= p->n) return perr(p, "Expecting value", p->i);
    char c = p->s[p->i];
    if (c == '"') return parse_string(p);
    if (c == '[' || c == '{') {
        if (++p->depth > MAX_DEPTH)
            return perr(p, "RecursionError: maximum recursion depth exceeded", p->i);
        pj *v = c == '[' ? parse_list(p) : parse_dict(p);
        p->depth--;
        return v;
    }
    if (match_word(p, "null")) return pj_new(p->a, PJ_NULL);
    if (match_word(p, "true")) { pj *v = pj_new(p->a, PJ_BOOL); v->b = 1; return v; }
    if (match_word(p, "false")) return pj_new(p->a, PJ_BOOL);
    if (match_word(p, "NaN")) { pj *v = pj_new(p->a, PJ_FLOAT); v->d = NAN; return v; }
    if (match_word(p, "Infinity")) { pj *v = pj_new(p->a, PJ_FLOAT); v->d = INFINITY; return v; }
    if (match_word(p, "-Infinity")) { pj *v = pj_new(p->a, PJ_FLOAT); v->d = -INFINITY; return v; }
    return parse_number(p);
}

pj *pj_parse(pj_arena *a, const char *text, size_t len, char *err, size_t errlen) {
    parser p = {a, text, len, 0, 0, err, errlen, 0};
    skip_ws(&p);
    pj *v = parse_value(&p);
    if (!v) return NULL;
    skip_ws(&p);
    if (p.i != p.n) return perr(&p, "Extra data", p.i);
    return v;
}

/* ---------------------------------------------------------------- writers */

/* Decode one UTF-8 sequence (lenient: surrogates allowed, as produced by
 * the parser for lone \uD800 escapes).  Returns its length, or 0 when the
 * byte at s does not start a valid sequence. */
static size_t utf8_decode(const unsigned char *s, size_t n, unsigned *cp) {
    unsigned c = s[0];
    size_t len;
    unsigned v;
    if (c < 0x80) { *cp = c; return 1; }
    if (c >= 0xC2 && c <= 0xDF) { len = 2; v = c & 0x1F; }
    else if (c >= 0xE0 && c <= 0xEF) { len = 3; v = c & 0x0F; }
    else if (c >= 0xF0 && c <= 0xF4) { len = 4; v = c & 0x07; }
    else return 0;
    if (len > n) return 0;
    for (size_t k = 1; k < len; k++) {
        if ((s[k] & 0xC0) != 0x80) return 0;
        v = (v << 6) | (s[k] & 0x3F);
    }
    if ((len == 3 && v < 0x800) || (len == 4 && (v < 0x10000 || v > 0x10FFFF))) return 0;
    *cp = v;
    return len;
}

void pj_dumps_str(pjbuf *b, const char *s, size_t len, int ensure_ascii) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    pjb_putc(b, '"');
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (i < len && u[i] >= 0x20 && u[i] != '"' && u[i] != '\\' &&
               (!ensure_ascii || u[i] < 0x80))
            i++;
        pjb_putn(b, s + run, i - run);
        if (i >= len) break;
        unsigned c = u[i];
        char esc[16];
        switch (c) {
        case '"': pjb_puts(b, "\\\""); i++; continue;
        case '\\': pjb_puts(b, "\\\\"); i++; continue;
        case '\n': pjb_puts(b, "\\n"); i++; continue;
        case '\r': pjb_puts(b, "\\r"); i++; continue;
        case '\t': pjb_puts(b, "\\t"); i++; continue;
        case '\b': pjb_puts(b, "\\b"); i++; continue;
        case '\f': pjb_puts(b, "\\f"); i++; continue;
        default: break;
        }
        unsigned cp;
        size_t n = c < 0x20 ? 1 : utf8_decode(u + i, len - i, &cp);
        if (c < 0x20) cp = c;
        if (!n) { cp = 0xFFFD; n = 1; }   /* not UTF-8: not representable */
        i += n;
        if (cp >= 0x10000) {
            unsigned v = cp - 0x10000, hi = 0xD800 | (v >> 10), lo = 0xDC00 | (v & 0x3FF);
            snprintf(esc, sizeof esc, "\\u%c%c%c%c\\u%c%c%c%c",
                     hex[hi >> 12], hex[(hi >> 8) & 15], hex[(hi >> 4) & 15], hex[hi & 15],
                     hex[lo >> 12], hex[(lo >> 8) & 15], hex[(lo >> 4) & 15], hex[lo & 15]);
        } else {
            snprintf(esc, sizeof esc, "\\u%c%c%c%c",
                     hex[cp >> 12], hex[(cp >> 8) & 15], hex[(cp >> 4) & 15], hex[cp & 15]);
        }
        pjb_puts(b, esc);
    }
    pjb_putc(b, '"');
}

void pj_float_repr(pjbuf *b, double d) {
    if (isnan(d)) { pjb_puts(b, "nan"); return; }
    if (isinf(d)) { pjb_puts(b, d < 0 ? "-inf" : "inf"); return; }
    if (d == 0) { pjb_puts(b, signbit(d) ? "-0.0" : "0.0"); return; }
    /* Shortest digit string that reads back as d (Python's repr). */
    char tmp[48];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*e", prec - 1, d);
        if (strtod(tmp, NULL) == d) break;
    }
    char digits[24];
    int nd = 0, neg = 0;
    const char *q = tmp;
    if (*q == '-') { neg = 1; q++; }
    for (; *q && *q != 'e'; q++)
        if (is_digit(*q) && nd < 20) digits[nd++] = *q;
    int exp10 = *q == 'e' ? atoi(q + 1) : 0;
    while (nd > 1 && digits[nd - 1] == '0') nd--;
    digits[nd] = 0;
    int decpt = exp10 + 1;
    if (neg) pjb_putc(b, '-');
    if (decpt > -4 && decpt <= 16) {
        if (decpt <= 0) {
            pjb_puts(b, "0.");
            for (int k = 0; k < -decpt; k++) pjb_putc(b, '0');
            pjb_putn(b, digits, (size_t)nd);
        } else if (decpt >= nd) {
            pjb_putn(b, digits, (size_t)nd);
            for (int k = nd; k < decpt; k++) pjb_putc(b, '0');
            pjb_puts(b, ".0");
        } else {
            pjb_putn(b, digits, (size_t)decpt);
            pjb_putc(b, '.');
            pjb_putn(b, digits + decpt, (size_t)(nd - decpt));
        }
    } else {
        pjb_putc(b, digits[0]);
        if (nd > 1) { pjb_putc(b, '.'); pjb_putn(b, digits + 1, (size_t)(nd - 1)); }
        pjb_printf(b, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
}

void pj_dumps(pjbuf *b, const pj *v, int ensure_ascii) {
    switch (v->type) {
    case PJ_NULL: pjb_puts(b, "null"); return;
    case PJ_BOOL: pjb_puts(b, v->b ? "true" : "false"); return;
    case PJ_INT: pjb_putn(b, v->s, v->len); return;
    case PJ_FLOAT:
        if (isnan(v->d)) pjb_puts(b, "NaN");
        else if (isinf(v->d)) pjb_puts(b, v->d < 0 ? "-Infinity" : "Infinity");
        else pj_float_repr(b, v->d);
        return;
    case PJ_STR: pj_dumps_str(b, v->s, v->len, ensure_ascii); return;
    case PJ_LIST:
        pjb_putc(b, '[');
        for (size_t i = 0; i < v->n; i++) {
            if (i) pjb_puts(b, ", ");
            pj_dumps(b, v->items[i], ensure_ascii);
        }
        pjb_putc(b, ']');
        return;
    case PJ_DICT:
        pjb_putc(b, '{');
        for (size_t i = 0; i < v->n; i++) {
            if (i) pjb_puts(b, ", ");
            pj_dumps_str(b, v->keys[i]->s, v->keys[i]->len, ensure_ascii);
            pjb_puts(b, ": ");
            pj_dumps(b, v->items[i], ensure_ascii);
        }
        pjb_putc(b, '}');
        return;
    }
}

/* str.isprintable() of one code point, as repr() uses it. */
static int py_printable(unsigned cp) {
    if (cp == ' ') return 1;
    if (cp >= 0xD800 && cp <= 0xDFFF) return 0;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_CC: case UTF8PROC_CATEGORY_CF: case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: case UTF8PROC_CATEGORY_CN: case UTF8PROC_CATEGORY_ZL:
    case UTF8PROC_CATEGORY_ZP: case UTF8PROC_CATEGORY_ZS:
        return 0;
    default:
        return 1;
    }
}

static void repr_str(pjbuf *b, const char *s, size_t len) {
    const unsigned char *u = (const unsigned char *)s;
    char quote = '\'';
    if (memchr(s, '\'', len) && !memchr(s, '"', len)) quote = '"';
    pjb_putc(b, quote);
    size_t i = 0;
    while (i < len) {
        unsigned c = u[i];
        if (c == (unsigned char)quote || c == '\\') { pjb_putc(b, '\\'); pjb_putc(b, (char)c); i++; continue; }
        if (c == '\t') { pjb_puts(b, "\\t"); i++; continue; }
        if (c == '\n') { pjb_puts(b, "\\n"); i++; continue; }
        if (c == '\r') { pjb_puts(b, "\\r"); i++; continue; }
        if (c < 0x20 || c == 0x7F) { pjb_printf(b, "\\x%02x", c); i++; continue; }
        if (c < 0x80) { pjb_putc(b, (char)c); i++; continue; }
        unsigned cp;
        size_t n = utf8_decode(u + i, len - i, &cp);
        if (!n) { pjb_printf(b, "\\x%02x", c); i++; continue; }   /* not text */
        if (py_printable(cp)) pjb_putn(b, s + i, n);
        else if (cp <= 0xFF) pjb_printf(b, "\\x%02x", cp);
        else if (cp <= 0xFFFF) pjb_printf(b, "\\u%04x", cp);
        else pjb_printf(b, "\\U%08x", cp);
        i += n;
    }
    pjb_putc(b, quote);
}

void pj_repr(pjbuf *b, const pj *v) {
    switch (v->type) {
    case PJ_NULL: pjb_puts(b, "None"); return;
    case PJ_BOOL: pjb_puts(b, v->b ? "True" : "False"); return;
    case PJ_INT: pjb_putn(b, v->s, v->len); return;
    case PJ_FLOAT: pj_float_repr(b, v->d); return;
    case PJ_STR: repr_str(b, v->s, v->len); return;
    case PJ_LIST:
        pjb_putc(b, '[');
        for (size_t i = 0; i < v->n; i++) {
            if (i) pjb_puts(b, ", ");
            pj_repr(b, v->items[i]);
        }
        pjb_putc(b, ']');
        return;
    case PJ_DICT:
        pjb_putc(b, '{');
        for (size_t i = 0; i < v->n; i++) {
            if (i) pjb_puts(b, ", ");
            repr_str(b, v->keys[i]->s, v->keys[i]->len);
            pjb_puts(b, ": ");
            pj_repr(b, v->items[i]);
        }
        pjb_putc(b, '}');
        return;
    }
}

void pj_str(pjbuf *b, const pj *v) {
    if (v->type == PJ_STR) pjb_putn(b, v->s, v->len);
    else pj_repr(b, v);
}
