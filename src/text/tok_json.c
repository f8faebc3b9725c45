/*
 * tok_json.c - see tok_json.h.  Recursive descent over a private copy of
 * the document; strings are unescaped in place (the unescaped form is never
 * longer than the escaped one), so a string value costs no allocation.
 */
#include "text/tok_json.h"
#include "util/util.h"

#include <stdlib.h>
#include <string.h>

#define TJ_MAX_DEPTH 64

typedef struct {
    tj_doc *d;
    char *p, *end;
    char *err;
    size_t errlen;
    int failed;
} tj_parser;

static int fail(tj_parser *ps, const char *what) {
    if (!ps->failed)
        errf(ps->err, ps->errlen, "malformed JSON at byte %zu: %s",
             (size_t)(ps->p - ps->d->buf), what);
    ps->failed = 1;
    return -1;
}

static void skip_ws(tj_parser *ps) {
    while (ps->p < ps->end && (*ps->p == ' ' || *ps->p == '\n' || *ps->p == '\r' || *ps->p == '\t'))
        ps->p++;
}

static int32_t new_node(tj_parser *ps, uint8_t type) {
    tj_doc *d = ps->d;
    if (d->n_nodes == d->cap_nodes) {
        size_t cap = d->cap_nodes ? d->cap_nodes * 2 : 1024;
        tj_node *nn = realloc(d->nodes, cap * sizeof *nn);
        if (!nn) return fail(ps, "out of memory");
        d->nodes = nn;
        d->cap_nodes = cap;
    }
    if (d->n_nodes >= INT32_MAX) return fail(ps, "too many values");
    tj_node *n = &d->nodes[d->n_nodes];
    memset(n, 0, sizeof *n);
    n->type = type;
    n->first = n->next = -1;
    return (int32_t)d->n_nodes++;
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

static int read_hex4(tj_parser *ps, const char *s, unsigned *out) {
    if (ps->end - s < 4) return -1;
    unsigned v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(s[i]);
        if (h < 0) return -1;
        v = v * 16 + (unsigned)h;
    }
    *out = v;
    return 0;
}

static char *put_utf8(char *w, unsigned cp) {
    if (cp < 0x80) { *w++ = (char)cp; }
    else if (cp < 0x800) { *w++ = (char)(0xC0 | (cp >> 6)); *w++ = (char)(0x80 | (cp & 0x3F)); }
    else if (cp < 0x10000) {
        *w++ = (char)(0xE0 | (cp >> 12)); *w++ = (char)(0x80 | ((cp >> 6) & 0x3F));
        *w++ = (char)(0x80 | (cp & 0x3F));
    } else {
        *w++ = (char)(0xF0 | (cp >> 18)); *w++ = (char)(0x80 | ((cp >> 12) & 0x3F));
        *w++ = (char)(0x80 | ((cp >> 6) & 0x3F)); *w++ = (char)(0x80 | (cp & 0x3F));
    }
    return w;
}

/* Parse a string at ps->p (which points at the opening quote); unescape it
 * in place and return its start and length. */
static int parse_string(tj_parser *ps, const char **out, uint32_t *out_len) {
    char *r = ++ps->p, *w = r, *start = r;
    for (;;) {
        /* Fast path: plain bytes. */
        while (r < ps->end && *r != '"' && *r != '\\' && (unsigned char)*r >= 0x20) {
            if (w != r) *w = *r;
            w++; r++;
        }
        if (r >= ps->end) { ps->p = r; return fail(ps, "unterminated string"); }
        if (*r == '"') break;
        if ((unsigned char)*r < 0x20) { ps->p = r; return fail(ps, "control character in string"); }
        /* Escape. */
        if (r + 1 >= ps->end) { ps->p = r; return fail(ps, "bad escape"); }
        char c = r[1];
        r += 2;
        switch (c) {
        case '"': *w++ = '"'; break;
        case '\\': *w++ = '\\'; break;
        case '/': *w++ = '/'; break;
        case 'b': *w++ = '\b'; break;
        case 'f': *w++ = '\f'; break;
        case 'n': *w++ = '\n'; break;
        case 'r': *w++ = '\r'; break;
        case 't': *w++ = '\t'; break;
        case 'u': {
            unsigned cp;
            if (read_hex4(ps, r, &cp)) { ps->p = r; return fail(ps, "bad \\u escape"); }
            r += 4;
            if (cp >= 0xD800 && cp < 0xDC00) {
                unsigned lo;
                if (r + 2 > ps->end || r[0] != '\\' || r[1] != 'u' || read_hex4(ps, r + 2, &lo) ||
                    lo < 0xDC00 || lo > 0xDFFF) {
                    ps->p = r; return fail(ps, "unpaired surrogate");
                }
                r += 6;
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp < 0xE000) {
                ps->p = r; return fail(ps, "unpaired surrogate");
            }
            w = put_utf8(w, cp);
            break;
        }
        default: ps->p = r - 2; return fail(ps, "bad escape");
        }
    }
    *w = 0;     /* safe: w <= r, and r points at the closing quote */
    ps->p = r + 1;
    if ((size_t)(w - start) > UINT32_MAX) return fail(ps, "string too long");
    *out = start;
    *out_len = (uint32_t)(w - start);
    return 0;
}

static int parse_number(tj_parser *ps, double *out) {
    char *s = ps->p, *q = s;
    if (q < ps->end && *q == '-') q++;
    if (q >= ps->end || *q < '0' || *q > '9') return fail(ps, "bad number");
    /* Fast path for the many small integers of a vocabulary. */
    long long v = 0;
    int digits = 0;
    char *d = q;
    while (d < ps->end && *d >= '0' && *d <= '9' && digits < 15) { v = v * 10 + (*d - '0'); d++; digits++; }
    if (d >= ps->end || (*d != '.' && *d != 'e' && *d != 'E' && (*d < '0' || *d > '9'))) {
        if (digits > 1 && *q == '0') return fail(ps, "bad number");
        *out = (*s == '-') ? -(double)v : (double)v;
        ps->p = d;
        return 0;
    }
    /* General case: validate the grammar, then strtod (the buffer is
     * NUL-terminated, and the grammar check bounds what strtod reads). */
    if (*q == '0') q++;
    else while (q < ps->end && *q >= '0' && *q <= '9') q++;
    if (q < ps->end && *q == '.') {
        q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    if (q < ps->end && (*q == 'e' || *q == 'E')) {
        q++;
        if (q < ps->end && (*q == '+' || *q == '-')) q++;
        if (q >= ps->end || *q < '0' || *q > '9') return fail(ps, "bad number");
        while (q < ps->end && *q >= '0' && *q <= '9') q++;
    }
    char save = *q;
    *q = 0;
    *out = strtod(s, NULL);
    *q = save;
    ps->p = q;
    return 0;
}

static int32_t parse_value(tj_parser *ps, int depth);

static int32_t parse_container(tj_parser *ps, int depth, int is_obj) {
    int32_t self = new_node(ps, is_obj ? TJ_OBJ : TJ_ARR);
    if (self < 0) return -1;
    char close = is_obj ? '}' : ']';
    ps->p++;
    skip_ws(ps);
    if (ps->p < ps->end && *ps->p == close) { ps->p++; return self; }
    int32_t last = -1;
    uint32_t count = 0;
    for (;;) {
        const char *key = NULL;
        uint32_t key_len = 0;
        if (is_obj) {
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != '"') return fail(ps, "expected a key");
            if (parse_string(ps, &key, &key_len)) return -1;
            skip_ws(ps);
            if (ps->p >= ps->end || *ps->p != ':') return fail(ps, "expected ':'");
            ps->p++;
        }
        int32_t child = parse_value(ps, depth + 1);
        if (child < 0) return -1;
        ps->d->nodes[child].key_off = key ? (uint32_t)(key - ps->d->buf) : 0;
        ps->d->nodes[child].key_len = key_len;
        if (last < 0) ps->d->nodes[self].first = child;
        else ps->d->nodes[last].next = child;
        last = child;
        count++;
        skip_ws(ps);
        if (ps->p >= ps->end) return fail(ps, "unterminated container");
        if (*ps->p == ',') { ps->p++; continue; }
        if (*ps->p == close) { ps->p++; break; }
        return fail(ps, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
    }
    ps->d->nodes[self].len = count;
    return self;
}

static int lit(tj_parser *ps, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n)) return 0;
    ps->p += n;
    return 1;
}

static int32_t parse_value(tj_parser *ps, int depth) {
    if (depth > TJ_MAX_DEPTH) return fail(ps, "nesting too deep");
    skip_ws(ps);
    if (ps->p >= ps->end) return fail(ps, "unexpected end");
    char c = *ps->p;
    if (c == '{') return parse_container(ps, depth, 1);
    if (c == '[') return parse_container(ps, depth, 0);
    if (c == '"') {
        int32_t n = new_node(ps, TJ_STR);
        if (n < 0) return -1;
        const char *s;
        uint32_t len;
        if (parse_string(ps, &s, &len)) return -1;
        ps->d->nodes[n].str = s;
        ps->d->nodes[n].len = len;
        return n;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        int32_t n = new_node(ps, TJ_NUM);
        if (n < 0) return -1;
        double v;
        if (parse_number(ps, &v)) return -1;
        ps->d->nodes[n].num = v;
        return n;
    }
    if (lit(ps, "true")) return new_node(ps, TJ_TRUE);
    if (lit(ps, "false")) return new_node(ps, TJ_FALSE);
    if (lit(ps, "null")) return new_node(ps, TJ_NULL);
    return fail(ps, "unexpected character");
}

int tj_parse_owned(tj_doc *d, char *buf, size_t len, char *err, size_t errlen) {
    memset(d, 0, sizeof *d);
    d->buf = buf;
    if (len >= UINT32_MAX) { tj_free(d); return errf(err, errlen, "JSON text too large"); }
    tj_parser ps = {d, d->buf, d->buf + len, err, errlen, 0};
    /* Reserve roughly one node per 28 bytes: a tokenizer.json is mostly
     * short strings and numbers. */
    d->cap_nodes = len / 28 + 16;
    d->nodes = malloc(d->cap_nodes * sizeof *d->nodes);
    if (!d->nodes) { tj_free(d); return errf(err, errlen, "out of memory"); }
    if (parse_value(&ps, 0) < 0) { tj_free(d); return -1; }
    skip_ws(&ps);
    if (ps.p != ps.end) { fail(&ps, "trailing characters"); tj_free(d); return -1; }
    return 0;
}

int tj_parse(tj_doc *d, const char *json, size_t len, char *err, size_t errlen) {
    char *buf = malloc(len + 1);
    if (!buf) { memset(d, 0, sizeof *d); return errf(err, errlen, "out of memory"); }
    memcpy(buf, json, len);
    buf[len] = 0;
    return tj_parse_owned(d, buf, len, err, errlen);
}

void tj_free(tj_doc *d) {
    free(d->buf);
    free(d->nodes);
    memset(d, 0, sizeof *d);
}

const tj_node *tj_get(const tj_doc *d, const tj_node *o, const char *key) {
    if (!o || o->type != TJ_OBJ) return NULL;
    size_t kl = strlen(key);
    for (const tj_node *c = tj_child(d, o); c; c = tj_next(d, c))
        if (c->key_len == kl && !memcmp(tj_key(d, c), key, kl)) return c;
    return NULL;
}

int tj_str_is(const tj_node *n, const char *s) {
    return n && n->type == TJ_STR && n->len == strlen(s) && !memcmp(n->str, s, n->len);
}
