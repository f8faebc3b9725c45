/*
 * pyjson.h - JSON values with Python semantics, for the chat encoder.
 *
 * The official DeepSeek-V4 encoder (encoding_dsv4.py) works on Python
 * objects decoded by json.loads and writes parts of them back with
 * json.dumps(..., ensure_ascii=False) or str().  To render byte-identical
 * prompts we need the same value model:
 *
 *   - parsing as json.loads does: integers of any size (kept as their
 *     digits), floats as doubles, NaN/Infinity literals, lone surrogate
 *     escapes, duplicate keys with dict semantics (first position, last
 *     value), key order preserved;
 *   - json.dumps with the default separators (", ", ": "), floats written
 *     as float.__repr__, ensure_ascii on or off;
 *   - str() / repr() of values (dict/list repr with single-quoted strings),
 *     Python truthiness and type names, for the places where the encoder
 *     formats arbitrary values into the prompt or an error message.
 *
 * All nodes live in an arena that is freed at once.
 */
#ifndef DSV4_PYJSON_H
#define DSV4_PYJSON_H

#include <stddef.h>

/* A growable byte string. */
typedef struct pjbuf {
    char *p;
    size_t len, cap;
} pjbuf;

void pjb_init(pjbuf *b);
void pjb_free(pjbuf *b);
void pjb_putn(pjbuf *b, const char *s, size_t n);
void pjb_puts(pjbuf *b, const char *s);
void pjb_putc(pjbuf *b, char c);
void pjb_printf(pjbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Take ownership of the NUL-terminated contents; b is left empty. */
char *pjb_steal(pjbuf *b);

typedef enum {
    PJ_NULL, PJ_BOOL, PJ_INT, PJ_FLOAT, PJ_STR, PJ_LIST, PJ_DICT
} pj_type;

typedef struct pj pj;
struct pj {
    pj_type type;
    int b;          /* PJ_BOOL */
    double d;       /* PJ_FLOAT */
    char *s;        /* PJ_STR: bytes (NUL-terminated); PJ_INT: decimal digits */
    size_t len;     /* length of s */
    size_t n, cap;  /* PJ_LIST / PJ_DICT: number of items */
    pj **items;     /* values */
    pj **keys;      /* PJ_DICT: PJ_STR keys, parallel to items */
};

typedef struct pj_arena pj_arena;
pj_arena *pj_arena_new(void);
void pj_arena_free(pj_arena *a);

/* json.loads.  NULL + err ("JSONDecodeError: ...") on invalid input. */
pj *pj_parse(pj_arena *a, const char *text, size_t len, char *err, size_t errlen);

/* Constructors. */
pj *pj_new(pj_arena *a, pj_type t);
pj *pj_new_str(pj_arena *a, const char *s, size_t len);
pj *pj_new_cstr(pj_arena *a, const char *s);
void pj_list_append(pj_arena *a, pj *list, pj *v);
/* d[key] = v with dict semantics (replace keeps the key's position). */
void pj_dict_set(pj_arena *a, pj *dict, const char *key, size_t keylen, pj *v);
/* Shallow copy of a list or dict (the container, not the values). */
pj *pj_shallow_copy(pj_arena *a, const pj *v);

/* d.get(key): the value, or NULL when absent (or d not a dict). */
pj *pj_get(const pj *dict, const char *key);
/* d.pop(key, None) */
void pj_dict_del(pj *dict, const char *key);

int pj_truthy(const pj *v);
/* 1 if v is the str s */
int pj_is_str(const pj *v, const char *s);
/* Python equality of two values (1 == 1.0 == True, ...). */
int pj_equal(const pj *a, const pj *b);
/* Python type name: "NoneType", "bool", "int", "float", "str", ... */
const char *pj_type_name(const pj *v);

/* json.dumps(v, ensure_ascii=...) with default separators. */
void pj_dumps(pjbuf *b, const pj *v, int ensure_ascii);
/* json.dumps of a byte string (a JSON string literal). */
void pj_dumps_str(pjbuf *b, const char *s, size_t len, int ensure_ascii);
/* str(v) and repr(v). */
void pj_str(pjbuf *b, const pj *v);
void pj_repr(pjbuf *b, const pj *v);
/* repr() of a float (also used by json.dumps for finite floats). */
void pj_float_repr(pjbuf *b, double d);

#endif
