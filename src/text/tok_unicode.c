/*
 * tok_unicode.c - see tok_unicode.h.
 */
#include "text/tok_unicode.h"

#include <pthread.h>
#include <utf8proc.h>

uint8_t tu_bmp[65536];

#define L_ TU_L
#define N_ TU_N
#define P_ TU_P
#define S_ TU_S
#define W_ TU_WS
#define C_ (TU_WS | TU_CRLF)
/* ASCII classes, written out so the hot path needs no lookup call. */
const uint8_t tu_ascii[128] = {
    0, 0, 0, 0, 0, 0, 0, 0, 0, W_, C_, W_, W_, C_, 0, 0,             /* 00-0F */
    0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,                  /* 10-1F */
    W_, P_, P_, P_, S_, P_, P_, P_, P_, P_, P_, S_, P_, P_, P_, P_,    /*  !"#$%&'()*+,-./ */
    N_, N_, N_, N_, N_, N_, N_, N_, N_, N_, P_, P_, S_, S_, S_, P_,    /* 0-9 :;<=>? */
    P_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,    /* @A-O */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, P_, P_, P_, S_, P_,    /* P-Z [\]^_ */
    S_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_,    /* `a-o */
    L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, L_, P_, S_, P_, S_, 0,     /* p-z {|}~ DEL */
};

static int is_white_space(uint32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || cp == 0x20 || cp == 0x85 || cp == 0xA0 || cp == 0x1680 ||
           (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 || cp == 0x202F ||
           cp == 0x205F || cp == 0x3000;
}

static uint8_t compute_class(uint32_t cp) {
    uint8_t c = 0;
    switch (utf8proc_category((utf8proc_int32_t)cp)) {
    case UTF8PROC_CATEGORY_LU: case UTF8PROC_CATEGORY_LL: case UTF8PROC_CATEGORY_LT:
    case UTF8PROC_CATEGORY_LM: case UTF8PROC_CATEGORY_LO:
        c = TU_L; break;
    case UTF8PROC_CATEGORY_MN: case UTF8PROC_CATEGORY_MC: case UTF8PROC_CATEGORY_ME:
        c = TU_M; break;
    case UTF8PROC_CATEGORY_ND: case UTF8PROC_CATEGORY_NL: case UTF8PROC_CATEGORY_NO:
        c = TU_N; break;
    case UTF8PROC_CATEGORY_PC: case UTF8PROC_CATEGORY_PD: case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE: case UTF8PROC_CATEGORY_PI: case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO:
        c = TU_P; break;
    case UTF8PROC_CATEGORY_SM: case UTF8PROC_CATEGORY_SC: case UTF8PROC_CATEGORY_SK:
    case UTF8PROC_CATEGORY_SO:
        c = TU_S; break;
    default: break;
    }
    if (is_white_space(cp)) c |= TU_WS;
    if (cp == '\r' || cp == '\n') c |= TU_CRLF;
    if ((cp >= 0x4E00 && cp <= 0x9FA5) || (cp >= 0x3040 && cp <= 0x30FF)) c |= TU_CJK;
    return c;
}

uint8_t tu_class(uint32_t cp) {
    if (cp < 0x10000) return tu_bmp[cp];
    return compute_class(cp);
}

static void fill_bmp(void) {
    for (uint32_t cp = 0; cp < 0x10000; cp++)
        tu_bmp[cp] = (cp >= 0xD800 && cp <= 0xDFFF) ? 0 : compute_class(cp);
}

void tu_init(void) {
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fill_bmp);
}

size_t tu_valid_len(const uint8_t *s, size_t avail) {
    uint8_t cls;
    if (!avail) return 0;
    if (s[0] < 0x80) return 1;
    size_t n = tu_next(s, 0, avail, &cls);
    return n > 1 ? n : 0;
}
