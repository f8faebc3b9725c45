/*
 * tok_json.h - a small, fast JSON reader used to load tokenizer.json.
 *
 * Why not jansson: jansson needs ~0.22 s just to parse the 8 MB DeepSeek
 * tokenizer.json (it builds a hash table per object and copies every
 * string).  This reader copies the document once, unescapes strings in
 * place and stores the tree as a flat array of nodes, which brings parsing
 * down to a few tens of milliseconds.  It is strict RFC 8259 JSON (no
 * comments, no trailing commas) with a nesting limit, and reports errors
 * with the byte offset.
 *
 * Object members keep the document order and duplicate keys are kept as
 * they are (the first one wins in tj_get).
 */
#ifndef DSV4_TOK_JSON_H
#define DSV4_TOK_JSON_H

#include <stddef.h>
#include <stdint.h>

enum { TJ_NULL, TJ_FALSE, TJ_TRUE, TJ_NUM, TJ_STR, TJ_ARR, TJ_OBJ };

/* 32 bytes: a tokenizer.json has ~270k values, so size matters. */
typedef struct {
    uint32_t key_off, key_len; /* member of an object: its key, at doc->buf + key_off */
    uint32_t len;          /* TJ_STR: length; TJ_ARR/TJ_OBJ: member count */
    int32_t first, next;   /* first child, next sibling; -1 if none */
    uint8_t type;
    union {
        const char *str;   /* TJ_STR: the unescaped bytes (NUL-terminated) */
        double num;        /* TJ_NUM */
    };
} tj_node;

typedef struct {
    char *buf;             /* private copy of the text, strings unescaped */
    tj_node *nodes;
    size_t n_nodes, cap_nodes;
} tj_doc;

/* Parse json[0..len).  Returns 0, or -1 with a one-line reason in err. */
int tj_parse(tj_doc *d, const char *json, size_t len, char *err, size_t errlen);
/* The same, parsing buf[0..len) in place; buf (malloc'd, len + 1 bytes,
 * buf[len] == 0) belongs to the document from now on, even on failure. */
int tj_parse_owned(tj_doc *d, char *buf, size_t len, char *err, size_t errlen);
void tj_free(tj_doc *d);

/* Root node (index 0). */
static inline const tj_node *tj_root(const tj_doc *d) { return &d->nodes[0]; }
/* First child / next sibling, or NULL. */
static inline const tj_node *tj_child(const tj_doc *d, const tj_node *n) {
    return n->first >= 0 ? &d->nodes[n->first] : NULL;
}
static inline const tj_node *tj_next(const tj_doc *d, const tj_node *n) {
    return n->next >= 0 ? &d->nodes[n->next] : NULL;
}
/* Key of an object member. */
static inline const char *tj_key(const tj_doc *d, const tj_node *n) { return d->buf + n->key_off; }
/* Member of an object by key, or NULL (also NULL if o is not an object). */
const tj_node *tj_get(const tj_doc *d, const tj_node *o, const char *key);
/* 1 if n is a string equal to s. */
int tj_str_is(const tj_node *n, const char *s);

#endif
