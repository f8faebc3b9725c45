/*
 * tok_unicode.h - the character classes the DeepSeek pre-tokenizer needs,
 * and a UTF-8 decoder that never fails.
 *
 * Classes are Unicode general categories (L, M, N, P, S from utf8proc),
 * Oniguruma's \s (the White_Space property: U+0009-000D, U+0020, U+0085,
 * U+00A0, U+1680, U+2000-200A, U+2028, U+2029, U+202F, U+205F, U+3000),
 * the CJK/kana ranges of the second Split, and \r / \n.  The BMP is looked
 * up in a 64 KiB table filled once; astral code points ask utf8proc.
 *
 * Invalid UTF-8: every byte that does not start a complete, well-formed
 * sequence (overlong forms, surrogates and values above U+10FFFF are
 * ill-formed) is one character of its own with no class at all, like an
 * unassigned code point.  That keeps any byte string tokenisable and lets
 * the byte-level BPE give every byte back on decode.
 */
#ifndef DSV4_TOK_UNICODE_H
#define DSV4_TOK_UNICODE_H

#include <stddef.h>
#include <stdint.h>

enum {
    TU_L = 1,      /* \p{L} letter */
    TU_M = 2,      /* \p{M} mark */
    TU_N = 4,      /* \p{N} number */
    TU_P = 8,      /* \p{P} punctuation */
    TU_S = 16,     /* \p{S} symbol */
    TU_WS = 32,    /* \s (Oniguruma / White_Space) */
    TU_CJK = 64,   /* [一-龥぀-ゟ゠-ヿ]: U+4E00-9FA5, U+3040-30FF */
    TU_CRLF = 128, /* \r or \n */
};

extern uint8_t tu_bmp[65536];
extern const uint8_t tu_ascii[128];

/* Fill tu_bmp (thread-safe, idempotent). */
void tu_init(void);
/* Classes of any code point (tu_init must have run). */
uint8_t tu_class(uint32_t cp);

/* Decode the character at s[i] (i < end): returns its length in bytes
 * (1 for an invalid byte) and its classes in *cls. */
static inline size_t tu_next(const uint8_t *s, size_t i, size_t end, uint8_t *cls) {
    uint8_t b = s[i];
    if (b < 0x80) { *cls = tu_ascii[b]; return 1; }
    size_t avail = end - i;
    if (b >= 0xC2 && b <= 0xDF) {
        if (avail >= 2 && (s[i + 1] & 0xC0) == 0x80) {
            *cls = tu_bmp[((uint32_t)(b & 0x1F) << 6) | (s[i + 1] & 0x3F)];
            return 2;
        }
    } else if (b >= 0xE0 && b <= 0xEF) {
        if (avail >= 3 && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(b & 0x0F) << 12) | ((uint32_t)(s[i + 1] & 0x3F) << 6) | (s[i + 2] & 0x3F);
            if (cp >= 0x800 && (cp < 0xD800 || cp > 0xDFFF)) { *cls = tu_bmp[cp]; return 3; }
        }
    } else if (b >= 0xF0 && b <= 0xF4) {
        if (avail >= 4 && (s[i + 1] & 0xC0) == 0x80 && (s[i + 2] & 0xC0) == 0x80 && (s[i + 3] & 0xC0) == 0x80) {
            uint32_t cp = ((uint32_t)(b & 0x07) << 18) | ((uint32_t)(s[i + 1] & 0x3F) << 12) |
                          ((uint32_t)(s[i + 2] & 0x3F) << 6) | (s[i + 3] & 0x3F);
            if (cp >= 0x10000 && cp <= 0x10FFFF) { *cls = tu_class(cp); return 4; }
        }
    }
    *cls = 0;
    return 1;
}

/* Length of the well-formed UTF-8 character at s[i], or 0 if the bytes
 * there are not one (used by the streaming decoder). */
size_t tu_valid_len(const uint8_t *s, size_t avail);

#endif
