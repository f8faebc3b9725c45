/*
 * tokenizer.c - DeepSeek-V4 byte-level BPE tokenizer (see dsv4_tokenizer.h).
 *
 * Loading reads tokenizer.json with the small reader of tok_json.c and
 * checks that the file describes what this code implements: no normaliser,
 * the DeepSeek pre-tokenizer (tok_pretok.c, compared pattern by pattern),
 * a plain byte-level BPE model and a ByteLevel decoder.  Anything else is
 * refused with a one-line reason rather than tokenised differently.
 *
 * Tables built at load:
 *  - per id: the token's spelling in the file and its raw bytes;
 *  - a hash of spellings -> id (added tokens first, then the vocabulary);
 *  - a hash of merge pairs (left id, right id) -> (rank, merged id);
 *  - a byte trie of the added tokens for leftmost-longest matching;
 *  - the id of each of the 256 single-byte tokens.
 *
 * Encoding: added tokens are cut out first (leftmost match, longest at a
 * position); each piece between them is pre-tokenised and every pre-token
 * goes through BPE over its bytes.  BPE applies the lowest-rank merge first
 * (leftmost on ties), as HF tokenizers does: a simple array scan for short
 * words, a binary heap over a linked list for long ones.  A per-call cache
 * of word -> ids speeds up long texts.
 *
 * Raw bytes of a token follow HF's ByteLevel decoder: if every character
 * of the token's spelling is one of the 256 byte-level characters, they map
 * back to bytes; otherwise (added tokens such as <｜User｜>) the spelling's
 * own UTF-8 bytes are the token's bytes.
 */
#include "dsv4_tokenizer.h"
#include "text/tok_internal.h"
#include "text/tok_json.h"
#include "text/tok_pretok.h"
#include "text/tok_unicode.h"
#include "util/util.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

enum { K_NONE = 0, K_VOCAB = 1, K_ADDED = 2, K_SPECIAL_FLAG = 4 };

/* Merge table slot, 8 bytes so the 2 MiB table stays cache-friendly:
 * left id (21 bits) | right id (21 bits) | rank (22 bits). */
#define MERGE_EMPTY UINT64_MAX
#define MERGE_ID_BITS 21
#define MERGE_RANK_BITS 22
#define MERGE_RANK_MASK ((1u << MERGE_RANK_BITS) - 1)
#define NO_MERGE INT32_MAX

struct dsv4_tokenizer {
    int32_t n_ids;
    uint8_t *kind;                 /* K_* per id */
    uint32_t *spell_off, *spell_len, *raw_off, *raw_len;
    char *spell_pool, *raw_pool;
    size_t spell_used, spell_cap, raw_used, raw_cap;

    uint64_t *str_slots;           /* hash << 32 | (id + 1); 0 = empty */
    uint32_t str_mask;

    uint64_t *merges;
    uint32_t merge_mask;
    int32_t *merge_id;             /* rank -> id of the merged token */

    int32_t byte_id[256];
    int32_t *byte_pair_rank;       /* [a << 8 | b]: rank of merging bytes a, b */

    /* Added-token trie: node 0 is the root. */
    int32_t *tr_child, *tr_sib, *tr_tok;
    uint8_t *tr_byte;
    size_t tr_n, tr_cap;
    uint8_t added_first[256];
};

/* ------------------------------------------------------------------ */
/* The GPT-2 byte <-> character map.                                   */

static uint16_t byte_to_cp[256];
static int16_t cp_to_byte[324];

static void build_byte_map(void) {
    int n = 0;
    for (int b = 0; b < 256; b++) {
        int printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
        byte_to_cp[b] = (uint16_t)(printable ? b : 256 + n++);
    }
    for (int i = 0; i < 324; i++) cp_to_byte[i] = -1;
    for (int b = 0; b < 256; b++) cp_to_byte[byte_to_cp[b]] = (int16_t)b;
}

/* Map a spelling to raw bytes (dst must hold len bytes).  Returns the byte
 * count, or -1 if some character is not a byte-level character. */
static long spelling_to_bytes(const char *s, size_t len, char *dst) {
    const uint8_t *u = (const uint8_t *)s;
    size_t i = 0, o = 0;
    while (i < len) {
        uint32_t cp;
        if (u[i] < 0x80) { cp = u[i]; i++; }
        else if ((u[i] & 0xE0) == 0xC0 && i + 1 < len) { cp = ((u[i] & 0x1Fu) << 6) | (u[i + 1] & 0x3Fu); i += 2; }
        else return -1;      /* byte-level characters are all below U+0800 */
        if (cp >= 324 || cp_to_byte[cp] < 0) return -1;
        dst[o++] = (char)cp_to_byte[cp];
    }
    return (long)o;
}

/* ------------------------------------------------------------------ */
/* Hashes.                                                             */

/* Word-at-a-time multiply/xorshift hash; spellings and words are short. */
static inline uint32_t hash_bytes(const char *s, size_t n) {
    uint64_t h = 0x9E3779B97F4A7C15ull ^ n;
    while (n >= 8) {
        uint64_t w;
        memcpy(&w, s, 8);
        h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
        h ^= h >> 31;
        s += 8;
        n -= 8;
    }
    uint64_t w = 0;
    for (size_t i = 0; i < n; i++) w |= (uint64_t)(uint8_t)s[i] << (8 * i);
    h = (h ^ w) * 0x94d049bb133111ebull;
    h ^= h >> 29;
    return (uint32_t)h ^ (uint32_t)(h >> 32);
}

static inline uint32_t hash_pair(uint64_t key) {
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> 32);
}

static int32_t spelling_lookup(const dsv4_tokenizer *t, const char *s, size_t n) {
    uint32_t h = hash_bytes(s, n), i = h & t->str_mask;
    for (;;) {
        uint64_t v = t->str_slots[i];
        if (!v) return -1;
        int32_t id = (int32_t)(uint32_t)v - 1;
        if ((uint32_t)(v >> 32) == h && t->spell_len[id] == n && !memcmp(t->spell_pool + t->spell_off[id], s, n))
            return id;
        i = (i + 1) & t->str_mask;
    }
}

/* Insert id under its spelling unless that spelling is taken already. */
static void spelling_insert(dsv4_tokenizer *t, int32_t id) {
    const char *s = t->spell_pool + t->spell_off[id];
    size_t n = t->spell_len[id];
    uint32_t h = hash_bytes(s, n), i = h & t->str_mask;
    for (;;) {
        uint64_t v = t->str_slots[i];
        if (!v) { t->str_slots[i] = (uint64_t)h << 32 | ((uint32_t)id + 1); return; }
        int32_t o = (int32_t)(uint32_t)v - 1;
        if ((uint32_t)(v >> 32) == h && t->spell_len[o] == n && !memcmp(t->spell_pool + t->spell_off[o], s, n))
            return;
        i = (i + 1) & t->str_mask;
    }
}

/* Rank of merging tokens a and b, or NO_MERGE. */
static inline int32_t merge_rank(const dsv4_tokenizer *t, int32_t a, int32_t b) {
    uint64_t key = ((uint64_t)(uint32_t)a << MERGE_ID_BITS) | (uint32_t)b;
    uint32_t i = hash_pair(key) & t->merge_mask;
    for (;;) {
        uint64_t m = t->merges[i];
        if (m >> MERGE_RANK_BITS == key) return (int32_t)(m & MERGE_RANK_MASK);
        if (m == MERGE_EMPTY) return NO_MERGE;
        i = (i + 1) & t->merge_mask;
    }
}

/* ------------------------------------------------------------------ */
/* Loading.                                                            */

static int pool_add(char **pool, size_t *used, size_t *cap, const char *s, size_t n, uint32_t *off) {
    if (*used + n > UINT32_MAX) return -1;
    if (*used + n > *cap) {
        size_t nc = *cap ? *cap : 1 << 20;
        while (nc < *used + n) nc *= 2;
        char *np = realloc(*pool, nc);
        if (!np) return -1;
        *pool = np;
        *cap = nc;
    }
    memcpy(*pool + *used, s, n);
    *off = (uint32_t)*used;
    *used += n;
    return 0;
}

/* Record id's spelling and raw bytes. */
static int set_token(dsv4_tokenizer *t, int32_t id, const char *s, size_t n, int kind) {
    if (n > UINT32_MAX / 2) return -1;
    if (pool_add(&t->spell_pool, &t->spell_used, &t->spell_cap, s, n, &t->spell_off[id])) return -1;
    t->spell_len[id] = (uint32_t)n;
    char small[256], *tmp = n <= sizeof small ? small : malloc(n ? n : 1);
    if (!tmp) return -1;
    long rn = spelling_to_bytes(s, n, tmp);
    int rc = rn >= 0 ? pool_add(&t->raw_pool, &t->raw_used, &t->raw_cap, tmp, (size_t)rn, &t->raw_off[id])
                     : pool_add(&t->raw_pool, &t->raw_used, &t->raw_cap, s, n, &t->raw_off[id]);
    t->raw_len[id] = (uint32_t)(rn >= 0 ? (size_t)rn : n);
    if (tmp != small) free(tmp);
    t->kind[id] = (uint8_t)kind;
    return rc;
}

static int trie_add(dsv4_tokenizer *t, const char *s, size_t n, int32_t id) {
    int32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint8_t b = (uint8_t)s[i];
        int32_t c = t->tr_child[node];
        while (c >= 0 && t->tr_byte[c] != b) c = t->tr_sib[c];
        if (c < 0) {
            if (t->tr_n == t->tr_cap) {
                size_t cap = t->tr_cap * 2;
                int32_t *a = realloc(t->tr_child, cap * sizeof *a);
                if (a) t->tr_child = a;
                int32_t *b2 = realloc(t->tr_sib, cap * sizeof *b2);
                if (b2) t->tr_sib = b2;
                int32_t *c2 = realloc(t->tr_tok, cap * sizeof *c2);
                if (c2) t->tr_tok = c2;
                uint8_t *d = realloc(t->tr_byte, cap);
                if (d) t->tr_byte = d;
                if (!a || !b2 || !c2 || !d) return -1;
                t->tr_cap = cap;
            }
            c = (int32_t)t->tr_n++;
            t->tr_byte[c] = b;
            t->tr_child[c] = -1;
            t->tr_tok[c] = -1;
            t->tr_sib[c] = t->tr_child[node];
            t->tr_child[node] = c;
        }
        node = c;
    }
    if (t->tr_tok[node] < 0) t->tr_tok[node] = id;   /* first entry wins on duplicates */
    t->added_first[(uint8_t)s[0]] = 1;
    return 0;
}

static int is_null_or_false(const tj_node *n) { return !n || n->type == TJ_NULL || n->type == TJ_FALSE; }

/* Check that the file describes exactly the tokenizer this code runs. */
static int check_pipeline(const tj_doc *d, char *err, size_t errlen) {
    const tj_node *root = tj_root(d);
    const tj_node *norm = tj_get(d, root, "normalizer");
    if (norm && norm->type != TJ_NULL) {
        const tj_node *list = tj_get(d, norm, "normalizers");
        if (!tj_str_is(tj_get(d, norm, "type"), "Sequence") || !list || list->type != TJ_ARR || list->len)
            return errf(err, errlen, "tokenizer.json: unsupported normalizer (only none is implemented)");
    }
    const tj_node *pt = tj_get(d, root, "pre_tokenizer");
    const tj_node *list = tj_get(d, pt, "pretokenizers");
    if (!tj_str_is(tj_get(d, pt, "type"), "Sequence") || !list || list->type != TJ_ARR || list->len != 4)
        return errf(err, errlen, "tokenizer.json: unsupported pre_tokenizer (expected the DeepSeek Sequence of 3 Split + ByteLevel)");
    const tj_node *p = tj_child(d, list);
    for (int i = 0; i < 3; i++, p = tj_next(d, p)) {
        const tj_node *pat = tj_get(d, tj_get(d, p, "pattern"), "Regex");
        if (!tj_str_is(tj_get(d, p, "type"), "Split") || !tj_str_is(pat, tok_pretok_patterns[i]) ||
            !tj_str_is(tj_get(d, p, "behavior"), "Isolated") || !is_null_or_false(tj_get(d, p, "invert")))
            return errf(err, errlen, "tokenizer.json: pre_tokenizer Split %d is not the DeepSeek pattern this tokenizer implements", i + 1);
    }
    if (!tj_str_is(tj_get(d, p, "type"), "ByteLevel") || !is_null_or_false(tj_get(d, p, "add_prefix_space")) ||
        !is_null_or_false(tj_get(d, p, "use_regex")))
        return errf(err, errlen, "tokenizer.json: pre_tokenizer must end with ByteLevel(add_prefix_space=false, use_regex=false)");
    const tj_node *dec = tj_get(d, root, "decoder");
    if (dec && dec->type != TJ_NULL && !tj_str_is(tj_get(d, dec, "type"), "ByteLevel"))
        return errf(err, errlen, "tokenizer.json: unsupported decoder (only ByteLevel)");
    const tj_node *model = tj_get(d, root, "model");
    if (!model || model->type != TJ_OBJ) return errf(err, errlen, "tokenizer.json: no model");
    const tj_node *type = tj_get(d, model, "type");
    if (type && !tj_str_is(type, "BPE")) return errf(err, errlen, "tokenizer.json: model type is not BPE");
    if (!is_null_or_false(tj_get(d, model, "byte_fallback")) || !is_null_or_false(tj_get(d, model, "ignore_merges")) ||
        !is_null_or_false(tj_get(d, model, "continuing_subword_prefix")) ||
        !is_null_or_false(tj_get(d, model, "end_of_word_suffix")) || !is_null_or_false(tj_get(d, model, "dropout")))
        return errf(err, errlen, "tokenizer.json: unsupported BPE options (byte_fallback/ignore_merges/prefix/suffix/dropout)");
    return 0;
}

static int as_id(const tj_node *n, int32_t *out) {
    if (!n || n->type != TJ_NUM || n->num < 0 || n->num > 16777216.0 || n->num != (double)(int32_t)n->num) return -1;
    *out = (int32_t)n->num;
    return 0;
}

static int load_merges(dsv4_tokenizer *t, const tj_doc *d, const tj_node *merges, char *err, size_t errlen) {
    uint32_t cap = 1024;
    while (cap < merges->len * 2u + 16) cap *= 2;
    t->merges = malloc((size_t)cap * sizeof *t->merges);
    if (!t->merges) return errf(err, errlen, "out of memory");
    for (uint32_t i = 0; i < cap; i++) t->merges[i] = MERGE_EMPTY;
    t->merge_mask = cap - 1;
    if (t->n_ids >= (1 << MERGE_ID_BITS) || merges->len >= MERGE_RANK_MASK)
        return errf(err, errlen, "tokenizer.json: too many tokens or merges");
    t->merge_id = malloc((merges->len + 1) * sizeof *t->merge_id);
    if (!t->merge_id) return errf(err, errlen, "out of memory");
    char buf[1024];
    int32_t rank = 0;
    for (const tj_node *m = tj_child(d, merges); m; m = tj_next(d, m), rank++) {
        const char *a, *b;
        size_t al, bl;
        if (m->type == TJ_STR) {                 /* "left right" */
            const char *sp = memchr(m->str, ' ', m->len);
            if (!sp) return errf(err, errlen, "tokenizer.json: merge %d has no space", rank);
            a = m->str; al = (size_t)(sp - m->str);
            b = sp + 1; bl = m->len - al - 1;
        } else if (m->type == TJ_ARR && m->len == 2 && tj_child(d, m)->type == TJ_STR &&
                   tj_next(d, tj_child(d, m))->type == TJ_STR) {   /* ["left", "right"] */
            a = tj_child(d, m)->str; al = tj_child(d, m)->len;
            b = tj_next(d, tj_child(d, m))->str; bl = tj_next(d, tj_child(d, m))->len;
        } else {
            return errf(err, errlen, "tokenizer.json: merge %d is malformed", rank);
        }
        if (al + bl > sizeof buf) return errf(err, errlen, "tokenizer.json: merge %d too long", rank);
        int32_t ia = spelling_lookup(t, a, al), ib = spelling_lookup(t, b, bl);
        memcpy(buf, a, al);
        memcpy(buf + al, b, bl);
        int32_t im = spelling_lookup(t, buf, al + bl);
        if (ia < 0 || ib < 0 || im < 0)
            return errf(err, errlen, "tokenizer.json: merge %d (\"%.*s\" + \"%.*s\") names a token not in the vocabulary",
                        rank, (int)(al < 64 ? al : 64), a, (int)(bl < 64 ? bl : 64), b);
        uint64_t key = ((uint64_t)(uint32_t)ia << MERGE_ID_BITS) | (uint32_t)ib;
        uint32_t h = hash_pair(key) & t->merge_mask;
        while (t->merges[h] != MERGE_EMPTY && t->merges[h] >> MERGE_RANK_BITS != key) h = (h + 1) & t->merge_mask;
        t->merge_id[rank] = im;
        if (t->merges[h] == MERGE_EMPTY)         /* a repeated pair keeps its first (lowest) rank */
            t->merges[h] = key << MERGE_RANK_BITS | (uint32_t)rank;
    }
    return 0;
}

static int build(dsv4_tokenizer *t, const tj_doc *d, char *err, size_t errlen) {
    if (check_pipeline(d, err, errlen)) return -1;
    const tj_node *root = tj_root(d);
    const tj_node *model = tj_get(d, root, "model");
    const tj_node *vocab = tj_get(d, model, "vocab");
    const tj_node *merges = tj_get(d, model, "merges");
    const tj_node *added = tj_get(d, root, "added_tokens");
    if (!vocab || vocab->type != TJ_OBJ) return errf(err, errlen, "tokenizer.json: model.vocab missing or not an object");
    if (!merges || merges->type != TJ_ARR) return errf(err, errlen, "tokenizer.json: model.merges missing or not an array");
    if (added && added->type != TJ_ARR) return errf(err, errlen, "tokenizer.json: added_tokens is not an array");

    /* Size the id space. */
    int32_t max_id = -1, id;
    for (const tj_node *v = tj_child(d, vocab); v; v = tj_next(d, v)) {
        if (as_id(v, &id)) return errf(err, errlen, "tokenizer.json: vocab entry \"%.*s\" has a bad id", (int)(v->key_len < 64 ? v->key_len : 64), tj_key(d, v));
        if (id > max_id) max_id = id;
    }
    for (const tj_node *a = added ? tj_child(d, added) : NULL; a; a = tj_next(d, a)) {
        const tj_node *content = tj_get(d, a, "content");
        if (as_id(tj_get(d, a, "id"), &id) || !content || content->type != TJ_STR || !content->len)
            return errf(err, errlen, "tokenizer.json: malformed added_tokens entry");
        if (!is_null_or_false(tj_get(d, a, "lstrip")) || !is_null_or_false(tj_get(d, a, "rstrip")) ||
            !is_null_or_false(tj_get(d, a, "single_word")))
            return errf(err, errlen, "tokenizer.json: added token %d uses lstrip/rstrip/single_word (unsupported)", id);
        if (id > max_id) max_id = id;
    }
    if (max_id < 0) return errf(err, errlen, "tokenizer.json: empty vocabulary");
    t->n_ids = max_id + 1;
    size_t n = (size_t)t->n_ids;
    t->kind = calloc(n, 1);
    t->spell_off = calloc(n, sizeof *t->spell_off);
    t->spell_len = calloc(n, sizeof *t->spell_len);
    t->raw_off = calloc(n, sizeof *t->raw_off);
    t->raw_len = calloc(n, sizeof *t->raw_len);
    uint32_t cap = 1024;
    while (cap < (vocab->len + (added ? added->len : 0)) * 2u + 16) cap *= 2;
    t->str_slots = calloc(cap, sizeof *t->str_slots);
    t->str_mask = cap - 1;
    t->tr_cap = 4096;
    t->tr_child = malloc(t->tr_cap * sizeof *t->tr_child);
    t->tr_sib = malloc(t->tr_cap * sizeof *t->tr_sib);
    t->tr_tok = malloc(t->tr_cap * sizeof *t->tr_tok);
    t->tr_byte = malloc(t->tr_cap);
    if (!t->kind || !t->spell_off || !t->spell_len || !t->raw_off || !t->raw_len || !t->str_slots ||
        !t->tr_child || !t->tr_sib || !t->tr_tok || !t->tr_byte)
        return errf(err, errlen, "out of memory");
    t->tr_n = 1;
    t->tr_child[0] = t->tr_sib[0] = t->tr_tok[0] = -1;
    t->tr_byte[0] = 0;

    /* Added tokens first: their spelling wins in lookups, as in HF. */
    for (const tj_node *a = added ? tj_child(d, added) : NULL; a; a = tj_next(d, a)) {
        const tj_node *content = tj_get(d, a, "content");
        as_id(tj_get(d, a, "id"), &id);
        int kind = K_ADDED | (tj_get(d, a, "special") && tj_get(d, a, "special")->type == TJ_TRUE ? K_SPECIAL_FLAG : 0);
        if (t->kind[id] & K_ADDED) return errf(err, errlen, "tokenizer.json: added token id %d appears twice", id);
        if (set_token(t, id, content->str, content->len, kind) || trie_add(t, content->str, content->len, id))
            return errf(err, errlen, "out of memory");
        spelling_insert(t, id);
    }
    for (const tj_node *v = tj_child(d, vocab); v; v = tj_next(d, v)) {
        as_id(v, &id);
        if (t->kind[id] & K_ADDED) continue;     /* the added entry owns the id */
        if (t->kind[id]) return errf(err, errlen, "tokenizer.json: vocab id %d appears twice", id);
        if (set_token(t, id, tj_key(d, v), v->key_len, K_VOCAB)) return errf(err, errlen, "out of memory");
        spelling_insert(t, id);
    }
    for (int b = 0; b < 256; b++) {
        char sp[3];
        size_t sl;
        uint16_t cp = byte_to_cp[b];
        if (cp < 0x80) { sp[0] = (char)cp; sl = 1; }
        else { sp[0] = (char)(0xC0 | (cp >> 6)); sp[1] = (char)(0x80 | (cp & 0x3F)); sl = 2; }
        t->byte_id[b] = spelling_lookup(t, sp, sl);
        if (t->byte_id[b] < 0 || !(t->kind[t->byte_id[b]] & K_VOCAB))
            return errf(err, errlen, "tokenizer.json: the vocabulary lacks the byte-level token for byte 0x%02x", b);
    }
    if (load_merges(t, d, merges, err, errlen)) return -1;
    /* First merges of every word are between single bytes: a direct table
     * saves a hash probe for each. */
    t->byte_pair_rank = malloc(65536 * sizeof *t->byte_pair_rank);
    if (!t->byte_pair_rank) return errf(err, errlen, "out of memory");
    for (int a = 0; a < 256; a++)
        for (int b = 0; b < 256; b++) t->byte_pair_rank[a << 8 | b] = merge_rank(t, t->byte_id[a], t->byte_id[b]);
    return 0;
}

static dsv4_tokenizer *load_doc(tj_doc *d, char *err, size_t errlen) {
    dsv4_tokenizer *t = calloc(1, sizeof *t);
    if (!t) { tj_free(d); errf(err, errlen, "out of memory"); return NULL; }
    int rc = d->nodes[0].type == TJ_OBJ ? build(t, d, err, errlen)
                                       : errf(err, errlen, "tokenizer.json: top level is not an object");
    tj_free(d);
    if (rc) { dsv4_tokenizer_free(t); return NULL; }
    return t;
}

static void init_tables(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, build_byte_map);
    tu_init();
}

dsv4_tokenizer *dsv4_tokenizer_load_mem(const char *json, size_t len, char *err, size_t errlen) {
    init_tables();
    tj_doc d;
    if (tj_parse(&d, json, len, err, errlen)) return NULL;
    return load_doc(&d, err, errlen);
}

/* Read a whole file in one go (sized with fstat), NUL-terminated. */
static char *slurp(const char *path, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { errf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        close(fd);
        return read_file(path, len, err, errlen);     /* pipes and the like */
    }
    size_t n = (size_t)st.st_size, got = 0;
    char *buf = malloc(n + 1);
    if (!buf) { close(fd); errf(err, errlen, "%s: out of memory", path); return NULL; }
    while (got < n) {
        ssize_t r = read(fd, buf + got, n - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        got += (size_t)r;
    }
    close(fd);
    if (got != n) { free(buf); errf(err, errlen, "%s: read error", path); return NULL; }
    buf[n] = 0;
    *len = n;
    return buf;
}

dsv4_tokenizer *dsv4_tokenizer_load(const char *path, char *err, size_t errlen) {
    init_tables();
    size_t len;
    char *buf = slurp(path, &len, err, errlen);
    if (!buf) return NULL;
    char sub[512];
    tj_doc d;
    dsv4_tokenizer *t = NULL;
    if (!tj_parse_owned(&d, buf, len, sub, sizeof sub)) t = load_doc(&d, sub, sizeof sub);
    if (!t) errf(err, errlen, "%s: %s", path, sub);
    return t;
}

void dsv4_tokenizer_free(dsv4_tokenizer *t) {
    if (!t) return;
    free(t->kind);
    free(t->spell_off); free(t->spell_len); free(t->raw_off); free(t->raw_len);
    free(t->spell_pool); free(t->raw_pool);
    free(t->str_slots);
    free(t->merges);
    free(t->merge_id);
    free(t->byte_pair_rank);
    free(t->tr_child); free(t->tr_sib); free(t->tr_tok); free(t->tr_byte);
    free(t);
}

int dsv4_tokenizer_vocab_size(const dsv4_tokenizer *t) { return t->n_ids; }

/* ------------------------------------------------------------------ */
/* Encoding.                                                           */

typedef struct {
    uint32_t hash, len, off;   /* key: text[off..off+len) of the call */
    uint32_t ids_off, n_ids;   /* value: cache_ids[ids_off..+n_ids) */
} cache_slot;

typedef struct {
    const dsv4_tokenizer *t;
    const char *text;
    int32_t *ids;
    size_t n, cap;
    int oom;
    /* BPE work space for long words. */
    int32_t *w_id, *w_prev, *w_next;
    void *w_heap;
    size_t w_cap;
    /* Word cache (long texts only). */
    cache_slot *cache;
    uint32_t cache_mask, cache_used;
    int32_t *cache_ids;
    size_t cache_ids_n, cache_ids_cap;
} enc_ctx;

static int emit_ids(enc_ctx *c, const int32_t *ids, size_t n) {
    if (c->n + n > c->cap) {
        size_t cap = c->cap ? c->cap : 256;
        while (cap < c->n + n) cap *= 2;
        int32_t *p = realloc(c->ids, cap * sizeof *p);
        if (!p) { c->oom = 1; return -1; }
        c->ids = p;
        c->cap = cap;
    }
    memcpy(c->ids + c->n, ids, n * sizeof *ids);
    c->n += n;
    return 0;
}

/* BPE by repeated scans over an array holding each adjacent pair's rank.
 * ids[0..n) holds the byte tokens on entry; returns the final count. */
#define SMALL_WORD TOK_SMALL_WORD
static size_t bpe_small(const dsv4_tokenizer *t, const uint8_t *s, int32_t *ids, size_t n) {
    int32_t rank[SMALL_WORD];
    for (size_t i = 0; i + 1 < n; i++) rank[i] = t->byte_pair_rank[(unsigned)s[i] << 8 | s[i + 1]];
    while (n > 1) {
        size_t best = 0;
        for (size_t i = 1; i + 1 < n; i++)
            if (rank[i] < rank[best]) best = i;
        if (rank[best] == NO_MERGE) break;
        ids[best] = t->merge_id[rank[best]];
        size_t tail = n - best - 2;   /* symbols after the removed one */
        memmove(ids + best + 1, ids + best + 2, tail * sizeof *ids);
        if (tail > 1) memmove(rank + best + 1, rank + best + 2, (tail - 1) * sizeof *rank);
        n--;
        if (best > 0) rank[best - 1] = merge_rank(t, ids[best - 1], ids[best]);
        if (best + 1 < n) rank[best] = merge_rank(t, ids[best], ids[best + 1]);
    }
    return n;
}

/* BPE for long words: symbols in a linked list, candidate merges in a
 * binary min-heap ordered by (rank, position).  Stale entries (a symbol
 * that changed since the push) are skipped when popped. */
typedef struct { int32_t rank, pos, left, right, merged; } heap_ent;

static inline int heap_less(const heap_ent *a, const heap_ent *b) {
    return a->rank < b->rank || (a->rank == b->rank && a->pos < b->pos);
}

static void heap_push(heap_ent *h, size_t *n, heap_ent e) {
    size_t i = (*n)++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_less(&e, &h[p])) break;
        h[i] = h[p];
        i = p;
    }
    h[i] = e;
}

static heap_ent heap_pop(heap_ent *h, size_t *n) {
    heap_ent top = h[0], last = h[--(*n)];
    size_t i = 0;
    for (;;) {
        size_t l = 2 * i + 1, r = l + 1, m = i;
        const heap_ent *mv = &last;
        if (l < *n && heap_less(&h[l], mv)) { m = l; mv = &h[l]; }
        if (r < *n && heap_less(&h[r], mv)) { m = r; }
        if (m == i) break;
        h[i] = h[m];
        i = m;
    }
    if (*n) h[i] = last;
    return top;
}

static void push_pair(const dsv4_tokenizer *t, heap_ent *h, size_t *hn, const int32_t *id, int32_t i, int32_t j) {
    if (i < 0 || j < 0) return;
    int32_t r = merge_rank(t, id[i], id[j]);
    if (r != NO_MERGE) heap_push(h, hn, (heap_ent){r, i, id[i], id[j], t->merge_id[r]});
}

static int bpe_large(enc_ctx *c, const uint8_t *s, size_t n) {
    const dsv4_tokenizer *t = c->t;
    if (n > c->w_cap) {
        size_t cap = n * 2;
        free(c->w_id); free(c->w_prev); free(c->w_next); free(c->w_heap);
        c->w_id = malloc(cap * sizeof(int32_t));
        c->w_prev = malloc(cap * sizeof(int32_t));
        c->w_next = malloc(cap * sizeof(int32_t));
        c->w_heap = malloc(cap * 2 * sizeof(heap_ent));   /* at most 2 pushes per merge + initial */
        if (!c->w_id || !c->w_prev || !c->w_next || !c->w_heap || n > INT32_MAX / 4) {
            c->w_cap = 0;
            c->oom = 1;
            return -1;
        }
        c->w_cap = cap;
    }
    int32_t *id = c->w_id, *prev = c->w_prev, *next = c->w_next;
    heap_ent *h = c->w_heap;
    size_t hn = 0;
    for (size_t i = 0; i < n; i++) {
        id[i] = t->byte_id[s[i]];
        prev[i] = (int32_t)i - 1;
        next[i] = i + 1 < n ? (int32_t)i + 1 : -1;
    }
    for (size_t i = 0; i + 1 < n; i++) push_pair(t, h, &hn, id, (int32_t)i, (int32_t)i + 1);
    while (hn) {
        heap_ent e = heap_pop(h, &hn);
        int32_t i = e.pos, j = next[i];
        if (id[i] != e.left || j < 0 || id[j] != e.right) continue;   /* stale */
        id[i] = e.merged;
        id[j] = -1;
        next[i] = next[j];
        if (next[j] >= 0) prev[next[j]] = i;
        push_pair(t, h, &hn, id, prev[i], i);
        push_pair(t, h, &hn, id, i, next[i]);
    }
    /* Compact the survivors in order. */
    size_t m = 0;
    for (int32_t i = 0; i >= 0; i = next[i]) id[m++] = id[i];
    return emit_ids(c, id, m);
}

static int bpe_word(enc_ctx *c, const uint8_t *s, size_t n) {
    if (n <= SMALL_WORD) {
        int32_t ids[SMALL_WORD];
        for (size_t i = 0; i < n; i++) ids[i] = c->t->byte_id[s[i]];
        size_t m = n > 1 ? bpe_small(c->t, s, ids, n) : n;
        return emit_ids(c, ids, m);
    }
    return bpe_large(c, s, n);
}

/* Per-call cache of word -> ids, used for long texts where words repeat. */
#define CACHE_MAX_WORD 32
#define CACHE_MIN_TEXT 2048

static void on_piece(void *ctx, const char *s, size_t n) {
    enc_ctx *c = ctx;
    if (c->oom) return;
    if (!c->cache || n > CACHE_MAX_WORD || n < 2) { bpe_word(c, (const uint8_t *)s, n); return; }
    uint32_t h = hash_bytes(s, n), i = h & c->cache_mask;
    for (;;) {
        cache_slot *e = &c->cache[i];
        if (!e->len) break;
        if (e->hash == h && e->len == n && !memcmp(c->text + e->off, s, n)) {
            emit_ids(c, c->cache_ids + e->ids_off, e->n_ids);
            return;
        }
        i = (i + 1) & c->cache_mask;
    }
    size_t before = c->n;
    if (bpe_word(c, (const uint8_t *)s, n)) return;
    /* Remember it while the table is at most half full. */
    if (c->cache_used * 2 > c->cache_mask) return;
    size_t k = c->n - before;
    if (c->cache_ids_n + k > c->cache_ids_cap) {
        size_t cap = c->cache_ids_cap ? c->cache_ids_cap * 2 : 4096;
        int32_t *p = realloc(c->cache_ids, cap * sizeof *p);
        if (!p) return;
        c->cache_ids = p;
        c->cache_ids_cap = cap;
    }
    memcpy(c->cache_ids + c->cache_ids_n, c->ids + before, k * sizeof(int32_t));
    c->cache[i] = (cache_slot){h, (uint32_t)n, (uint32_t)(s - c->text), (uint32_t)c->cache_ids_n, (uint32_t)k};
    c->cache_ids_n += k;
    c->cache_used++;
}

/* Longest added token starting at text[pos], or -1; *end gets its end. */
static int32_t match_added(const dsv4_tokenizer *t, const uint8_t *s, size_t pos, size_t len, size_t *end) {
    int32_t node = 0, best = -1;
    for (size_t k = pos; k < len; k++) {
        int32_t c = t->tr_child[node];
        while (c >= 0 && t->tr_byte[c] != s[k]) c = t->tr_sib[c];
        if (c < 0) break;
        node = c;
        if (t->tr_tok[node] >= 0) { best = t->tr_tok[node]; *end = k + 1; }
    }
    return best;
}

int dsv4_tokenize_ex(const dsv4_tokenizer *t, const char *text, size_t len, int flags,
                     int32_t **ids, size_t *n_ids) {
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.text = text;
    *ids = NULL;
    *n_ids = 0;
    if (len >= CACHE_MIN_TEXT && len < UINT32_MAX) {
        uint32_t cap = 1024;
        while (cap < len / 8 && cap < (1u << 20)) cap *= 2;
        c.cache = calloc(cap, sizeof *c.cache);
        c.cache_mask = cap - 1;
    }
    const uint8_t *s = (const uint8_t *)text;
    size_t seg = 0, pos = 0;
    if (!(flags & DSV4_TOK_NO_SPECIAL)) {
        while (pos < len) {
            if (!t->added_first[s[pos]]) { pos++; continue; }
            size_t end;
            int32_t id = match_added(t, s, pos, len, &end);
            if (id < 0) { pos++; continue; }
            if (seg < pos) tok_pretokenize(text + seg, pos - seg, on_piece, &c);
            emit_ids(&c, &id, 1);
            pos = seg = end;
        }
    }
    if (seg < len) tok_pretokenize(text + seg, len - seg, on_piece, &c);
    free(c.w_id); free(c.w_prev); free(c.w_next); free(c.w_heap);
    free(c.cache); free(c.cache_ids);
    if (c.oom) { free(c.ids); return -1; }
    if (!c.ids) c.ids = malloc(sizeof(int32_t));   /* a valid pointer even when empty */
    if (!c.ids) return -1;
    *ids = c.ids;
    *n_ids = c.n;
    return 0;
}

int dsv4_tokenize(const dsv4_tokenizer *t, const char *text, size_t len, int32_t **ids, size_t *n_ids) {
    return dsv4_tokenize_ex(t, text, len, 0, ids, n_ids);
}

/* ------------------------------------------------------------------ */
/* Decoding.                                                           */

const char *dsv4_token_bytes(const dsv4_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->kind[id]) return NULL;
    *len = t->raw_len[id];
    return t->raw_pool ? t->raw_pool + t->raw_off[id] : "";
}

int dsv4_token_is_special(const dsv4_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->kind[id] & K_ADDED);
}

int dsv4_token_special_flag(const dsv4_tokenizer *t, int32_t id) {
    return id >= 0 && id < t->n_ids && (t->kind[id] & K_SPECIAL_FLAG);
}

int32_t dsv4_token_id(const dsv4_tokenizer *t, const char *token) {
    return spelling_lookup(t, token, strlen(token));
}

const char *dsv4_token_spelling(const dsv4_tokenizer *t, int32_t id, size_t *len) {
    if (id < 0 || id >= t->n_ids || !t->kind[id]) return NULL;
    *len = t->spell_len[id];
    return t->spell_pool + t->spell_off[id];
}

int dsv4_detokenize(const dsv4_tokenizer *t, const int32_t *ids, size_t n, char **out, size_t *out_len) {
    size_t total = 0, l;
    *out = NULL;
    *out_len = 0;
    for (size_t i = 0; i < n; i++) {
        if (!dsv4_token_bytes(t, ids[i], &l)) return -1;
        total += l;
    }
    char *buf = malloc(total + 1), *w = buf;
    if (!buf) return -1;
    for (size_t i = 0; i < n; i++) {
        const char *b = dsv4_token_bytes(t, ids[i], &l);
        memcpy(w, b, l);
        w += l;
    }
    *w = 0;
    *out = buf;
    *out_len = total;
    return 0;
}

/* ------------------------------------------------------------------ */
/* Streaming decoder.                                                  */

struct dsv4_detok_stream {
    const dsv4_tokenizer *t;
    char *buf;            /* held bytes (an unfinished UTF-8 character) + new bytes */
    size_t len, cap;
    char *out;            /* what the last call released */
    size_t out_cap;
};

dsv4_detok_stream *dsv4_detok_stream_new(const dsv4_tokenizer *t) {
    dsv4_detok_stream *s = calloc(1, sizeof *s);
    if (s) s->t = t;
    return s;
}

void dsv4_detok_stream_free(dsv4_detok_stream *s) {
    if (!s) return;
    free(s->buf);
    free(s->out);
    free(s);
}

/* Number of bytes at the end of b[0..n) that begin a UTF-8 character which
 * is well-formed so far but not finished; 0 if there is none. */
static size_t unfinished_tail(const uint8_t *b, size_t n) {
    for (size_t back = 1; back <= 3 && back <= n; back++) {
        uint8_t c = b[n - back];
        if ((c & 0xC0) == 0x80) continue;       /* continuation: look further back */
        size_t need = c >= 0xC2 && c <= 0xDF ? 2 : c >= 0xE0 && c <= 0xEF ? 3 : c >= 0xF0 && c <= 0xF4 ? 4 : 0;
        if (need <= back) return 0;             /* ASCII, invalid lead, or complete */
        if (back >= 2) {                        /* second byte's range depends on the lead */
            uint8_t c1 = b[n - back + 1];
            uint8_t lo = 0x80, hi = 0xBF;
            if (c == 0xE0) lo = 0xA0;
            else if (c == 0xED) hi = 0x9F;
            else if (c == 0xF0) lo = 0x90;
            else if (c == 0xF4) hi = 0x8F;
            if (c1 < lo || c1 > hi) return 0;
        }
        return back;
    }
    return 0;
}

static int release(dsv4_detok_stream *s, size_t keep, const char **out, size_t *out_len) {
    size_t give = s->len - keep;
    if (give + 1 > s->out_cap) {
        size_t cap = s->out_cap ? s->out_cap : 64;
        while (cap < give + 1) cap *= 2;
        char *p = realloc(s->out, cap);
        if (!p) return -1;
        s->out = p;
        s->out_cap = cap;
    }
    if (!s->out) {
        s->out = malloc(64);
        if (!s->out) return -1;
        s->out_cap = 64;
    }
    if (give) memcpy(s->out, s->buf, give);
    s->out[give] = 0;
    if (give && keep) memmove(s->buf, s->buf + give, keep);
    s->len = keep;
    *out = s->out;
    *out_len = give;
    return 0;
}

int dsv4_detok_stream_push(dsv4_detok_stream *s, int32_t id, const char **out, size_t *out_len) {
    size_t l;
    const char *b = dsv4_token_bytes(s->t, id, &l);
    *out = "";
    *out_len = 0;
    if (!b) return -1;
    if (s->len + l > s->cap) {
        size_t cap = s->cap ? s->cap : 64;
        while (cap < s->len + l) cap *= 2;
        char *p = realloc(s->buf, cap);
        if (!p) return -1;
        s->buf = p;
        s->cap = cap;
    }
    memcpy(s->buf + s->len, b, l);
    s->len += l;
    return release(s, unfinished_tail((const uint8_t *)s->buf, s->len), out, out_len);
}

int dsv4_detok_stream_flush(dsv4_detok_stream *s, const char **out, size_t *out_len) {
    return release(s, 0, out, out_len);
}

/* ------------------------------------------------------------------ */
/* Test hook (tok_internal.h).                                         */

int tok_debug_bpe(const dsv4_tokenizer *t, const char *s, size_t len, int use_heap,
                  int32_t **ids, size_t *n_ids) {
    enc_ctx c;
    memset(&c, 0, sizeof c);
    c.t = t;
    c.text = s;
    int rc = 0;
    if (use_heap) rc = len ? bpe_large(&c, (const uint8_t *)s, len) : 0;
    else if (len <= SMALL_WORD) rc = bpe_word(&c, (const uint8_t *)s, len);
    else rc = -1;
    free(c.w_id); free(c.w_prev); free(c.w_next); free(c.w_heap);
    if (rc || c.oom) { free(c.ids); return -1; }
    *ids = c.ids;
    *n_ids = c.n;
    return 0;
}
