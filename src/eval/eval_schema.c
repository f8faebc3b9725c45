/*
 * eval_schema.c - a JSON-schema validator for the subset that structured
 * output and tool definitions use in practice: type (one or a list),
 * properties / required / additionalProperties, items / minItems /
 * maxItems / uniqueItems, enum / const, minimum / maximum /
 * exclusiveMinimum / exclusiveMaximum / multipleOf, minLength /
 * maxLength / pattern (PCRE2), anyOf / oneOf / allOf / not, and local
 * "$ref": "#/$defs/x" (or #/definitions/x).  Keywords it does not know are
 * ignored, as the specification says.  The first failure is described in
 * `why` as "path: reason".
 */
#include "eval/eval.h"
#include "util/util.h"
#define PCRE2_CODE_UNIT_WIDTH 8
#include <math.h>
#include <pcre2.h>
#include <string.h>

typedef struct {
    json_t *root;
    char *why;
    size_t whylen;
    int depth;
} vctx;

static int fail(vctx *c, const char *path, const char *fmt, const char *a) {
    if (c->why && c->whylen) {
        char msg[160];
        snprintf(msg, sizeof msg, fmt, a ? a : "");
        snprintf(c->why, c->whylen, "%s: %s", path[0] ? path : "$", msg);
    }
    return 0;
}

static int type_matches(const char *t, json_t *v) {
    if (!strcmp(t, "object")) return json_is_object(v);
    if (!strcmp(t, "array")) return json_is_array(v);
    if (!strcmp(t, "string")) return json_is_string(v);
    if (!strcmp(t, "integer"))
        return json_is_integer(v) || (json_is_real(v) && floor(json_real_value(v)) == json_real_value(v));
    if (!strcmp(t, "number")) return json_is_number(v);
    if (!strcmp(t, "boolean")) return json_is_boolean(v);
    if (!strcmp(t, "null")) return json_is_null(v);
    return 1;
}

static int json_equal_loose(json_t *a, json_t *b) {
    if (json_is_number(a) && json_is_number(b)) return json_number_value(a) == json_number_value(b);
    return json_equal(a, b);
}

static int validate(vctx *c, json_t *s, json_t *v, const char *path);

static json_t *resolve_ref(vctx *c, const char *ref) {
    const char *pfx[] = {"#/$defs/", "#/definitions/"};
    for (int i = 0; i < 2; i++) {
        size_t l = strlen(pfx[i]);
        if (!strncmp(ref, pfx[i], l)) {
            json_t *defs = json_object_get(c->root, i == 0 ? "$defs" : "definitions");
            return json_object_get(defs, ref + l);
        }
    }
    if (!strcmp(ref, "#")) return c->root;
    return NULL;
}

static int check_pattern(const char *pattern, const char *s) {
    int errcode;
    PCRE2_SIZE erroff;
    pcre2_code *re = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED, PCRE2_UTF, &errcode, &erroff, NULL);
    if (!re) return 1;  /* an invalid pattern in the schema constrains nothing */
    pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
    int rc = pcre2_match(re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
    pcre2_match_data_free(md);
    pcre2_code_free(re);
    return rc >= 0;
}

static size_t utf8_len(const char *s) {
    size_t n = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) n += (*p & 0xC0) != 0x80;
    return n;
}

static int validate_object(vctx *c, json_t *s, json_t *v, const char *path) {
    char sub[512];
    json_t *props = json_object_get(s, "properties");
    json_t *req = json_object_get(s, "required");
    size_t i; json_t *e;
    json_array_foreach(req, i, e) {
        const char *k = json_string_value(e);
        if (k && !json_object_get(v, k)) return fail(c, path, "missing required property \"%s\"", k);
    }
    json_t *addl = json_object_get(s, "additionalProperties");
    const char *k; json_t *val;
    json_object_foreach(v, k, val) {
        snprintf(sub, sizeof sub, "%s.%s", path, k);
        json_t *ps = json_object_get(props, k);
        if (ps) { if (!validate(c, ps, val, sub)) return 0; }
        else if (json_is_false(addl)) return fail(c, path, "unexpected property \"%s\"", k);
        else if (json_is_object(addl) && !validate(c, addl, val, sub)) return 0;
    }
    json_t *mn = json_object_get(s, "minProperties"), *mx = json_object_get(s, "maxProperties");
    if (json_is_integer(mn) && (json_int_t)json_object_size(v) < json_integer_value(mn)) return fail(c, path, "too few properties%s", "");
    if (json_is_integer(mx) && (json_int_t)json_object_size(v) > json_integer_value(mx)) return fail(c, path, "too many properties%s", "");
    return 1;
}

static int validate_array(vctx *c, json_t *s, json_t *v, const char *path) {
    char sub[512];
    json_t *items = json_object_get(s, "items");
    size_t i; json_t *e;
    if (json_is_object(items))
        json_array_foreach(v, i, e) {
            snprintf(sub, sizeof sub, "%s[%zu]", path, i);
            if (!validate(c, items, e, sub)) return 0;
        }
    json_t *mn = json_object_get(s, "minItems"), *mx = json_object_get(s, "maxItems");
    if (json_is_integer(mn) && (json_int_t)json_array_size(v) < json_integer_value(mn)) return fail(c, path, "fewer items than minItems%s", "");
    if (json_is_integer(mx) && (json_int_t)json_array_size(v) > json_integer_value(mx)) return fail(c, path, "more items than maxItems%s", "");
    if (json_is_true(json_object_get(s, "uniqueItems")))
        for (size_t a = 0; a < json_array_size(v); a++)
            for (size_t b = a + 1; b < json_array_size(v); b++)
                if (json_equal_loose(json_array_get(v, a), json_array_get(v, b))) return fail(c, path, "items not unique%s", "");
    return 1;
}

static int validate_number(vctx *c, json_t *s, json_t *v, const char *path) {
    double x = json_number_value(v);
    json_t *k;
    if ((k = json_object_get(s, "minimum")) && json_is_number(k) && x < json_number_value(k)) return fail(c, path, "below minimum%s", "");
    if ((k = json_object_get(s, "maximum")) && json_is_number(k) && x > json_number_value(k)) return fail(c, path, "above maximum%s", "");
    if ((k = json_object_get(s, "exclusiveMinimum")) && json_is_number(k) && x <= json_number_value(k)) return fail(c, path, "not above exclusiveMinimum%s", "");
    if ((k = json_object_get(s, "exclusiveMaximum")) && json_is_number(k) && x >= json_number_value(k)) return fail(c, path, "not below exclusiveMaximum%s", "");
    if ((k = json_object_get(s, "multipleOf")) && json_is_number(k) && json_number_value(k) > 0) {
        double q = x / json_number_value(k);
        if (fabs(q - round(q)) > 1e-9) return fail(c, path, "not a multiple of multipleOf%s", "");
    }
    return 1;
}

static int validate_string(vctx *c, json_t *s, json_t *v, const char *path) {
    const char *str = json_string_value(v);
    size_t len = utf8_len(str);
    json_t *k;
    if ((k = json_object_get(s, "minLength")) && json_is_integer(k) && (json_int_t)len < json_integer_value(k)) return fail(c, path, "shorter than minLength%s", "");
    if ((k = json_object_get(s, "maxLength")) && json_is_integer(k) && (json_int_t)len > json_integer_value(k)) return fail(c, path, "longer than maxLength%s", "");
    const char *pat = json_string_value(json_object_get(s, "pattern"));
    if (pat && !check_pattern(pat, str)) return fail(c, path, "does not match pattern %s", pat);
    return 1;
}

static int validate(vctx *c, json_t *s, json_t *v, const char *path) {
    if (json_is_true(s) || !s) return 1;
    if (json_is_false(s)) return fail(c, path, "not allowed%s", "");
    if (!json_is_object(s)) return 1;
    if (++c->depth > 64) { c->depth--; return fail(c, path, "schema nesting too deep%s", ""); }
    int ok = 1;
    const char *ref = json_string_value(json_object_get(s, "$ref"));
    if (ref) {
        json_t *target = resolve_ref(c, ref);
        if (!target) { c->depth--; return fail(c, path, "unresolvable $ref %s", ref); }
        ok = validate(c, target, v, path);
        c->depth--;
        return ok;
    }
    json_t *type = json_object_get(s, "type");
    if (json_is_string(type)) {
        if (!type_matches(json_string_value(type), v)) { c->depth--; return fail(c, path, "expected type %s", json_string_value(type)); }
    } else if (json_is_array(type)) {
        int any = 0;
        size_t i; json_t *t;
        json_array_foreach(type, i, t) any |= json_is_string(t) && type_matches(json_string_value(t), v);
        if (!any) { c->depth--; return fail(c, path, "type not among the allowed types%s", ""); }
    }
    json_t *en = json_object_get(s, "enum");
    if (json_is_array(en)) {
        int any = 0;
        size_t i; json_t *e;
        json_array_foreach(en, i, e) any |= json_equal_loose(e, v);
        if (!any) { c->depth--; return fail(c, path, "value not in enum%s", ""); }
    }
    json_t *cn = json_object_get(s, "const");
    if (cn && !json_equal_loose(cn, v)) { c->depth--; return fail(c, path, "value differs from const%s", ""); }
    if (json_is_object(v)) ok = validate_object(c, s, v, path);
    else if (json_is_array(v)) ok = validate_array(c, s, v, path);
    else if (json_is_number(v)) ok = validate_number(c, s, v, path);
    else if (json_is_string(v)) ok = validate_string(c, s, v, path);
    json_t *all = json_object_get(s, "allOf");
    size_t i; json_t *sub;
    if (ok && json_is_array(all))
        json_array_foreach(all, i, sub) if (!validate(c, sub, v, path)) { ok = 0; break; }
    json_t *any = json_object_get(s, "anyOf");
    if (ok && json_is_array(any)) {
        int n = 0;
        json_array_foreach(any, i, sub) if (validate(c, sub, v, path)) { n = 1; break; }
        if (!n) ok = fail(c, path, "matches none of anyOf%s", "");
    }
    json_t *one = json_object_get(s, "oneOf");
    if (ok && json_is_array(one)) {
        int n = 0;
        json_array_foreach(one, i, sub) n += validate(c, sub, v, path);
        if (n != 1) ok = fail(c, path, n ? "matches more than one of oneOf%s" : "matches none of oneOf%s", "");
    }
    json_t *not = json_object_get(s, "not");
    if (ok && not && validate(c, not, v, path)) ok = fail(c, path, "matches \"not\"%s", "");
    c->depth--;
    return ok;
}

int eval_schema_validate(json_t *schema, json_t *inst, char *why, size_t whylen) {
    vctx c = {schema, why, whylen, 0};
    if (why && whylen) why[0] = 0;
    return validate(&c, schema, inst, "$");
}
