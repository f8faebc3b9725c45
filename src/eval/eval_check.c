/*
 * eval_check.c - acceptance checks on a final answer.
 *
 *   exact     the answer, trimmed (and without a trailing '.'), equals
 *             "value" (or one of "values"); case-insensitive unless
 *             "case_sensitive": true
 *   contains  the answer contains "value" / every one of "values" / at
 *             least one of "any"
 *   regex     "pattern" (PCRE2) matches somewhere; "flags": "i" ignores case
 *   json      the answer is JSON (bare or in a ``` fence); optional
 *             "expect" is a subset it must contain
 *   json_schema   as json, and it validates against "schema"
 *   needle    the answer contains "value", case-insensitive (long-context
 *             retrieval)
 * Tool chains are run by eval_run.c; their optional "final" check comes
 * back here.
 */
#include "eval/eval.h"
#include "util/util.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <ctype.h>
#include <pcre2.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Trimmed copy; optionally without trailing '.', quotes or backticks. */
static char *normalize(const char *s, int strip_punct) {
    while (*s && isspace((unsigned char)*s)) s++;
    char *c = xstrdup(s);
    size_t n = strlen(c);
    for (;;) {
        while (n && isspace((unsigned char)c[n - 1])) c[--n] = 0;
        if (strip_punct && n && (c[n - 1] == '.' || c[n - 1] == '"' || c[n - 1] == '`' || c[n - 1] == '\'')) { c[--n] = 0; continue; }
        break;
    }
    if (strip_punct) {
        size_t k = 0;
        while (c[k] == '"' || c[k] == '`' || c[k] == '\'') k++;
        if (k) memmove(c, c + k, n - k + 1);
    }
    return c;
}

static int contains_ci(const char *hay, const char *needle, int ci) {
    if (!*needle) return 1;
    if (!ci) return strstr(hay, needle) != NULL;
    size_t nl = strlen(needle);
    for (const char *p = hay; *p; p++)
        if (!strncasecmp(p, needle, nl)) return 1;
    return 0;
}

json_t *eval_extract_json(const char *text) {
    json_error_t je;
    char *t = normalize(text, 0);
    json_t *v = json_loads(t, JSON_DECODE_ANY, &je);
    if (v && (json_is_object(v) || json_is_array(v))) { free(t); return v; }
    json_decref(v);
    v = NULL;
    const char *fence = strstr(t, "```");
    if (fence) {
        const char *start = strchr(fence + 3, '\n');
        const char *end = start ? strstr(start, "```") : NULL;
        if (start && end) v = json_loadb(start + 1, (size_t)(end - start - 1), 0, &je);
    }
    if (!v) {
        /* The outermost {...} or [...] inside prose. */
        char *o = strchr(t, '{'), *a = strchr(t, '[');
        char *first = (o && (!a || o < a)) ? o : a;
        if (first) {
            char *last = strrchr(t, first == o ? '}' : ']');
            if (last && last > first) v = json_loadb(first, (size_t)(last - first + 1), 0, &je);
        }
    }
    free(t);
    if (v && !json_is_object(v) && !json_is_array(v)) { json_decref(v); v = NULL; }
    return v;
}

static int strings_equal_ci(const char *a, const char *b) {
    char *x = normalize(a, 0), *y = normalize(b, 0);
    int eq = !strcasecmp(x, y);
    free(x); free(y);
    return eq;
}

int eval_json_subset(json_t *want, json_t *got) {
    if (!want) return 1;
    if (!got) return 0;
    if (json_is_object(want)) {
        if (!json_is_object(got)) return 0;
        const char *k; json_t *w;
        json_object_foreach(want, k, w) if (!eval_json_subset(w, json_object_get(got, k))) return 0;
        return 1;
    }
    if (json_is_array(want)) {
        if (!json_is_array(got)) return 0;
        size_t i, j; json_t *w, *g;
        json_array_foreach(want, i, w) {
            int found = 0;
            json_array_foreach(got, j, g) if (eval_json_subset(w, g)) { found = 1; break; }
            if (!found) return 0;
        }
        return 1;
    }
    if (json_is_number(want) && json_is_number(got)) return json_number_value(want) == json_number_value(got);
    if (json_is_number(want) && json_is_string(got)) {
        char *end;
        double d = strtod(json_string_value(got), &end);
        return end != json_string_value(got) && *end == 0 && d == json_number_value(want);
    }
    if (json_is_string(want) && json_is_number(got)) return eval_json_subset(got, want);
    if (json_is_string(want) && json_is_string(got)) return strings_equal_ci(json_string_value(want), json_string_value(got));
    return json_equal(want, got);
}

static int regex_search(const char *pattern, const char *text, int ci, char *why, size_t whylen) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
                                   PCRE2_UTF | (ci ? PCRE2_CASELESS : 0), &errcode, &erroff, NULL);
    if (!re) {
        PCRE2_UCHAR msg[120];
        pcre2_get_error_message(errcode, msg, sizeof msg);
        snprintf(why, whylen, "bad regex at %zu: %s", (size_t)erroff, (char *)msg);
        return 0;
    }
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)text, strlen(text), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    if (rc < 0) snprintf(why, whylen, "no match for /%.80s/", pattern);
    return rc >= 0;
}

static int check_json(json_t *check, const char *text, int with_schema, eval_check_result *r) {
    r->is_json = 1;
    json_t *v = eval_extract_json(text);
    if (!v) { snprintf(r->why, sizeof r->why, "answer is not JSON"); return 0; }
    r->json_valid = 1;
    int ok = 1;
    if (with_schema) {
        char why[160];
        r->schema_valid = eval_schema_validate(json_object_get(check, "schema"), v, why, sizeof why);
        if (!r->schema_valid) { snprintf(r->why, sizeof r->why, "schema: %s", why); ok = 0; }
    }
    json_t *expect = json_object_get(check, "expect");
    if (ok && expect && !eval_json_subset(expect, v)) {
        char *w = json_dumps(expect, JSON_COMPACT | JSON_REAL_PRECISION(10));
        snprintf(r->why, sizeof r->why, "JSON lacks expected %.150s", w ? w : "");
        free(w);
        ok = 0;
    }
    json_decref(v);
    return ok;
}

void eval_check_text(json_t *check, const char *text, eval_check_result *r) {
    memset(r, 0, sizeof *r);
    const char *type = json_string_value(json_object_get(check, "type"));
    if (!type) type = "contains";
    int ci = !json_is_true(json_object_get(check, "case_sensitive"));
    json_t *value = json_object_get(check, "value");
    json_t *values = json_object_get(check, "values");
    char vbuf[64];
    const char *v = json_string_value(value);
    if (!v && json_is_number(value)) {
        /* Numeric values compare as their shortest text. */
        if (json_is_integer(value)) snprintf(vbuf, sizeof vbuf, "%" JSON_INTEGER_FORMAT, json_integer_value(value));
        else snprintf(vbuf, sizeof vbuf, "%g", json_real_value(value));
        v = vbuf;
    }
    if (!strcmp(type, "exact")) {
        char *a = normalize(text, 1);
        int ok = 0;
        if (v) { char *w = normalize(v, 1); ok = ci ? !strcasecmp(a, w) : !strcmp(a, w); free(w); }
        size_t i; json_t *e;
        json_array_foreach(values, i, e) if (json_is_string(e) && !ok) {
            char *w = normalize(json_string_value(e), 1);
            ok = ci ? !strcasecmp(a, w) : !strcmp(a, w);
            free(w);
        }
        if (!ok) snprintf(r->why, sizeof r->why, "expected \"%.60s\", got \"%.80s\"", v ? v : "(one of values)", a);
        free(a);
        r->accepted = ok;
    } else if (!strcmp(type, "contains") || !strcmp(type, "needle")) {
        if (!strcmp(type, "needle")) ci = 1;
        int ok = 1;
        if (v && !contains_ci(text, v, ci)) { ok = 0; snprintf(r->why, sizeof r->why, "missing \"%.80s\"", v); }
        size_t i; json_t *e;
        json_array_foreach(values, i, e)
            if (ok && json_is_string(e) && !contains_ci(text, json_string_value(e), ci)) {
                ok = 0;
                snprintf(r->why, sizeof r->why, "missing \"%.80s\"", json_string_value(e));
            }
        json_t *any = json_object_get(check, "any");
        if (ok && json_is_array(any)) {
            int hit = 0;
            json_array_foreach(any, i, e) hit |= json_is_string(e) && contains_ci(text, json_string_value(e), ci);
            if (!hit) { ok = 0; snprintf(r->why, sizeof r->why, "none of \"any\" present"); }
        }
        r->accepted = ok;
    } else if (!strcmp(type, "regex")) {
        const char *flags = json_string_value(json_object_get(check, "flags"));
        r->accepted = regex_search(json_string_value(json_object_get(check, "pattern")), text,
                                   flags && strchr(flags, 'i'), r->why, sizeof r->why);
    } else if (!strcmp(type, "json")) {
        r->accepted = check_json(check, text, 0, r);
    } else if (!strcmp(type, "json_schema")) {
        r->accepted = check_json(check, text, 1, r);
    } else {
        snprintf(r->why, sizeof r->why, "check type %s does not apply to text", type);
    }
}
