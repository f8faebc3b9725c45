/*
 * tok_pretok.c - see tok_pretok.h.  Three nested passes, one per Split:
 * split_numbers -> split_cjk -> split_words -> the caller's callback.
 */
#include "text/tok_pretok.h"
#include "text/tok_unicode.h"

#include <stdint.h>

const char *const tok_pretok_patterns[3] = {
    "\\p{N}{1,3}",
    "[\xe4\xb8\x80-\xe9\xbe\xa5\xe3\x81\x80-\xe3\x82\x9f\xe3\x82\xa0-\xe3\x83\xbf]+",
    "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+"
    "|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
    "| ?[\\p{P}\\p{S}]+[\r\n]*"
    "|\\s*[\r\n]+"
    "|\\s+(?!\\S)"
    "|\\s+",
};

typedef struct {
    const uint8_t *s;
    tok_piece_fn fn;
    void *ctx;
} pretok;

static inline int ascii_alpha(uint8_t c) { return (uint8_t)((c | 0x20) - 'a') < 26; }
/* The literal class of the first alternative: ASCII punctuation/symbols. */
static inline int ascii_punct(uint8_t c) {
    return (c >= 0x21 && c <= 0x2F) || (c >= 0x3A && c <= 0x40) || (c >= 0x5B && c <= 0x60) ||
           (c >= 0x7B && c <= 0x7E);
}

/* End of the run of characters having any class in `want`, from i. */
static inline size_t run_of(const uint8_t *s, size_t i, size_t end, uint8_t want) {
    while (i < end) {
        uint8_t c;
        size_t n = tu_next(s, i, end, &c);
        if (!(c & want)) break;
        i += n;
    }
    return i;
}

/* The third regex at position pos of the piece [.., end): end of the match,
 * or 0 if no alternative matches here.  Each block mirrors one alternative
 * including how Oniguruma backtracks through it. */
static size_t match_word(const uint8_t *s, size_t pos, size_t end) {
    uint8_t b0 = s[pos];
    /* [!"#...~][A-Za-z]+ */
    if (ascii_punct(b0) && pos + 1 < end && ascii_alpha(s[pos + 1])) {
        size_t p = pos + 2;
        while (p < end && ascii_alpha(s[p])) p++;
        return p;
    }
    uint8_t c0;
    size_t n0 = tu_next(s, pos, end, &c0);
    /* [^\r\n\p{L}\p{P}\p{S}]?[\p{L}\p{M}]+ : the optional prefix is tried
     * first, then the run alone. */
    if (!(c0 & (TU_CRLF | TU_L | TU_P | TU_S)) && pos + n0 < end) {
        uint8_t c1;
        size_t n1 = tu_next(s, pos + n0, end, &c1);
        if (c1 & (TU_L | TU_M)) return run_of(s, pos + n0 + n1, end, TU_L | TU_M);
    }
    if (c0 & (TU_L | TU_M)) return run_of(s, pos + n0, end, TU_L | TU_M);
    /* ' ?[\p{P}\p{S}]+[\r\n]*' : with the space, or (backtracking) without,
     * which cannot match at a space. */
    size_t p = pos;
    uint8_t cp = c0;
    if (b0 == ' ' && pos + 1 < end) {
        p = pos + 1;
        tu_next(s, p, end, &cp);
    }
    if (cp & (TU_P | TU_S)) {
        p = run_of(s, p, end, TU_P | TU_S);
        while (p < end && (s[p] == '\r' || s[p] == '\n')) p++;
        return p;
    }
    if (!(c0 & TU_WS)) return 0;
    /* Whitespace run W = [pos, w_end). */
    size_t w_end = pos, last_nl = SIZE_MAX, last_start = pos, nchars = 0;
    while (w_end < end) {
        uint8_t c;
        size_t n = tu_next(s, w_end, end, &c);
        if (!(c & TU_WS)) break;
        if (c & TU_CRLF) last_nl = w_end;
        last_start = w_end;
        w_end += n;
        nchars++;
    }
    /* \s*[\r\n]+ : \s* gives back characters until a \r or \n follows;
     * that is the last one in W, and [\r\n]+ takes just it. */
    if (last_nl != SIZE_MAX) return last_nl + 1;
    /* \s+(?!\S) : all of W at the piece's end, else W less its last
     * character (which then is the whitespace that follows). */
    if (w_end == end) return end;
    if (nchars >= 2) return last_start;
    /* \s+ */
    return w_end;
}

static void split_words(const pretok *pt, size_t b, size_t e) {
    const uint8_t *s = pt->s;
    size_t pos = b, gap = b;
    while (pos < e) {
        size_t m = match_word(s, pos, e);
        if (m) {
            if (gap < pos) pt->fn(pt->ctx, (const char *)s + gap, pos - gap);
            pt->fn(pt->ctx, (const char *)s + pos, m - pos);
            pos = gap = m;
        } else {
            uint8_t c;
            pos += tu_next(s, pos, e, &c);
        }
    }
    if (gap < e) pt->fn(pt->ctx, (const char *)s + gap, e - gap);
}

/* Split 2: runs of CJK/kana characters are pieces of their own. */
static void split_cjk(const pretok *pt, size_t b, size_t e) {
    const uint8_t *s = pt->s;
    size_t pos = b, gap = b;
    while (pos < e) {
        if (s[pos] < 0xE3) {          /* every CJK/kana character starts E3..E9 */
            pos++;
            continue;
        }
        uint8_t c;
        size_t n = tu_next(s, pos, e, &c);
        if (!(c & TU_CJK)) { pos += n; continue; }
        size_t r = run_of(s, pos + n, e, TU_CJK);
        if (gap < pos) split_words(pt, gap, pos);
        split_words(pt, pos, r);
        pos = gap = r;
    }
    if (gap < e) split_words(pt, gap, e);
}

/* Split 1: each run of \p{N} is cut into pieces of three characters from
 * its left end. */
static void split_numbers(const pretok *pt, size_t b, size_t e) {
    const uint8_t *s = pt->s;
    size_t pos = b, gap = b;
    while (pos < e) {
        if (s[pos] < 0x80 && (uint8_t)(s[pos] - '0') > 9) { pos++; continue; }   /* ASCII non-digit */
        uint8_t c;
        size_t n = tu_next(s, pos, e, &c);
        if (!(c & TU_N)) { pos += n; continue; }
        if (gap < pos) split_cjk(pt, gap, pos);
        size_t q = pos + n;
        for (int k = 1; k < 3 && q < e; k++) {
            size_t m = tu_next(s, q, e, &c);
            if (!(c & TU_N)) break;
            q += m;
        }
        split_cjk(pt, pos, q);
        pos = gap = q;
    }
    if (gap < e) split_cjk(pt, gap, e);
}

void tok_pretokenize(const char *text, size_t len, tok_piece_fn fn, void *ctx) {
    tu_init();
    pretok pt = {(const uint8_t *)text, fn, ctx};
    split_numbers(&pt, 0, len);
}
