/*
 * grammar.c - byte-level CFG matcher, JSON-schema and DSML compilers, and the
 * trie-walk token mask (see grammar.h for the design).
 *
 * Representation.  All alternatives of all rules live in one element array
 * `el`; an element is a byte class (TERM), a rule reference (REF) or the end
 * of an alternative (END).  A parse stack is a chain of nodes (pos, parent):
 * the top node sits on a TERM element, each parent node sits on the REF
 * element it will return past.  Nodes live in an arena and are shared
 * between stacks, so advancing by one byte allocates only the changed tops.
 */
#include "server/grammar.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

enum { E_TERM = 0, E_REF = 1, E_END = 2 };
#define ELEM(t, p) (((uint32_t)(t) << 28) | (uint32_t)(p))
#define ETYPE(e) ((e) >> 28)
#define EARG(e) ((e) & 0x0fffffffu)
#define DIST_INF 0x3fffffff

typedef struct { uint64_t b[4]; } gclass;

typedef struct {
    int *alts;           /* start positions in el */
    int n_alts, cap;
} grule;

struct grammar {
    uint32_t *el;
    int n_el, cap_el;
    gclass *cls;
    int n_cls, cap_cls;
    grule *rules;
    int n_rules, cap_rules;
    int root;
    int *min_rest;       /* per element: min bytes from here to END */
    int *rule_min;       /* per rule: min bytes of any derivation */
};

/* A temporary sequence of elements, appended to el as one alternative. */
typedef struct { uint32_t *e; int n, cap; } gseq;

/* ------------------------------------------------------------------------ */
/* Building                                                                  */
/* ------------------------------------------------------------------------ */

static grammar *grammar_alloc(void) {
    grammar *g = xcalloc(1, sizeof *g);
    g->root = -1;
    return g;
}

void grammar_free(grammar *g) {
    if (!g) return;
    for (int i = 0; i < g->n_rules; i++) free(g->rules[i].alts);
    free(g->rules); free(g->el); free(g->cls); free(g->min_rest); free(g->rule_min);
    free(g);
}

static int class_add(grammar *g, const gclass *c) {
    for (int i = 0; i < g->n_cls; i++)
        if (!memcmp(&g->cls[i], c, sizeof *c)) return i;
    if (g->n_cls == g->cap_cls) {
        g->cap_cls = g->cap_cls ? 2 * g->cap_cls : 16;
        g->cls = xrealloc(g->cls, (size_t)g->cap_cls * sizeof *g->cls);
    }
    g->cls[g->n_cls] = *c;
    return g->n_cls++;
}

static void class_set(gclass *c, int lo, int hi) {
    for (int b = lo; b <= hi; b++) c->b[b >> 6] |= 1ull << (b & 63);
}
static void class_clear(gclass *c, int b) { c->b[b >> 6] &= ~(1ull << (b & 63)); }
static int class_has(const gclass *c, int b) { return (int)((c->b[b >> 6] >> (b & 63)) & 1); }

static int rule_new(grammar *g) {
    if (g->n_rules == g->cap_rules) {
        g->cap_rules = g->cap_rules ? 2 * g->cap_rules : 32;
        g->rules = xrealloc(g->rules, (size_t)g->cap_rules * sizeof *g->rules);
    }
    memset(&g->rules[g->n_rules], 0, sizeof(grule));
    return g->n_rules++;
}

static void seq_push(gseq *s, uint32_t e) {
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 16;
        s->e = xrealloc(s->e, (size_t)s->cap * sizeof *s->e);
    }
    s->e[s->n++] = e;
}
static void seq_class(gseq *s, grammar *g, const gclass *c) { seq_push(s, ELEM(E_TERM, class_add(g, c))); }
static void seq_byte(gseq *s, grammar *g, int b) {
    gclass c = {{0}};
    class_set(&c, b, b);
    seq_class(s, g, &c);
}
static void seq_lit(gseq *s, grammar *g, const char *lit, size_t n) {
    for (size_t i = 0; i < n; i++) seq_byte(s, g, (unsigned char)lit[i]);
}
static void seq_str(gseq *s, grammar *g, const char *lit) { seq_lit(s, g, lit, strlen(lit)); }
static void seq_ref(gseq *s, int rule) { seq_push(s, ELEM(E_REF, rule)); }

/* Append s (then END) as a new alternative of rule r; s is emptied. */
static void rule_add(grammar *g, int r, gseq *s) {
    int need = s->n + 1;
    if (g->n_el + need > g->cap_el) {
        while (g->n_el + need > g->cap_el) g->cap_el = g->cap_el ? 2 * g->cap_el : 256;
        g->el = xrealloc(g->el, (size_t)g->cap_el * sizeof *g->el);
    }
    int start = g->n_el;
    if (s->n) memcpy(g->el + g->n_el, s->e, (size_t)s->n * sizeof *s->e);
    g->n_el += s->n;
    g->el[g->n_el++] = ELEM(E_END, 0);
    grule *ru = &g->rules[r];
    if (ru->n_alts == ru->cap) {
        ru->cap = ru->cap ? 2 * ru->cap : 4;
        ru->alts = xrealloc(ru->alts, (size_t)ru->cap * sizeof *ru->alts);
    }
    ru->alts[ru->n_alts++] = start;
    s->n = 0;
}

static int rule_lit(grammar *g, const char *lit, size_t n) {
    gseq s = {0};
    int r = rule_new(g);
    seq_lit(&s, g, lit, n);
    rule_add(g, r, &s);
    free(s.e);
    return r;
}

/* X ::= r X | empty */
static int rule_star(grammar *g, int r) {
    gseq s = {0};
    int x = rule_new(g);
    seq_ref(&s, r); seq_ref(&s, x);
    rule_add(g, x, &s);
    rule_add(g, x, &s);
    free(s.e);
    return x;
}

/* X ::= r | empty */
static int rule_opt(grammar *g, int r) {
    gseq s = {0};
    int x = rule_new(g);
    seq_ref(&s, r);
    rule_add(g, x, &s);
    rule_add(g, x, &s);
    free(s.e);
    return x;
}

/* Minimum lengths: rule_min by fixpoint, then min_rest per element. */
static int grammar_finalize(grammar *g, char *err, size_t errlen) {
    free(g->min_rest); free(g->rule_min);
    g->min_rest = xmalloc((size_t)(g->n_el + 1) * sizeof(int));
    g->rule_min = xmalloc((size_t)(g->n_rules + 1) * sizeof(int));
    for (int r = 0; r < g->n_rules; r++) g->rule_min[r] = DIST_INF;
    for (int changed = 1; changed;) {
        changed = 0;
        for (int i = g->n_el - 1; i >= 0; i--) {
            uint32_t e = g->el[i];
            long v;
            if (ETYPE(e) == E_END) v = 0;
            else {
                long self = ETYPE(e) == E_TERM ? 1 : g->rule_min[EARG(e)];
                v = self + g->min_rest[i + 1];
                if (v > DIST_INF) v = DIST_INF;
            }
            g->min_rest[i] = (int)v;
        }
        for (int r = 0; r < g->n_rules; r++) {
            int best = DIST_INF;
            for (int a = 0; a < g->rules[r].n_alts; a++)
                if (g->min_rest[g->rules[r].alts[a]] < best) best = g->min_rest[g->rules[r].alts[a]];
            if (best < g->rule_min[r]) { g->rule_min[r] = best; changed = 1; }
        }
    }
    if (g->root < 0 || g->rule_min[g->root] >= DIST_INF)
        return errf(err, errlen, "grammar has no finite output (recursive schema without a base case)");
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Shared JSON pieces                                                        */
/* ------------------------------------------------------------------------ */

typedef struct {
    grammar *g;
    json_t *root_schema;
    char *err;
    size_t errlen;
    int no_lt;            /* strings may not contain '<' (inside DSML) */
    int r_char, r_chars, r_string, r_int, r_uint, r_number, r_unumber;
    int r_value, r_sp, r_digits;
    int r_rawchar, r_rawtext;
    struct { char *ref; int rule; } *defs;
    int n_defs;
    int depth;
} jsc;

/* Valid UTF-8 multi-byte sequences, appended as alternatives of rule r. */
static void add_utf8_multibyte(grammar *g, int r) {
    static const struct { int n; int lo[4], hi[4]; } seqs[] = {
        {2, {0xC2, 0x80}, {0xDF, 0xBF}},
        {3, {0xE0, 0xA0, 0x80}, {0xE0, 0xBF, 0xBF}},
        {3, {0xE1, 0x80, 0x80}, {0xEC, 0xBF, 0xBF}},
        {3, {0xED, 0x80, 0x80}, {0xED, 0x9F, 0xBF}},
        {3, {0xEE, 0x80, 0x80}, {0xEF, 0xBF, 0xBF}},
        {4, {0xF0, 0x90, 0x80, 0x80}, {0xF0, 0xBF, 0xBF, 0xBF}},
        {4, {0xF1, 0x80, 0x80, 0x80}, {0xF3, 0xBF, 0xBF, 0xBF}},
        {4, {0xF4, 0x80, 0x80, 0x80}, {0xF4, 0x8F, 0xBF, 0xBF}},
    };
    gseq s = {0};
    for (size_t i = 0; i < sizeof seqs / sizeof seqs[0]; i++) {
        for (int k = 0; k < seqs[i].n; k++) {
            gclass c = {{0}};
            class_set(&c, seqs[i].lo[k], seqs[i].hi[k]);
            seq_class(&s, g, &c);
        }
        rule_add(g, r, &s);
    }
    free(s.e);
}

static int json_char_rule(jsc *c) {
    if (c->r_char >= 0) return c->r_char;
    grammar *g = c->g;
    int r = rule_new(g);
    gseq s = {0};
    gclass plain = {{0}};
    class_set(&plain, 0x20, 0x7F);
    class_clear(&plain, '"');
    class_clear(&plain, '\\');
    if (c->no_lt) class_clear(&plain, '<');
    seq_class(&s, g, &plain);
    rule_add(g, r, &s);
    gclass esc = {{0}};
    const char *escs = "\"\\/bfnrt";
    for (const char *p = escs; *p; p++) class_set(&esc, (unsigned char)*p, (unsigned char)*p);
    seq_byte(&s, g, '\\');
    seq_class(&s, g, &esc);
    rule_add(g, r, &s);
    add_utf8_multibyte(g, r);
    free(s.e);
    return c->r_char = r;
}

static int json_string_rule(jsc *c) {
    if (c->r_string >= 0) return c->r_string;
    grammar *g = c->g;
    if (c->r_chars < 0) c->r_chars = rule_star(g, json_char_rule(c));
    int r = rule_new(g);
    gseq s = {0};
    seq_byte(&s, g, '"'); seq_ref(&s, c->r_chars); seq_byte(&s, g, '"');
    rule_add(g, r, &s);
    free(s.e);
    return c->r_string = r;
}

/* A string of min..max characters (max < 0: unbounded). */
static int json_string_len_rule(jsc *c, int minlen, int maxlen) {
    grammar *g = c->g;
    int ch = json_char_rule(c);
    int tail;
    if (maxlen < 0) {
        if (c->r_chars < 0) c->r_chars = rule_star(g, ch);
        tail = c->r_chars;
    } else {
        /* T_0 = empty, T_k = ch T_{k-1} | empty */
        gseq s = {0};
        tail = rule_new(g);
        rule_add(g, tail, &s);
        for (int k = 1; k <= maxlen - minlen; k++) {
            int t = rule_new(g);
            seq_ref(&s, ch); seq_ref(&s, tail);
            rule_add(g, t, &s);
            rule_add(g, t, &s);
            tail = t;
        }
        free(s.e);
    }
    int r = rule_new(g);
    gseq s = {0};
    seq_byte(&s, g, '"');
    for (int k = 0; k < minlen; k++) seq_ref(&s, ch);
    seq_ref(&s, tail);
    seq_byte(&s, g, '"');
    rule_add(g, r, &s);
    free(s.e);
    return r;
}

/* X_k ::= r X_{k-1} | empty, i.e. at most k repetitions of r. */
static int rule_upto(grammar *g, int r, int k) {
    gseq s = {0};
    int x = rule_new(g);
    rule_add(g, x, &s);
    for (int i = 1; i <= k; i++) {
        int y = rule_new(g);
        seq_ref(&s, r); seq_ref(&s, x); rule_add(g, y, &s);
        rule_add(g, y, &s);
        x = y;
    }
    free(s.e);
    return x;
}

/* Number sizes are bounded so that every JSON parser reads the value
 * exactly (integers below 2^53, exponents below 100). */
#define MAX_INT_DIGITS 15
#define MAX_FRAC_DIGITS 15
#define MAX_EXP_DIGITS 2

static int digit_rule(grammar *g, int *cache) {
    if (*cache >= 0) return *cache;
    gclass d = {{0}};
    class_set(&d, '0', '9');
    int one = rule_new(g);
    gseq s = {0};
    seq_class(&s, g, &d);
    rule_add(g, one, &s);
    free(s.e);
    return *cache = one;
}

/* unsigned integer: 0 | [1-9][0-9]{0,14}; positive_only drops the 0 */
static int uint_rule(grammar *g, int *digit_cache, int positive_only) {
    int more = rule_upto(g, digit_rule(g, digit_cache), MAX_INT_DIGITS - 1);
    gclass nz = {{0}};
    class_set(&nz, '1', '9');
    int r = rule_new(g);
    gseq s = {0};
    if (!positive_only) { seq_byte(&s, g, '0'); rule_add(g, r, &s); }
    seq_class(&s, g, &nz); seq_ref(&s, more);
    rule_add(g, r, &s);
    free(s.e);
    return r;
}

static int int_rule(jsc *c, int nonneg, int positive) {
    grammar *g = c->g;
    if (positive) return uint_rule(g, &c->r_digits, 1);
    if (nonneg) {
        if (c->r_uint < 0) c->r_uint = uint_rule(g, &c->r_digits, 0);
        return c->r_uint;
    }
    if (c->r_int >= 0) return c->r_int;
    if (c->r_uint < 0) c->r_uint = uint_rule(g, &c->r_digits, 0);
    int r = rule_new(g);
    gseq s = {0};
    seq_ref(&s, c->r_uint); rule_add(g, r, &s);
    seq_byte(&s, g, '-'); seq_ref(&s, c->r_uint); rule_add(g, r, &s);
    free(s.e);
    return c->r_int = r;
}

static int number_rule(jsc *c, int nonneg) {
    int *cache = nonneg ? &c->r_unumber : &c->r_number;
    if (*cache >= 0) return *cache;
    grammar *g = c->g;
    int ir = int_rule(c, nonneg, 0);
    int d = digit_rule(g, &c->r_digits);
    gseq s = {0};
    int frac = rule_new(g);          /* "." [0-9]{1,15} | empty */
    seq_byte(&s, g, '.'); seq_ref(&s, d); seq_ref(&s, rule_upto(g, d, MAX_FRAC_DIGITS - 1));
    rule_add(g, frac, &s);
    rule_add(g, frac, &s);
    int sign = rule_new(g);          /* [+-] | empty */
    gclass pm = {{0}};
    class_set(&pm, '+', '+'); class_set(&pm, '-', '-');
    seq_class(&s, g, &pm); rule_add(g, sign, &s);
    rule_add(g, sign, &s);
    int ex = rule_new(g);            /* [eE] sign [0-9]{1,2} | empty */
    gclass e = {{0}};
    class_set(&e, 'e', 'e'); class_set(&e, 'E', 'E');
    seq_class(&s, g, &e); seq_ref(&s, sign); seq_ref(&s, d); seq_ref(&s, rule_upto(g, d, MAX_EXP_DIGITS - 1));
    rule_add(g, ex, &s);
    rule_add(g, ex, &s);
    int r = rule_new(g);
    seq_ref(&s, ir); seq_ref(&s, frac); seq_ref(&s, ex);
    rule_add(g, r, &s);
    free(s.e);
    return *cache = r;
}

static int sp_rule(jsc *c) {   /* optional single space after ':' and ',' */
    if (c->r_sp >= 0) return c->r_sp;
    return c->r_sp = rule_opt(c->g, rule_lit(c->g, " ", 1));
}

/* Any JSON value (objects and arrays of anything). */
static int any_value_rule(jsc *c) {
    if (c->r_value >= 0) return c->r_value;
    grammar *g = c->g;
    int v = rule_new(g);
    c->r_value = v;
    int str = json_string_rule(c), sp = sp_rule(c);
    gseq s = {0};
    /* object: "{" ( kv ( "," sp kv )* )? "}" */
    int kv = rule_new(g);
    seq_ref(&s, str); seq_byte(&s, g, ':'); seq_ref(&s, sp); seq_ref(&s, v);
    rule_add(g, kv, &s);
    int more_kv = rule_new(g);
    seq_byte(&s, g, ','); seq_ref(&s, sp); seq_ref(&s, kv);
    rule_add(g, more_kv, &s);
    int kvs = rule_star(g, more_kv);
    seq_byte(&s, g, '{'); seq_ref(&s, kv); seq_ref(&s, kvs); seq_byte(&s, g, '}');
    rule_add(g, v, &s);
    seq_str(&s, g, "{}");
    rule_add(g, v, &s);
    int more_v = rule_new(g);
    seq_byte(&s, g, ','); seq_ref(&s, sp); seq_ref(&s, v);
    rule_add(g, more_v, &s);
    int vs = rule_star(g, more_v);
    seq_byte(&s, g, '['); seq_ref(&s, v); seq_ref(&s, vs); seq_byte(&s, g, ']');
    rule_add(g, v, &s);
    seq_str(&s, g, "[]");
    rule_add(g, v, &s);
    seq_ref(&s, str); rule_add(g, v, &s);
    seq_ref(&s, number_rule(c, 0)); rule_add(g, v, &s);
    seq_str(&s, g, "true"); rule_add(g, v, &s);
    seq_str(&s, g, "false"); rule_add(g, v, &s);
    seq_str(&s, g, "null"); rule_add(g, v, &s);
    free(s.e);
    return v;
}

/* Any JSON object whose values follow value_rule (or anything if < 0). */
static int any_object_rule(jsc *c, int value_rule) {
    grammar *g = c->g;
    if (value_rule < 0) value_rule = any_value_rule(c);
    int str = json_string_rule(c), sp = sp_rule(c);
    gseq s = {0};
    int kv = rule_new(g);
    seq_ref(&s, str); seq_byte(&s, g, ':'); seq_ref(&s, sp); seq_ref(&s, value_rule);
    rule_add(g, kv, &s);
    int more = rule_new(g);
    seq_byte(&s, g, ','); seq_ref(&s, sp); seq_ref(&s, kv);
    rule_add(g, more, &s);
    int kvs = rule_star(g, more);
    int r = rule_new(g);
    seq_byte(&s, g, '{'); seq_ref(&s, kv); seq_ref(&s, kvs); seq_byte(&s, g, '}');
    rule_add(g, r, &s);
    seq_str(&s, g, "{}");
    rule_add(g, r, &s);
    free(s.e);
    return r;
}

/* ------------------------------------------------------------------------ */
/* JSON schema                                                               */
/* ------------------------------------------------------------------------ */

static int jsc_value(jsc *c, json_t *sch);

static int literal_json_rule(jsc *c, json_t *v) {
    char *txt = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
    if (!txt) return errf(c->err, c->errlen, "cannot encode enum value");
    int r = rule_lit(c->g, txt, strlen(txt));
    free(txt);
    return r;
}

static const char *const ignored_keywords[] = {
    "type", "properties", "required", "additionalProperties", "items", "minItems",
    "maxItems", "enum", "const", "anyOf", "oneOf", "$ref", "$defs", "definitions",
    "minLength", "maxLength", "minimum", "title", "description", "default",
    "examples", "$schema", "$id", "$comment", "format", "strict", "nullable",
    "readOnly", "writeOnly", "deprecated", "allOf", NULL};

static int check_keywords(jsc *c, json_t *sch) {
    const char *key;
    json_t *val;
    json_object_foreach(sch, key, val) {
        int known = 0;
        for (int i = 0; ignored_keywords[i]; i++)
            if (!strcmp(key, ignored_keywords[i])) { known = 1; break; }
        if (!known)
            return errf(c->err, c->errlen, "unsupported JSON schema keyword '%s'", key);
    }
    return 0;
}

static json_t *resolve_ref(jsc *c, const char *ref) {
    if (!strcmp(ref, "#")) return c->root_schema;
    if (strncmp(ref, "#/", 2)) return NULL;
    json_t *cur = c->root_schema;
    char part[256];
    const char *p = ref + 2;
    while (*p && cur) {
        size_t n = strcspn(p, "/");
        if (n >= sizeof part) return NULL;
        memcpy(part, p, n); part[n] = 0;
        cur = json_object_get(cur, part);
        p += n;
        if (*p == '/') p++;
    }
    return cur;
}

static int jsc_ref(jsc *c, const char *ref) {
    for (int i = 0; i < c->n_defs; i++)
        if (!strcmp(c->defs[i].ref, ref)) return c->defs[i].rule;
    json_t *target = resolve_ref(c, ref);
    if (!target) return errf(c->err, c->errlen, "unresolvable $ref '%s'", ref);
    /* Register first so that recursive references find the rule. */
    int r = rule_new(c->g);
    c->defs = xrealloc(c->defs, (size_t)(c->n_defs + 1) * sizeof *c->defs);
    c->defs[c->n_defs].ref = xstrdup(ref);
    c->defs[c->n_defs].rule = r;
    c->n_defs++;
    int body = jsc_value(c, target);
    if (body < 0) return -1;
    gseq s = {0};
    seq_ref(&s, body);
    rule_add(c->g, r, &s);
    free(s.e);
    return r;
}

/* Object with declared properties: required ones always, optional ones may be
 * skipped; commas handled by rest(i, need_comma) rules. */
static int jsc_object(jsc *c, json_t *sch) {
    grammar *g = c->g;
    json_t *props = json_object_get(sch, "properties");
    json_t *req = json_object_get(sch, "required");
    json_t *addl = json_object_get(sch, "additionalProperties");
    if (req && !json_is_array(req)) return errf(c->err, c->errlen, "'required' must be an array");
    if (props && !json_is_object(props)) return errf(c->err, c->errlen, "'properties' must be an object");
    if (!props || json_object_size(props) == 0) {
        if (req && json_array_size(req) > 0) {
            /* required names without declared properties: any values */
            props = NULL;
        } else {
            if (json_is_false(addl)) return rule_lit(g, "{}", 2);
            int vr = -1;
            if (json_is_object(addl)) { vr = jsc_value(c, addl); if (vr < 0) return -1; }
            return any_object_rule(c, vr);
        }
    }
    /* Collect names: declared properties in order, then required extras. */
    int n = 0, cap = 8;
    const char **names = xmalloc((size_t)cap * sizeof *names);
    json_t **schemas = xmalloc((size_t)cap * sizeof *schemas);
    int *required = xmalloc((size_t)cap * sizeof *required);
    const char *key;
    json_t *val;
    if (props) json_object_foreach(props, key, val) {
        if (n == cap) {
            cap *= 2;
            names = xrealloc(names, (size_t)cap * sizeof *names);
            schemas = xrealloc(schemas, (size_t)cap * sizeof *schemas);
            required = xrealloc(required, (size_t)cap * sizeof *required);
        }
        names[n] = key; schemas[n] = val; required[n] = 0; n++;
    }
    size_t ri;
    json_t *rv;
    json_array_foreach(req, ri, rv) {
        if (!json_is_string(rv)) { free(names); free(schemas); free(required);
            return errf(c->err, c->errlen, "'required' entries must be strings"); }
        int found = 0;
        for (int i = 0; i < n; i++)
            if (!strcmp(names[i], json_string_value(rv))) { required[i] = 1; found = 1; }
        if (!found) {
            if (n == cap) {
                cap *= 2;
                names = xrealloc(names, (size_t)cap * sizeof *names);
                schemas = xrealloc(schemas, (size_t)cap * sizeof *schemas);
                required = xrealloc(required, (size_t)cap * sizeof *required);
            }
            names[n] = json_string_value(rv); schemas[n] = NULL; required[n] = 1; n++;
        }
    }
    int sp = sp_rule(c);
    int *kv = xmalloc((size_t)(n ? n : 1) * sizeof *kv);
    int rc = 0;
    gseq s = {0};
    for (int i = 0; i < n && rc == 0; i++) {
        int vr = schemas[i] ? jsc_value(c, schemas[i]) : any_value_rule(c);
        if (vr < 0) { rc = -1; break; }
        json_t *name = json_string(names[i]);
        char *lit = json_dumps(name, JSON_ENCODE_ANY);
        json_decref(name);
        kv[i] = rule_new(g);
        seq_str(&s, g, lit); seq_byte(&s, g, ':'); seq_ref(&s, sp); seq_ref(&s, vr);
        rule_add(g, kv[i], &s);
        free(lit);
    }
    int result = -1;
    if (rc == 0) {
        /* rest[i][k]: properties i..n-1, k = a comma is needed first */
        int rest_next[2];
        for (int k = 0; k < 2; k++) { rest_next[k] = rule_new(g); rule_add(g, rest_next[k], &s); }
        for (int i = n - 1; i >= 0; i--) {
            int cur[2];
            for (int k = 0; k < 2; k++) {
                cur[k] = rule_new(g);
                if (k) { seq_byte(&s, g, ','); seq_ref(&s, sp); }
                seq_ref(&s, kv[i]); seq_ref(&s, rest_next[1]);
                rule_add(g, cur[k], &s);
                if (!required[i]) { seq_ref(&s, rest_next[k]); rule_add(g, cur[k], &s); }
            }
            rest_next[0] = cur[0]; rest_next[1] = cur[1];
        }
        result = rule_new(g);
        seq_byte(&s, g, '{'); seq_ref(&s, rest_next[0]); seq_byte(&s, g, '}');
        rule_add(g, result, &s);
    }
    free(s.e); free(kv); free(names); free(schemas); free(required);
    return result;
}

static int jsc_array(jsc *c, json_t *sch) {
    grammar *g = c->g;
    json_t *items = json_object_get(sch, "items");
    json_t *jmin = json_object_get(sch, "minItems"), *jmax = json_object_get(sch, "maxItems");
    int item = items ? jsc_value(c, items) : any_value_rule(c);
    if (item < 0) return -1;
    long mn = jmin ? (long)json_integer_value(jmin) : 0;
    long mx = jmax ? (long)json_integer_value(jmax) : -1;
    if (mn < 0 || (jmax && mx < mn)) return errf(c->err, c->errlen, "bad minItems/maxItems");
    if (mn > 256 || mx > 256) return errf(c->err, c->errlen, "minItems/maxItems above 256 not supported");
    int sp = sp_rule(c);
    gseq s = {0};
    int sep_item = rule_new(g);                     /* "," sp item */
    seq_byte(&s, g, ','); seq_ref(&s, sp); seq_ref(&s, item);
    rule_add(g, sep_item, &s);
    int tail;                                       /* after the first item */
    long extra_after_first = mx < 0 ? -1 : (mx > 0 ? mx - 1 : 0);
    long req_after_first = mn > 1 ? mn - 1 : 0;
    if (extra_after_first < 0) {
        tail = rule_star(g, sep_item);
    } else {
        tail = rule_new(g);
        rule_add(g, tail, &s);
        for (long k = 1; k <= extra_after_first - req_after_first; k++) {
            int t = rule_new(g);
            seq_ref(&s, sep_item); seq_ref(&s, tail); rule_add(g, t, &s);
            rule_add(g, t, &s);
            tail = t;
        }
    }
    int r = rule_new(g);
    if (mx != 0) {
        seq_byte(&s, g, '['); seq_ref(&s, item);
        for (long k = 0; k < req_after_first; k++) seq_ref(&s, sep_item);
        seq_ref(&s, tail); seq_byte(&s, g, ']');
        rule_add(g, r, &s);
    }
    if (mn == 0) { seq_str(&s, g, "[]"); rule_add(g, r, &s); }
    free(s.e);
    return r;
}

static int jsc_typed(jsc *c, json_t *sch, const char *type) {
    grammar *g = c->g;
    if (!strcmp(type, "object")) return jsc_object(c, sch);
    if (!strcmp(type, "array")) return jsc_array(c, sch);
    if (!strcmp(type, "string")) {
        json_t *jmin = json_object_get(sch, "minLength"), *jmax = json_object_get(sch, "maxLength");
        if (!jmin && !jmax) return json_string_rule(c);
        long mn = jmin ? (long)json_integer_value(jmin) : 0;
        long mx = jmax ? (long)json_integer_value(jmax) : -1;
        if (mn < 0 || mn > 1024 || (jmax && (mx < mn || mx > 4096)))
            return errf(c->err, c->errlen, "unsupported minLength/maxLength");
        return json_string_len_rule(c, (int)mn, (int)mx);
    }
    json_t *jmin = json_object_get(sch, "minimum");
    if (!strcmp(type, "integer")) {
        if (!jmin) return int_rule(c, 0, 0);
        double m = json_number_value(jmin);
        if (m == 0) return int_rule(c, 1, 0);
        if (m == 1) return int_rule(c, 1, 1);
        return errf(c->err, c->errlen, "integer 'minimum' other than 0 or 1 is not supported");
    }
    if (!strcmp(type, "number")) {
        if (!jmin) return number_rule(c, 0);
        if (json_number_value(jmin) == 0) return number_rule(c, 1);
        return errf(c->err, c->errlen, "number 'minimum' other than 0 is not supported");
    }
    if (!strcmp(type, "boolean")) {
        int r = rule_new(g);
        gseq s = {0};
        seq_str(&s, g, "true"); rule_add(g, r, &s);
        seq_str(&s, g, "false"); rule_add(g, r, &s);
        free(s.e);
        return r;
    }
    if (!strcmp(type, "null")) return rule_lit(g, "null", 4);
    return errf(c->err, c->errlen, "unknown JSON schema type '%s'", type);
}

static int jsc_alternatives(jsc *c, int *rules, int n) {
    int r = rule_new(c->g);
    gseq s = {0};
    for (int i = 0; i < n; i++) { seq_ref(&s, rules[i]); rule_add(c->g, r, &s); }
    free(s.e);
    return r;
}

static int jsc_value_inner(jsc *c, json_t *sch) {
    if (json_is_true(sch)) return any_value_rule(c);
    if (!json_is_object(sch)) return errf(c->err, c->errlen, "a schema must be an object or true");
    if (check_keywords(c, sch)) return -1;
    json_t *v;
    if ((v = json_object_get(sch, "$ref"))) {
        if (!json_is_string(v)) return errf(c->err, c->errlen, "$ref must be a string");
        return jsc_ref(c, json_string_value(v));
    }
    if ((v = json_object_get(sch, "const"))) return literal_json_rule(c, v);
    if ((v = json_object_get(sch, "enum"))) {
        if (!json_is_array(v) || json_array_size(v) == 0)
            return errf(c->err, c->errlen, "'enum' must be a non-empty array");
        int n = (int)json_array_size(v);
        int *rs = xmalloc((size_t)n * sizeof *rs);
        for (int i = 0; i < n; i++)
            if ((rs[i] = literal_json_rule(c, json_array_get(v, (size_t)i))) < 0) { free(rs); return -1; }
        int r = jsc_alternatives(c, rs, n);
        free(rs);
        return r;
    }
    json_t *any = json_object_get(sch, "anyOf");
    if (!any) any = json_object_get(sch, "oneOf");
    json_t *all = json_object_get(sch, "allOf");
    if (all) {
        if (!json_is_array(all) || json_array_size(all) != 1)
            return errf(c->err, c->errlen, "'allOf' with more than one schema is not supported");
        return jsc_value(c, json_array_get(all, 0));
    }
    if (any) {
        if (!json_is_array(any) || json_array_size(any) == 0)
            return errf(c->err, c->errlen, "'anyOf'/'oneOf' must be a non-empty array");
        int n = (int)json_array_size(any);
        int *rs = xmalloc((size_t)n * sizeof *rs);
        for (int i = 0; i < n; i++)
            if ((rs[i] = jsc_value(c, json_array_get(any, (size_t)i))) < 0) { free(rs); return -1; }
        int r = jsc_alternatives(c, rs, n);
        free(rs);
        return r;
    }
    json_t *type = json_object_get(sch, "type");
    if (json_is_string(type)) {
        int r = jsc_typed(c, sch, json_string_value(type));
        if (r >= 0 && json_is_true(json_object_get(sch, "nullable"))) {
            int rs[2] = {r, rule_lit(c->g, "null", 4)};
            return jsc_alternatives(c, rs, 2);
        }
        return r;
    }
    if (json_is_array(type)) {
        int n = (int)json_array_size(type);
        if (n == 0) return errf(c->err, c->errlen, "empty 'type' list");
        int *rs = xmalloc((size_t)n * sizeof *rs);
        for (int i = 0; i < n; i++) {
            json_t *t = json_array_get(type, (size_t)i);
            if (!json_is_string(t) || (rs[i] = jsc_typed(c, sch, json_string_value(t))) < 0) {
                free(rs);
                return json_is_string(t) ? -1 : errf(c->err, c->errlen, "'type' entries must be strings");
            }
        }
        int r = jsc_alternatives(c, rs, n);
        free(rs);
        return r;
    }
    if (type) return errf(c->err, c->errlen, "'type' must be a string or a list");
    if (json_object_get(sch, "properties") || json_object_get(sch, "required")) return jsc_object(c, sch);
    if (json_object_get(sch, "items")) return jsc_array(c, sch);
    return any_value_rule(c);
}

static int jsc_value(jsc *c, json_t *sch) {
    if (++c->depth > 64) return errf(c->err, c->errlen, "schema nested too deeply");
    int r = jsc_value_inner(c, sch);
    c->depth--;
    return r;
}

static void jsc_init(jsc *c, grammar *g, json_t *root, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    c->g = g; c->root_schema = root; c->err = err; c->errlen = errlen;
    c->r_char = c->r_chars = c->r_string = c->r_int = c->r_uint = -1;
    c->r_number = c->r_unumber = c->r_value = c->r_sp = c->r_digits = -1;
    c->r_rawchar = c->r_rawtext = -1;
}

static void jsc_done(jsc *c) {
    for (int i = 0; i < c->n_defs; i++) free(c->defs[i].ref);
    free(c->defs);
}

grammar *grammar_from_json_schema(const char *schema_json, char *err, size_t errlen) {
    grammar *g = grammar_alloc();
    json_t *root = NULL;
    if (schema_json) {
        json_error_t je;
        root = json_loads(schema_json, JSON_DECODE_ANY, &je);
        if (!root) { errf(err, errlen, "schema is not valid JSON: %s", je.text); grammar_free(g); return NULL; }
    }
    jsc c;
    jsc_init(&c, g, root, err, errlen);
    int r = root ? jsc_value(&c, root) : any_object_rule(&c, -1);
    jsc_done(&c);
    json_decref(root);
    if (r < 0) { grammar_free(g); return NULL; }
    g->root = r;
    if (grammar_finalize(g, err, errlen)) { grammar_free(g); return NULL; }
    return g;
}

/* ------------------------------------------------------------------------ */
/* DSML tool calls                                                           */
/* ------------------------------------------------------------------------ */

/* Raw text: valid UTF-8 without '<' and '\r' (it ends at a DSML tag). */
static int raw_text_rule(jsc *c) {
    if (c->r_rawtext >= 0) return c->r_rawtext;
    grammar *g = c->g;
    int ch = rule_new(g);
    gseq s = {0};
    gclass a = {{0}};
    class_set(&a, 0x20, 0x7E);
    class_set(&a, '\n', '\n');
    class_set(&a, '\t', '\t');
    class_clear(&a, '<');
    seq_class(&s, g, &a);
    rule_add(g, ch, &s);
    add_utf8_multibyte(g, ch);
    free(s.e);
    c->r_rawchar = ch;
    return c->r_rawtext = rule_star(g, ch);
}

#define DSML "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c"   /* ｜DSML｜ */

/* One parameter: string="true" raw text for plain string schemas, else
 * string="false" + a JSON value. */
static int dsml_param_rule(jsc *c, const char *name, json_t *sch) {
    grammar *g = c->g;
    json_t *type = json_is_object(sch) ? json_object_get(sch, "type") : NULL;
    json_t *en = json_is_object(sch) ? json_object_get(sch, "enum") : NULL;
    int is_string = json_is_string(type) && !strcmp(json_string_value(type), "string");
    gseq s = {0};
    int r = rule_new(g);
    seq_str(&s, g, "<" DSML "parameter name=\"");
    seq_str(&s, g, name);
    int value;
    if (is_string && !json_object_get(sch, "minLength") && !json_object_get(sch, "maxLength")) {
        seq_str(&s, g, "\" string=\"true\">");
        if (json_is_array(en)) {
            value = rule_new(g);
            gseq t = {0};
            size_t i;
            json_t *e;
            json_array_foreach(en, i, e) {
                if (!json_is_string(e)) { free(t.e); free(s.e); return errf(c->err, c->errlen, "string enum with a non-string value"); }
                seq_str(&t, g, json_string_value(e));
                rule_add(g, value, &t);
            }
            free(t.e);
        } else {
            value = raw_text_rule(c);
        }
    } else {
        seq_str(&s, g, "\" string=\"false\">");
        value = sch ? jsc_value(c, sch) : any_value_rule(c);
        if (value < 0) { free(s.e); return -1; }
    }
    seq_ref(&s, value);
    seq_str(&s, g, "</" DSML "parameter>\n");
    rule_add(g, r, &s);
    free(s.e);
    return r;
}

static int dsml_invoke_rule(jsc *c, json_t *fn) {
    grammar *g = c->g;
    const char *name = json_string_value(json_object_get(fn, "name"));
    if (!name || !*name || strpbrk(name, "\"<>\n"))
        return errf(c->err, c->errlen, "tool function needs a plain 'name'");
    json_t *params = json_object_get(fn, "parameters");
    json_t *props = json_is_object(params) ? json_object_get(params, "properties") : NULL;
    json_t *req = json_is_object(params) ? json_object_get(params, "required") : NULL;
    int n = json_is_object(props) ? (int)json_object_size(props) : 0;
    int *pr = xmalloc((size_t)(n ? n : 1) * sizeof *pr);
    int *required = xcalloc((size_t)(n ? n : 1), sizeof *required);
    const char *key;
    json_t *val;
    int i = 0, rc = 0;
    gseq s = {0};
    if (n) json_object_foreach(props, key, val) {
        size_t k;
        json_t *rv;
        json_array_foreach(req, k, rv)
            if (json_is_string(rv) && !strcmp(json_string_value(rv), key)) required[i] = 1;
        if (strpbrk(key, "\"<>\n")) { rc = errf(c->err, c->errlen, "bad parameter name"); break; }
        if ((pr[i] = dsml_param_rule(c, key, val)) < 0) { rc = -1; break; }
        i++;
    }
    int result = -1;
    if (rc == 0) {
        /* rest[i][k], k = something was emitted; the empty call writes "\n" */
        int next[2];
        next[0] = rule_new(g); seq_str(&s, g, "\n"); rule_add(g, next[0], &s);
        next[1] = rule_new(g); rule_add(g, next[1], &s);
        for (int j = n - 1; j >= 0; j--) {
            int cur[2];
            for (int k = 0; k < 2; k++) {
                cur[k] = rule_new(g);
                seq_ref(&s, pr[j]); seq_ref(&s, next[1]);
                rule_add(g, cur[k], &s);
                if (!required[j]) { seq_ref(&s, next[k]); rule_add(g, cur[k], &s); }
            }
            next[0] = cur[0]; next[1] = cur[1];
        }
        result = rule_new(g);
        seq_str(&s, g, "<" DSML "invoke name=\"");
        seq_str(&s, g, name);
        seq_str(&s, g, "\">\n");
        seq_ref(&s, next[0]);
        seq_str(&s, g, "</" DSML "invoke>\n");
        rule_add(g, result, &s);
    }
    free(s.e); free(pr); free(required);
    return result;
}

grammar *grammar_dsml_tools(const char *tools_json, const char *only_name, int allow_text,
                            char *err, size_t errlen) {
    json_error_t je;
    json_t *tools = json_loads(tools_json, 0, &je);
    if (!json_is_array(tools)) {
        errf(err, errlen, "tools must be a JSON array");
        json_decref(tools);
        return NULL;
    }
    grammar *g = grammar_alloc();
    jsc c;
    jsc_init(&c, g, NULL, err, errlen);
    c.no_lt = 1;
    int invoke = rule_new(g), n_inv = 0, rc = 0;
    gseq s = {0};
    size_t i;
    json_t *t;
    json_array_foreach(tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        if (!json_is_object(fn)) fn = t;
        const char *name = json_string_value(json_object_get(fn, "name"));
        if (only_name && (!name || strcmp(name, only_name))) continue;
        c.root_schema = json_object_get(fn, "parameters");
        int r = dsml_invoke_rule(&c, fn);
        if (r < 0) { rc = -1; break; }
        seq_ref(&s, r);
        rule_add(g, invoke, &s);
        n_inv++;
    }
    if (rc == 0 && n_inv == 0)
        rc = errf(err, errlen, only_name ? "tool_choice names a function that is not in tools"
                                         : "no tools to call");
    if (rc == 0) {
        int block = rule_new(g);
        seq_str(&s, g, "\n\n<" DSML "tool_calls>\n");
        seq_ref(&s, invoke);
        seq_str(&s, g, "</" DSML "tool_calls>");
        rule_add(g, block, &s);
        if (allow_text) {
            int root = rule_new(g);
            int txt = raw_text_rule(&c);
            seq_ref(&s, txt); seq_ref(&s, block); rule_add(g, root, &s);
            seq_ref(&s, txt); rule_add(g, root, &s);
            g->root = root;
        } else {
            g->root = block;
        }
    }
    free(s.e);
    jsc_done(&c);
    json_decref(tools);
    if (rc == 0 && grammar_finalize(g, err, errlen)) rc = -1;
    if (rc) { grammar_free(g); return NULL; }
    return g;
}

int grammar_add_thinking_prefix(grammar *g, char *err, size_t errlen) {
    jsc c;
    jsc_init(&c, g, NULL, err, errlen);
    int txt = raw_text_rule(&c);
    jsc_done(&c);
    int root = rule_new(g);
    gseq s = {0};
    seq_ref(&s, txt); seq_str(&s, g, "</think>"); seq_ref(&s, g->root);
    rule_add(g, root, &s);
    free(s.e);
    g->root = root;
    return grammar_finalize(g, err, errlen);
}

/* ------------------------------------------------------------------------ */
/* Vocabulary trie                                                           */
/* ------------------------------------------------------------------------ */

typedef struct {
    uint32_t child;      /* index of the first child; children are contiguous */
    uint32_t n_child;
    int32_t tok;         /* first token ending here, or -1 (more in tok_next) */
    uint8_t byte;
} tnode;

struct gvocab {
    const char **tb;     /* token bytes by id (owned by the caller) */
    size_t *tl;
    tnode *n;
    size_t nn, cap;
    int32_t *tok_next;
    int n_vocab;
    int32_t eos;
};

typedef struct { const char *b; size_t len; int32_t id; } tokent;

static int tok_cmp(const void *a, const void *b) {
    const tokent *x = a, *y = b;
    size_t n = x->len < y->len ? x->len : y->len;
    int c = memcmp(x->b, y->b, n);
    if (c) return c;
    return x->len < y->len ? -1 : x->len > y->len ? 1 : (x->id > y->id) - (x->id < y->id);
}

static uint32_t trie_alloc(gvocab *v, size_t k) {
    if (v->nn + k > v->cap) {
        while (v->nn + k > v->cap) v->cap = v->cap ? 2 * v->cap : 1024;
        v->n = xrealloc(v->n, v->cap * sizeof *v->n);
    }
    uint32_t at = (uint32_t)v->nn;
    for (size_t i = 0; i < k; i++) {
        v->n[at + i].child = 0; v->n[at + i].n_child = 0; v->n[at + i].tok = -1; v->n[at + i].byte = 0;
    }
    v->nn += k;
    return at;
}

static void trie_build(gvocab *v, uint32_t node, const tokent *t, size_t lo, size_t hi, size_t depth) {
    size_t i = lo;
    for (; i < hi && t[i].len == depth; i++) {
        v->tok_next[t[i].id] = v->n[node].tok;
        v->n[node].tok = t[i].id;
    }
    if (i == hi) return;
    size_t groups = 0;
    for (size_t j = i; j < hi;) {
        uint8_t b = (uint8_t)t[j].b[depth];
        while (j < hi && (uint8_t)t[j].b[depth] == b) j++;
        groups++;
    }
    uint32_t first = trie_alloc(v, groups);
    v->n[node].child = first;
    v->n[node].n_child = (uint32_t)groups;
    size_t gi = 0;
    for (size_t j = i; j < hi; gi++) {
        uint8_t b = (uint8_t)t[j].b[depth];
        size_t k = j;
        while (k < hi && (uint8_t)t[k].b[depth] == b) k++;
        v->n[first + gi].byte = b;
        trie_build(v, first + (uint32_t)gi, t, j, k, depth + 1);
        j = k;
    }
}

gvocab *gvocab_new(int n_vocab, gvocab_bytes_fn fn, void *ud, int32_t eos) {
    gvocab *v = xcalloc(1, sizeof *v);
    v->n_vocab = n_vocab;
    v->eos = eos;
    v->tok_next = xmalloc((size_t)n_vocab * sizeof *v->tok_next);
    v->tb = xcalloc((size_t)n_vocab, sizeof *v->tb);
    v->tl = xcalloc((size_t)n_vocab, sizeof *v->tl);
    tokent *t = xmalloc((size_t)n_vocab * sizeof *t);
    size_t nt = 0;
    for (int32_t id = 0; id < n_vocab; id++) {
        v->tok_next[id] = -1;
        size_t len = 0;
        const char *b = id == eos ? NULL : fn(ud, id, &len);
        if (!b || !len) continue;
        t[nt].b = b; t[nt].len = len; t[nt].id = id; nt++;
        v->tb[id] = b; v->tl[id] = len;
    }
    qsort(t, nt, sizeof *t, tok_cmp);
    trie_alloc(v, 1);
    trie_build(v, 0, t, 0, nt, 0);
    free(t);
    return v;
}

void gvocab_free(gvocab *v) {
    if (!v) return;
    free(v->n); free(v->tok_next); free(v->tb); free(v->tl); free(v);
}

int gvocab_size(const gvocab *v) { return v->n_vocab; }

/* ------------------------------------------------------------------------ */
/* Matcher                                                                   */
/* ------------------------------------------------------------------------ */

/*
 * Parse states are interned: a stack node (pos, parent) gets one id, a
 * state (sorted set of top node ids + accept flag) gets one id, and every
 * state memoises its transitions by byte.  The matcher is thus a lazily
 * built deterministic automaton: walking the vocabulary trie costs a table
 * lookup per trie node once the states of a region (say, inside a string)
 * have been seen, and they persist from one token to the next.
 */

typedef struct {
    uint32_t pos;
    int32_t parent;
    int32_t dist;        /* TERM tops: min bytes to finish from this stack */
    int32_t tail;        /* as a frame: min bytes after returning here */
} snode;

typedef struct {
    int32_t first, n;    /* tops in m->tops[first .. first+n) */
    int accept;
    int dist;
    int32_t *trans;      /* 256 next-state ids (-2 unknown, -1 dead) or NULL */
} sstate;

#define MASK_CACHE 16
#define MAX_STATES 20000
#define MAX_NODES 2000000
#define DEAD (-1)
#define UNKNOWN (-2)

struct gmatcher {
    const grammar *g;
    const gvocab *v;
    snode *nodes;
    int n_nodes, cap_nodes;
    int32_t *nhash;      /* open addressing: node ids */
    int nhash_cap;
    sstate *states;
    int n_states, cap_states;
    int32_t *shash;
    int shash_cap;
    int32_t *tops;       /* all states' top lists */
    size_t n_tops, cap_tops;
    int32_t *tmp;        /* scratch top list of an advance */
    int n_tmp, cap_tmp;
    int tmp_accept;
    int cur;             /* committed state */
    int n_words;
    struct { int sid; uint64_t *mask; int count, need; long used; } cache[MASK_CACHE];
    long tick, n_masks, n_hits;
    int finished;        /* EOS consumed */
};

static uint64_t mix(uint64_t h) {
    h ^= h >> 33; h *= 0xff51afd7ed558ccdull; h ^= h >> 33; h *= 0xc4ceb9fe1a85ec53ull; h ^= h >> 33;
    return h;
}

static void nhash_grow(gmatcher *m) {
    int cap = m->nhash_cap ? 2 * m->nhash_cap : 1024;
    free(m->nhash);
    m->nhash = xmalloc((size_t)cap * sizeof *m->nhash);
    for (int i = 0; i < cap; i++) m->nhash[i] = -1;
    m->nhash_cap = cap;
    for (int id = 0; id < m->n_nodes; id++) {
        uint64_t h = mix(((uint64_t)m->nodes[id].pos << 32) ^ (uint32_t)m->nodes[id].parent);
        int k = (int)(h & (uint64_t)(cap - 1));
        while (m->nhash[k] >= 0) k = (k + 1) & (cap - 1);
        m->nhash[k] = id;
    }
}

static int32_t intern_node(gmatcher *m, uint32_t pos, int32_t parent) {
    if (2 * (m->n_nodes + 1) > m->nhash_cap) nhash_grow(m);
    uint64_t h = mix(((uint64_t)pos << 32) ^ (uint32_t)parent);
    int k = (int)(h & (uint64_t)(m->nhash_cap - 1));
    while (m->nhash[k] >= 0) {
        const snode *x = &m->nodes[m->nhash[k]];
        if (x->pos == pos && x->parent == parent) return m->nhash[k];
        k = (k + 1) & (m->nhash_cap - 1);
    }
    if (m->n_nodes == m->cap_nodes) {
        m->cap_nodes = m->cap_nodes ? 2 * m->cap_nodes : 1024;
        m->nodes = xrealloc(m->nodes, (size_t)m->cap_nodes * sizeof *m->nodes);
    }
    const grammar *g = m->g;
    int32_t ptail = parent >= 0 ? m->nodes[parent].tail : 0;
    long d = (long)g->min_rest[pos] + ptail, t = (long)g->min_rest[pos + 1] + ptail;
    if (ETYPE(g->el[pos]) == E_END) t = ptail;
    snode *x = &m->nodes[m->n_nodes];
    x->pos = pos;
    x->parent = parent;
    x->dist = d > DIST_INF ? DIST_INF : (int32_t)d;
    x->tail = t > DIST_INF ? DIST_INF : (int32_t)t;
    m->nhash[k] = m->n_nodes;
    return m->n_nodes++;
}

static void tmp_push(gmatcher *m, int32_t id) {
    for (int i = 0; i < m->n_tmp; i++) if (m->tmp[i] == id) return;
    if (m->n_tmp == m->cap_tmp) {
        m->cap_tmp = m->cap_tmp ? 2 * m->cap_tmp : 64;
        m->tmp = xrealloc(m->tmp, (size_t)m->cap_tmp * sizeof *m->tmp);
    }
    m->tmp[m->n_tmp++] = id;
}

/* Expand position pos with return stack parent until TERM tops (into tmp). */
static void expand(gmatcher *m, uint32_t pos, int32_t parent, int depth) {
    const grammar *g = m->g;
    if (depth > 256) return;       /* guard against pathological nesting */
    uint32_t e = g->el[pos];
    switch (ETYPE(e)) {
    case E_TERM:
        tmp_push(m, intern_node(m, pos, parent));
        return;
    case E_END:
        if (parent < 0) { m->tmp_accept = 1; return; }
        expand(m, m->nodes[parent].pos + 1, m->nodes[parent].parent, depth + 1);
        return;
    default: {
        /* Tail call: a reference that ends its alternative needs no return
         * frame (returning would only pop again), so repetition rules
         * (X ::= item X) keep stacks flat instead of one frame per item. */
        int32_t f = parent;
        if (ETYPE(g->el[pos + 1]) != E_END) f = intern_node(m, pos, parent);
        const grule *r = &g->rules[EARG(e)];
        for (int i = 0; i < r->n_alts; i++) expand(m, (uint32_t)r->alts[i], f, depth + 1);
        return;
    }
    }
}

static int cmp_i32(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

static uint64_t state_hash(const int32_t *t, int n, int accept) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t)accept;
    for (int i = 0; i < n; i++) h = mix(h ^ (uint32_t)t[i]);
    return h;
}

static void shash_grow(gmatcher *m) {
    int cap = m->shash_cap ? 2 * m->shash_cap : 1024;
    free(m->shash);
    m->shash = xmalloc((size_t)cap * sizeof *m->shash);
    for (int i = 0; i < cap; i++) m->shash[i] = -1;
    m->shash_cap = cap;
    for (int id = 0; id < m->n_states; id++) {
        const sstate *st = &m->states[id];
        int k = (int)(state_hash(m->tops + st->first, st->n, st->accept) & (uint64_t)(cap - 1));
        while (m->shash[k] >= 0) k = (k + 1) & (cap - 1);
        m->shash[k] = id;
    }
}

/* Intern the state in tmp (+ tmp_accept); DEAD if it is empty. */
static int intern_state(gmatcher *m) {
    if (!m->n_tmp && !m->tmp_accept) return DEAD;
    qsort(m->tmp, (size_t)m->n_tmp, sizeof *m->tmp, cmp_i32);
    if (2 * (m->n_states + 1) > m->shash_cap) shash_grow(m);
    uint64_t h = state_hash(m->tmp, m->n_tmp, m->tmp_accept);
    int k = (int)(h & (uint64_t)(m->shash_cap - 1));
    while (m->shash[k] >= 0) {
        const sstate *st = &m->states[m->shash[k]];
        if (st->n == m->n_tmp && st->accept == m->tmp_accept &&
            !memcmp(m->tops + st->first, m->tmp, (size_t)m->n_tmp * sizeof *m->tmp))
            return m->shash[k];
        k = (k + 1) & (m->shash_cap - 1);
    }
    if (m->n_states == m->cap_states) {
        m->cap_states = m->cap_states ? 2 * m->cap_states : 256;
        m->states = xrealloc(m->states, (size_t)m->cap_states * sizeof *m->states);
    }
    if (m->n_tops + (size_t)m->n_tmp > m->cap_tops) {
        while (m->n_tops + (size_t)m->n_tmp > m->cap_tops) m->cap_tops = m->cap_tops ? 2 * m->cap_tops : 1024;
        m->tops = xrealloc(m->tops, m->cap_tops * sizeof *m->tops);
    }
    sstate *st = &m->states[m->n_states];
    st->first = (int32_t)m->n_tops;
    st->n = m->n_tmp;
    st->accept = m->tmp_accept;
    st->trans = NULL;
    memcpy(m->tops + m->n_tops, m->tmp, (size_t)m->n_tmp * sizeof *m->tmp);
    m->n_tops += (size_t)m->n_tmp;
    int d = m->tmp_accept ? 0 : DIST_INF;
    for (int i = 0; i < m->n_tmp; i++) if (m->nodes[m->tmp[i]].dist < d) d = m->nodes[m->tmp[i]].dist;
    st->dist = d;
    m->shash[k] = m->n_states;
    return m->n_states++;
}

/* The state after byte b (memoised). */
static int step_state(gmatcher *m, int sid, int b) {
    sstate *st = &m->states[sid];
    if (st->trans && st->trans[b] != UNKNOWN) return st->trans[b];
    m->n_tmp = 0;
    m->tmp_accept = 0;
    const grammar *g = m->g;
    for (int i = 0; i < st->n; i++) {
        snode x = m->nodes[m->tops[st->first + i]];
        if (class_has(&g->cls[EARG(g->el[x.pos])], b)) expand(m, x.pos + 1, x.parent, 0);
    }
    int ns = intern_state(m);
    st = &m->states[sid];                       /* states may have moved */
    if (!st->trans) {
        st->trans = xmalloc(256 * sizeof *st->trans);
        for (int i = 0; i < 256; i++) st->trans[i] = UNKNOWN;
    }
    st->trans[b] = ns;
    return ns;
}

static void clear_tables(gmatcher *m) {
    for (int i = 0; i < m->n_states; i++) free(m->states[i].trans);
    m->n_states = 0;
    m->n_nodes = 0;
    m->n_tops = 0;
    for (int i = 0; i < m->nhash_cap; i++) m->nhash[i] = -1;
    for (int i = 0; i < m->shash_cap; i++) m->shash[i] = -1;
    for (int i = 0; i < MASK_CACHE; i++) m->cache[i].sid = -1;
}

/* Keep memory bounded: when the tables grow too big, rebuild them holding
 * only the committed state. */
static void maybe_compact(gmatcher *m) {
    if (m->n_states < MAX_STATES && m->n_nodes < MAX_NODES) return;
    const sstate *st = &m->states[m->cur];
    int n = st->n, accept = st->accept;
    /* stacks as position lists, bottom first */
    int total = 0;
    for (int i = 0; i < n; i++)
        for (int32_t x = m->tops[st->first + i]; x >= 0; x = m->nodes[x].parent) total++;
    uint32_t *pos = xmalloc((size_t)(total + n + 1) * sizeof *pos);
    int *len = xmalloc((size_t)(n + 1) * sizeof *len);
    int k = 0;
    for (int i = 0; i < n; i++) {
        int l = 0;
        for (int32_t x = m->tops[st->first + i]; x >= 0; x = m->nodes[x].parent) pos[k + l++] = m->nodes[x].pos;
        for (int a = 0, b = l - 1; a < b; a++, b--) { uint32_t t = pos[k + a]; pos[k + a] = pos[k + b]; pos[k + b] = t; }
        len[i] = l;
        k += l;
    }
    clear_tables(m);
    m->n_tmp = 0;
    m->tmp_accept = accept;
    k = 0;
    for (int i = 0; i < n; i++) {
        int32_t parent = -1;
        for (int l = 0; l < len[i]; l++) parent = intern_node(m, pos[k + l], parent);
        tmp_push(m, parent);
        k += len[i];
    }
    m->cur = intern_state(m);
    free(pos);
    free(len);
}

gmatcher *gmatcher_new(const grammar *g, const gvocab *v) {
    gmatcher *m = xcalloc(1, sizeof *m);
    m->g = g;
    m->v = v;
    m->n_words = (v->n_vocab + 63) / 64;
    for (int i = 0; i < MASK_CACHE; i++) m->cache[i].sid = -1;
    nhash_grow(m);
    shash_grow(m);
    const grule *r = &g->rules[g->root];
    m->n_tmp = 0;
    m->tmp_accept = 0;
    for (int i = 0; i < r->n_alts; i++) expand(m, (uint32_t)r->alts[i], -1, 0);
    m->cur = intern_state(m);
    return m;
}

void gmatcher_free(gmatcher *m) {
    if (!m) return;
    for (int i = 0; i < m->n_states; i++) free(m->states[i].trans);
    free(m->states); free(m->nodes); free(m->nhash); free(m->shash); free(m->tops); free(m->tmp);
    for (int i = 0; i < MASK_CACHE; i++) free(m->cache[i].mask);
    free(m);
}

int gmatcher_accept_bytes(gmatcher *m, const char *s, size_t n) {
    if (m->finished || m->cur < 0) return -1;
    int sid = m->cur;
    for (size_t k = 0; k < n; k++) {
        sid = step_state(m, sid, (unsigned char)s[k]);
        if (sid == DEAD) return -1;
    }
    m->cur = sid;
    maybe_compact(m);
    return 0;
}

int gmatcher_accept(gmatcher *m, int32_t id) {
    if (id == m->v->eos) {
        if (m->finished || !m->states[m->cur].accept) return -1;
        m->finished = 1;
        return 0;
    }
    if (id < 0 || id >= m->v->n_vocab || !m->v->tb[id]) return -1;
    return gmatcher_accept_bytes(m, m->v->tb[id], m->v->tl[id]);
}

int gmatcher_done(const gmatcher *m) {
    const sstate *st = &m->states[m->cur];
    if (!st->accept) return 0;
    return st->n == 0 ? 2 : 1;
}

int gmatcher_distance(const gmatcher *m) { return m->states[m->cur].dist; }

void gmatcher_stats(const gmatcher *m, long *masks, long *hits) {
    if (masks) *masks = m->n_masks;
    if (hits) *hits = m->n_hits;
}

typedef struct {
    gmatcher *m;
    uint64_t *mask;
    int limit;           /* max distance allowed after a token */
    int count, limited;  /* allowed ids; some id was refused by the limit */
    int need;            /* max over allowed ids of (distance after + 2) */
    int best;            /* min over all viable ids of the distance after */
} walkctx;

static void set_token_bits(walkctx *w, const tnode *t) {
    for (int32_t id = t->tok; id >= 0; id = w->m->v->tok_next[id]) {
        uint64_t bit = 1ull << (id & 63);
        if (!(w->mask[id >> 6] & bit)) { w->mask[id >> 6] |= bit; w->count++; }
    }
}

static void walk(walkctx *w, uint32_t node, int sid) {
    gmatcher *m = w->m;
    const tnode *tn = &m->v->n[node];
    for (uint32_t c = 0; c < tn->n_child; c++) {
        const tnode *ch = &m->v->n[tn->child + c];
        int ns = step_state(m, sid, ch->byte);
        if (ns == DEAD) continue;
        const sstate *st = &m->states[ns];
        if (ch->tok >= 0) {
            int d = st->dist;
            if (d < w->best) w->best = d;
            if (d > w->limit) w->limited = 1;
            else {
                set_token_bits(w, ch);
                if (d + 2 > w->need) w->need = d + 2;
            }
        }
        if (st->n > 0 && ch->n_child) walk(w, tn->child + c, ns);
    }
}

/* limit: the largest distance a token may leave (budget - 2: room for the
 * rest and EOS), DIST_INF for none.  *need: the smallest budget for which the
 * unlimited mask is already safe. */
static int compute_mask(gmatcher *m, int limit, uint64_t *mask, int *limited, int *need, int *best) {
    memset(mask, 0, (size_t)m->n_words * sizeof *mask);
    walkctx w = {m, mask, limit, 0, 0, 0, DIST_INF};
    const sstate *st = &m->states[m->cur];
    if (st->accept) {
        mask[m->v->eos >> 6] |= 1ull << (m->v->eos & 63);
        w.count++;
    }
    if (st->n) walk(&w, 0, m->cur);
    *limited = w.limited;
    *need = w.need;
    *best = w.best;
    return w.count;
}

int gmatcher_mask(gmatcher *m, int budget, uint64_t *mask) {
    m->n_masks++;
    if (m->finished) { memset(mask, 0, (size_t)m->n_words * sizeof *mask); return 0; }
    for (int i = 0; i < MASK_CACHE; i++)
        if (m->cache[i].sid == m->cur) {
            if (budget > 0 && budget < m->cache[i].need) break;   /* too tight: recompute */
            memcpy(mask, m->cache[i].mask, (size_t)m->n_words * sizeof *mask);
            m->cache[i].used = ++m->tick;
            m->n_hits++;
            return m->cache[i].count;
        }
    int limited = 0, need = 0, best = DIST_INF;
    int limit = budget > 0 ? budget - 2 : DIST_INF;
    int count = compute_mask(m, limit, mask, &limited, &need, &best);
    if (count == 0 && limited) {
        /* The byte distance overstates the tokens still needed (one token
         * can spell a long literal), so the budget looks unmeetable: make
         * the most progress possible, i.e. only the ids that leave the
         * smallest distance. */
        count = compute_mask(m, best, mask, &limited, &need, &best);
        limited = 1;
    }
    if (limited) return count;               /* budget-specific: not cached */
    int slot = 0;
    for (int i = 1; i < MASK_CACHE; i++)
        if (m->cache[i].used < m->cache[slot].used) slot = i;
    if (!m->cache[slot].mask) m->cache[slot].mask = xmalloc((size_t)m->n_words * sizeof *mask);
    memcpy(m->cache[slot].mask, mask, (size_t)m->n_words * sizeof *mask);
    m->cache[slot].sid = m->cur;
    m->cache[slot].count = count;
    m->cache[slot].need = need;
    m->cache[slot].used = ++m->tick;
    return count;
}
