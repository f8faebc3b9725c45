/*
 * test_tokenizer.c - the DeepSeek-V4 tokenizer against golden data.
 *
 *  - every line of tests/data/tokenizer/golden-encode.jsonl encodes to its
 *    ids, and the ids decode back to the text;
 *  - every prompt of tests/data/chat/golden-encode.jsonl encodes to its ids;
 *  - the published V4 test vectors and special-token ids;
 *  - the hand-written pre-tokenizer equals PCRE2 running the patterns read
 *    from tokenizer.json, on random text from many character classes;
 *  - array-scan BPE equals heap BPE;
 *  - random byte strings (invalid UTF-8 included) round-trip;
 *  - the streaming decoder equals one-shot decoding on random ids and
 *    releases only whole characters and whole added tokens;
 *  - load errors are reported, not crashed on.
 */
#define PCRE2_CODE_UNIT_WIDTH 8
#include "check.h"
#include "dsv4_tokenizer.h"
#include "text/tok_internal.h"
#include "text/tok_pretok.h"
#include "text/tok_unicode.h"
#include "util/util.h"

#include <jansson.h>
#include <pcre2.h>
#include <pthread.h>
#include <stdint.h>

#define TOKENIZER_JSON "data/tokenizer.json"

static dsv4_tokenizer *tok;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;

static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

static int ids_equal(const int32_t *a, size_t na, json_t *arr) {
    if (!json_is_array(arr) || json_array_size(arr) != na) return 0;
    for (size_t i = 0; i < na; i++)
        if (json_integer_value(json_array_get(arr, i)) != a[i]) return 0;
    return 1;
}

static void print_ids(const int32_t *a, size_t n) {
    fprintf(stderr, "  got [");
    for (size_t i = 0; i < n && i < 40; i++) fprintf(stderr, "%s%d", i ? "," : "", a[i]);
    fprintf(stderr, "%s]\n", n > 40 ? ",..." : "");
}

/* Encode text, compare with expected ids (a JSON array). */
static int encodes_to(const char *text, size_t len, json_t *expect) {
    int32_t *ids;
    size_t n;
    if (dsv4_tokenize(tok, text, len, &ids, &n)) return 0;
    int ok = ids_equal(ids, n, expect);
    if (!ok) print_ids(ids, n);
    free(ids);
    return ok;
}

static int encodes_to_list(const char *text, const int32_t *want, size_t nwant) {
    int32_t *ids;
    size_t n;
    if (dsv4_tokenize(tok, text, strlen(text), &ids, &n)) return 0;
    int ok = n == nwant && (n == 0 || !memcmp(ids, want, n * sizeof *ids));
    if (!ok) print_ids(ids, n);
    free(ids);
    return ok;
}

TEST(load) {
    char err[256] = "";
    double t0 = now_sec();
    tok = dsv4_tokenizer_load(TOKENIZER_JSON, err, sizeof err);
    double dt = now_sec() - t0;
    CHECK(tok != NULL, "load: %s", err);
    if (!tok) exit(check_summary());
    fprintf(stderr, "  loaded in %.3f s\n", dt);
    CHECK(dt < 3.0, "load took %.3f s", dt);
    CHECK(dsv4_tokenizer_vocab_size(tok) == 129280, "vocab size %d", dsv4_tokenizer_vocab_size(tok));
}

TEST(golden_encode) {
    FILE *f = fopen(DATA("tokenizer/golden-encode.jsonl"), "r");
    CHECK(f != NULL, "open golden-encode.jsonl");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0, lines = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        json_t *text = json_object_get(o, "text"), *ids = json_object_get(o, "ids");
        CHECK(o && json_is_string(text) && json_is_array(ids), "line %d unreadable", lineno);
        if (!o || !json_is_string(text)) { json_decref(o); continue; }
        const char *s = json_string_value(text);
        size_t len = json_string_length(text);
        lines++;
        CHECK(encodes_to(s, len, ids), "golden line %d: %.60s", lineno, s);
        /* Decode the golden ids back. */
        size_t n = json_array_size(ids);
        int32_t *v = xmalloc((n + 1) * sizeof *v);
        for (size_t i = 0; i < n; i++) v[i] = (int32_t)json_integer_value(json_array_get(ids, i));
        char *out;
        size_t out_len;
        int rc = dsv4_detokenize(tok, v, n, &out, &out_len);
        CHECK(rc == 0 && out_len == len && !memcmp(out, s, len), "golden line %d decodes back", lineno);
        if (!rc) free(out);
        free(v);
        json_decref(o);
    }
    free(line);
    fclose(f);
    CHECK(lines == 469, "golden lines %d", lines);
}

TEST(chat_golden_prompts) {
    FILE *f = fopen(DATA("chat/golden-encode.jsonl"), "r");
    CHECK(f != NULL, "open chat golden");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    int lineno = 0;
    while (getline(&line, &cap, f) > 0) {
        lineno++;
        json_error_t je;
        json_t *o = json_loads(line, JSON_ALLOW_NUL, &je);
        json_t *p = json_object_get(o, "prompt"), *ids = json_object_get(o, "ids");
        CHECK(json_is_string(p) && json_is_array(ids), "chat line %d unreadable", lineno);
        if (json_is_string(p))
            CHECK(encodes_to(json_string_value(p), json_string_length(p), ids), "chat prompt %d (%s)",
                  lineno, json_string_value(json_object_get(o, "name")));
        json_decref(o);
    }
    free(line);
    fclose(f);
    CHECK(lineno == 68, "chat lines %d", lineno);
}

TEST(spec_vectors) {
    static const int32_t v1[] = {128803, 30594, 128804, 128821, 36101, 128822, 7624, 1};
    CHECK(encodes_to_list("<｜User｜>你好<｜Assistant｜><think>推理</think>答案<｜end▁of▁sentence｜>", v1, 8), "vector 1");
    static const int32_t v2[] = {19923, 3, 223, 5464, 5008, 1175, 19, 940, 223, 19, 438, 223, 20,
                                 6113, 257, 76589, 131, 100, 76032, 1628, 76589, 131, 108, 76589, 131, 98};
    CHECK(encodes_to_list("Hello! 毕老师！1 + 1 = 2 ĠÑĤÐ²ÑĬÑĢ", v2, 26), "vector 2");
    static const int32_t v3[] = {19923, 14, 2058, 3, 223, 6895, 201, 10930, 2562};
    CHECK(encodes_to_list("Hello, world! 123\nsecond line", v3, 9), "OpenTallas probe");
    CHECK(encodes_to_list("", NULL, 0), "empty text");
}

TEST(special_tokens) {
    static const struct { const char *s; int32_t id; } sp[] = {
        {"<｜begin▁of▁sentence｜>", 0}, {"<｜end▁of▁sentence｜>", 1}, {"<｜▁pad▁｜>", 2},
        {"<｜place▁holder▁no▁5｜>", 128005}, {"<｜User｜>", 128803}, {"<｜Assistant｜>", 128804},
        {"<think>", 128821}, {"</think>", 128822}, {"｜DSML｜", 128825}, {"<｜latest_reminder｜>", 128828},
        {"<｜action｜>", 128829}, {"<｜query｜>", 128830}, {"<｜authority｜>", 128831},
        {"<｜domain｜>", 128832}, {"<｜title｜>", 128836}, {"<｜read_url｜>", 128845},
        {"<｜/table>｜", 129265}, {"<｜image｜>", 129279},
    };
    for (size_t i = 0; i < sizeof sp / sizeof sp[0]; i++) {
        CHECK(dsv4_token_id(tok, sp[i].s) == sp[i].id, "id of %s: %d", sp[i].s, dsv4_token_id(tok, sp[i].s));
        CHECK(dsv4_token_is_special(tok, sp[i].id), "%s is an added token", sp[i].s);
        CHECK(encodes_to_list(sp[i].s, &sp[i].id, 1), "%s encodes whole", sp[i].s);
        size_t l;
        const char *b = dsv4_token_bytes(tok, sp[i].id, &l);
        CHECK(b && l == strlen(sp[i].s) && !memcmp(b, sp[i].s, l), "bytes of %s", sp[i].s);
    }
    CHECK(dsv4_token_special_flag(tok, 0) && !dsv4_token_special_flag(tok, 128821), "special flags");
    /* Every added token decodes to its own content, whichever way an HF
     * version routes added tokens through the ByteLevel decoder. */
    int added = 0, differ = 0;
    for (int32_t id = 0; id < dsv4_tokenizer_vocab_size(tok); id++) {
        if (!dsv4_token_is_special(tok, id)) continue;
        size_t bl, sl;
        const char *b = dsv4_token_bytes(tok, id, &bl), *s = dsv4_token_spelling(tok, id, &sl);
        added++;
        differ += !b || !s || bl != sl || memcmp(b, s, bl);
    }
    CHECK(added == 1283 && differ == 0, "%d added tokens, %d decode differently from their content", added, differ);
    CHECK(!dsv4_token_is_special(tok, 19923) && !dsv4_token_is_special(tok, -1), "plain token not special");
    CHECK(dsv4_token_id(tok, "Hello") == 19923, "vocab spelling lookup");
    CHECK(dsv4_token_id(tok, "ĠÑĤ") >= 0 && dsv4_token_id(tok, "no such token at all") == -1, "lookups");
    /* <｜/table>｜ takes the ｜ that ｜DSML｜ would start with. */
    int32_t *a, *b;
    size_t na, nb;
    CHECK(!dsv4_tokenize(tok, "<｜/table>｜DSML｜", strlen("<｜/table>｜DSML｜"), &a, &na), "encode");
    CHECK(!dsv4_tokenize(tok, "DSML｜", strlen("DSML｜"), &b, &nb), "encode");
    CHECK(na == nb + 1 && a[0] == 129265 && !memcmp(a + 1, b, nb * sizeof *b), "<｜/table>｜DSML｜ split");
    free(a); free(b);
    /* Leftmost-longest: "</think>" beats a shorter match starting later. */
    static const int32_t lt[] = {128822};
    CHECK(encodes_to_list("</think>", lt, 1), "</think>");
    /* Near misses are plain text: no added-token id appears. */
    static const char *near[] = {"<｜User|>", "<think >", "<｜end▁of▁sentence｜", "|DSML|", "<｜/table｜>"};
    for (size_t i = 0; i < sizeof near / sizeof near[0]; i++) {
        int32_t *ids;
        size_t n;
        CHECK(!dsv4_tokenize(tok, near[i], strlen(near[i]), &ids, &n), "encode");
        int any = 0;
        for (size_t k = 0; k < n; k++) any |= dsv4_token_is_special(tok, ids[k]);
        CHECK(!any, "near miss %s has no added token", near[i]);
        free(ids);
    }
    /* DSV4_TOK_NO_SPECIAL treats added-token strings as text. */
    int32_t *ids;
    size_t n;
    CHECK(!dsv4_tokenize_ex(tok, "<think>", 7, DSV4_TOK_NO_SPECIAL, &ids, &n), "encode");
    CHECK(n > 1 && !dsv4_token_is_special(tok, ids[0]), "NO_SPECIAL: %zu ids", n);
    free(ids);
    char *out;
    size_t ol;
    int32_t bad[] = {5, 129280};
    CHECK(dsv4_detokenize(tok, bad, 2, &out, &ol) == -1, "out-of-range id rejected");
    bad[1] = -3;
    CHECK(dsv4_detokenize(tok, bad, 2, &out, &ol) == -1, "negative id rejected");
    size_t l;
    CHECK(dsv4_token_bytes(tok, 129280, &l) == NULL, "token_bytes out of range");
}

TEST(unicode_classes) {
    tu_init();
    int same = 1;
    for (int c = 0; c < 128; c++) same &= tu_bmp[c] == tu_ascii[c];
    CHECK(same, "ASCII table equals utf8proc classes");
    CHECK(tu_class(0x0085) & TU_WS, "NEL is \\s under Oniguruma");
    CHECK(!(tu_class(0xFEFF) & TU_WS), "BOM is not \\s");
    CHECK(tu_class(0x3000) & TU_WS, "ideographic space");
    CHECK((tu_class(0x4E00) & TU_CJK) && (tu_class(0x9FA5) & TU_CJK) && !(tu_class(0x9FA6) & TU_CJK), "CJK range");
    CHECK((tu_class(0x30FB) & (TU_CJK | TU_P)) == (TU_CJK | TU_P), "katakana middle dot");
    CHECK(tu_class(0x1D400) & TU_L, "math bold A is a letter");
    CHECK(tu_class(0x0301) & TU_M, "combining acute");
    CHECK(tu_class(0x0663) & TU_N, "Arabic-Indic digit");
}

/* ---- pre-tokenizer vs PCRE2 ---- */

typedef struct { size_t b, e; } span;
typedef struct { span *v; size_t n, cap; } spans;

static void spans_add(spans *s, size_t b, size_t e) {
    if (s->n == s->cap) { s->cap = s->cap ? s->cap * 2 : 64; s->v = xrealloc(s->v, s->cap * sizeof *s->v); }
    s->v[s->n++] = (span){b, e};
}

static void collect(void *ctx, const char *p, size_t n) {
    void **c = ctx;
    spans *s = c[0];
    const char *base = c[1];
    spans_add(s, (size_t)(p - base), (size_t)(p - base) + n);
}

static pcre2_code *re[3];

static void pcre_pretok(const char *text, size_t len, spans *out) {
    spans cur = {0}, next = {0};
    spans_add(&cur, 0, len);
    pcre2_match_data *md = pcre2_match_data_create(4, NULL);
    for (int r = 0; r < 3; r++) {
        next.n = 0;
        for (size_t k = 0; k < cur.n; k++) {
            size_t b = cur.v[k].b, e = cur.v[k].e, pos = 0, gap = 0;
            while (pos < e - b) {
                int rc = pcre2_match(re[r], (PCRE2_SPTR)text + b, e - b, pos, 0, md, NULL);
                if (rc < 0) break;
                PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
                if (ov[0] > gap) spans_add(&next, b + gap, b + ov[0]);
                spans_add(&next, b + ov[0], b + ov[1]);
                pos = gap = ov[1];
            }
            if (gap < e - b) spans_add(&next, b + gap, e);
        }
        spans t = cur; cur = next; next = t;
    }
    pcre2_match_data_free(md);
    free(next.v);
    *out = cur;
}

static size_t put_cp(char *w, uint32_t cp) {
    if (cp < 0x80) { w[0] = (char)cp; return 1; }
    if (cp < 0x800) { w[0] = (char)(0xC0 | (cp >> 6)); w[1] = (char)(0x80 | (cp & 0x3F)); return 2; }
    if (cp < 0x10000) {
        w[0] = (char)(0xE0 | (cp >> 12)); w[1] = (char)(0x80 | ((cp >> 6) & 0x3F)); w[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    w[0] = (char)(0xF0 | (cp >> 18)); w[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    w[2] = (char)(0x80 | ((cp >> 6) & 0x3F)); w[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}

/* Characters from every class the regexes distinguish (U+0085 left out:
 * PCRE2's \s lacks it, Oniguruma's has it). */
static const uint32_t pool[] = {
    'a', 'Z', 'q', ' ', ' ', ' ', '\t', '\n', '\r', '\v', '\f', '0', '7', '!', '\'', '"', '-', '.', '$', '+', '<',
    '^', '`', '|', '~', '_', '@', '[', '\\', 0x01, 0x1F, 0x7F, 0xA0, 0xE9, 0x301, 0x308, 0x3A9, 0x416, 0x5D0,
    0x627, 0x663, 0x6F1, 0x903, 0x915, 0x966, 0xE01, 0x1680, 0x2000, 0x2009, 0x200B, 0x200D, 0x2028, 0x2029,
    0x202F, 0x205F, 0x2160, 0x2460, 0x00B2, 0x00BD, 0x2014, 0x201C, 0x20AC, 0x2192, 0x2603, 0x3000, 0x3001,
    0x3002, 0x3007, 0x3041, 0x3099, 0x309B, 0x30A0, 0x30A2, 0x30FB, 0x30FC, 0x4E00, 0x4F60, 0x9FA5, 0x9FA6,
    0xAC00, 0xFF01, 0xFF10, 0xFF21, 0xFF5C, 0xFF71, 0xFE0F, 0x1F600, 0x1F1FA, 0x1F3FB, 0x1D400, 0x20000,
    0x10FFFD, 0xE0001, 0x0378,
};

TEST(pretokenizer_matches_pcre2) {
    size_t len;
    char err[256];
    char *js = read_file(TOKENIZER_JSON, &len, err, sizeof err);
    CHECK(js != NULL, "%s", err);
    if (!js) return;
    json_error_t je;
    json_t *root = json_loadb(js, len, 0, &je);
    free(js);
    json_t *list = json_object_get(json_object_get(root, "pre_tokenizer"), "pretokenizers");
    for (int r = 0; r < 3; r++) {
        const char *pat = json_string_value(json_object_get(json_object_get(json_array_get(list, r), "pattern"), "Regex"));
        CHECK(pat && !strcmp(pat, tok_pretok_patterns[r]), "pattern %d as implemented", r);
        int ec;
        PCRE2_SIZE eo;
        re[r] = pcre2_compile((PCRE2_SPTR)(pat ? pat : "x"), PCRE2_ZERO_TERMINATED, PCRE2_UTF | PCRE2_UCP, &ec, &eo, NULL);
        CHECK(re[r] != NULL, "pcre2 compiles pattern %d", r);
    }
    json_decref(root);
    if (!re[0] || !re[1] || !re[2]) return;
    int bad = 0;
    char text[4 * 40 + 1];
    for (int iter = 0; iter < 20000 && bad < 5; iter++) {
        size_t n = 0, nch = rnd() % 40;
        /* Bias towards runs: repeat the previous character now and then. */
        uint32_t prev = 'a';
        for (size_t k = 0; k < nch; k++) {
            uint32_t cp = (rnd() % 4 == 0) ? prev : pool[rnd() % (sizeof pool / sizeof pool[0])];
            n += put_cp(text + n, cp);
            prev = cp;
        }
        spans want, got = {0};
        pcre_pretok(text, n, &want);
        void *ctx[2] = {&got, text};
        tok_pretokenize(text, n, collect, ctx);
        int same = want.n == got.n;
        for (size_t k = 0; same && k < want.n; k++)
            same = want.v[k].b == got.v[k].b && want.v[k].e == got.v[k].e;
        if (!same) {
            bad++;
            fprintf(stderr, "  text:");
            for (size_t k = 0; k < n; k++) fprintf(stderr, " %02x", (uint8_t)text[k]);
            fprintf(stderr, "\n  pcre2:");
            for (size_t k = 0; k < want.n; k++) fprintf(stderr, " [%zu,%zu)", want.v[k].b, want.v[k].e);
            fprintf(stderr, "\n  ours: ");
            for (size_t k = 0; k < got.n; k++) fprintf(stderr, " [%zu,%zu)", got.v[k].b, got.v[k].e);
            fprintf(stderr, "\n");
        }
        free(want.v);
        free(got.v);
    }
    CHECK(bad == 0, "%d random texts split differently from PCRE2", bad);
    for (int r = 0; r < 3; r++) pcre2_code_free(re[r]);
}

TEST(bpe_scan_equals_heap) {
    int bad = 0;
    char w[TOK_SMALL_WORD];
    for (int iter = 0; iter < 3000; iter++) {
        size_t n = 1 + rnd() % TOK_SMALL_WORD;
        int mode = rnd() % 3;
        for (size_t k = 0; k < n; k++)
            w[k] = mode == 0 ? (char)('a' + rnd() % 26) : mode == 1 ? (char)("aeiounst "[rnd() % 9]) : (char)rnd();
        int32_t *a, *b;
        size_t na, nb;
        if (tok_debug_bpe(tok, w, n, 0, &a, &na) || tok_debug_bpe(tok, w, n, 1, &b, &nb)) { bad++; continue; }
        if (na != nb || memcmp(a, b, na * sizeof *a)) bad++;
        free(a); free(b);
    }
    CHECK(bad == 0, "%d words differ between scan and heap BPE", bad);
    /* A 5000-letter word (heap path) decodes back. */
    char *big = xmalloc(5001);
    for (int k = 0; k < 5000; k++) big[k] = (char)('a' + (k * 7 + k / 13) % 26);
    big[5000] = 0;
    int32_t *ids = NULL;
    size_t n;
    char *out = NULL;
    size_t ol;
    CHECK(!dsv4_tokenize(tok, big, 5000, &ids, &n) && !dsv4_detokenize(tok, ids, n, &out, &ol) &&
          ol == 5000 && !memcmp(out, big, 5000), "long word round trip");
    free(ids); free(out); free(big);
}

static int round_trips(const char *s, size_t len) {
    int32_t *ids;
    size_t n;
    char *out;
    size_t ol;
    if (dsv4_tokenize(tok, s, len, &ids, &n)) return 0;
    int ok = !dsv4_detokenize(tok, ids, n, &out, &ol) && ol == len && !memcmp(out, s, len);
    if (ok) free(out);
    free(ids);
    return ok;
}

TEST(random_bytes_round_trip) {
    int bad = 0;
    static char buf[8192];
    static const char *frag[] = {"<think>", "<｜User｜>", "｜DSML｜", "\xEF\xBD", "\xE4\xBD", "é", "你好", " the",
                                 "\r\n", "123456", "\xF0\x9F\x98", "\xC0\xAF", "\xED\xA0\x80", "\xF4\x90\x80\x80"};
    for (int iter = 0; iter < 3000; iter++) {
        size_t len = iter < 2900 ? rnd() % 200 : 2048 + rnd() % 6000;   /* long ones use the word cache */
        int mode = rnd() % 3;
        size_t k = 0;
        while (k < len) {
            if (mode == 0) buf[k++] = (char)rnd();
            else if (mode == 1) buf[k++] = "ab \n\x80\xC3\xA9\xE4\xBD\xA0\xF0<|>1"[rnd() % 16];
            else {
                const char *f = frag[rnd() % (sizeof frag / sizeof frag[0])];
                size_t fl = strlen(f);
                if (k + fl > len) break;
                memcpy(buf + k, f, fl);
                k += fl;
            }
        }
        if (!round_trips(buf, k)) bad++;
    }
    CHECK(bad == 0, "%d random byte strings did not round-trip", bad);
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (!round_trips(&c, 1)) bad++;
    }
    CHECK(bad == 0, "single bytes round-trip");
}

/* Is position cut of text[0..len) inside a well-formed UTF-8 character? */
static int inside_char(const char *text, size_t len, size_t cut) {
    size_t i = 0;
    while (i < len && i < cut) {
        uint8_t c;
        size_t n = tu_next((const uint8_t *)text, i, len, &c);
        if (i + n > cut) return 1;
        i += n;
    }
    return 0;
}

TEST(stream_equals_one_shot) {
    int bad_eq = 0, bad_split = 0, bad_special = 0;
    dsv4_detok_stream *st = dsv4_detok_stream_new(tok);
    int32_t ids[200];
    for (int iter = 0; iter < 2000; iter++) {
        size_t n = rnd() % 200;
        for (size_t k = 0; k < n; k++) {
            uint32_t r = rnd() % 10;
            if (r < 4) ids[k] = (int32_t)(3 + rnd() % 253);          /* single bytes: partial UTF-8 */
            else if (r < 8) ids[k] = (int32_t)(rnd() % 128000);
            else ids[k] = (int32_t)(128000 + rnd() % 1280);          /* added tokens */
        }
        char *one;
        size_t one_len;
        if (dsv4_detokenize(tok, ids, n, &one, &one_len)) { bad_eq++; continue; }
        char *acc = xmalloc(one_len + 1);
        size_t al = 0;
        for (size_t k = 0; k < n; k++) {
            const char *o;
            size_t ol;
            if (dsv4_detok_stream_push(st, ids[k], &o, &ol)) { bad_eq++; break; }
            if (al + ol > one_len) { bad_eq++; break; }
            memcpy(acc + al, o, ol);
            al += ol;
            if (ol && inside_char(one, one_len, al)) bad_split++;
            if (dsv4_token_is_special(tok, ids[k])) {
                size_t tl;
                const char *tb = dsv4_token_bytes(tok, ids[k], &tl);
                if (ol < tl || memcmp(o + ol - tl, tb, tl)) bad_special++;
            }
        }
        const char *o;
        size_t ol;
        dsv4_detok_stream_flush(st, &o, &ol);
        if (al + ol == one_len) { memcpy(acc + al, o, ol); al += ol; }
        if (al != one_len || memcmp(acc, one, one_len)) bad_eq++;
        free(acc);
        free(one);
    }
    CHECK(bad_eq == 0, "%d streams differ from one-shot decoding", bad_eq);
    CHECK(bad_split == 0, "%d releases ended inside a UTF-8 character", bad_split);
    CHECK(bad_special == 0, "%d added tokens not released whole", bad_special);
    /* A 3-byte character fed byte by byte comes out once, whole. */
    const char *o;
    size_t ol;
    int32_t e4 = dsv4_token_id(tok, "ä"), bd = dsv4_token_id(tok, "½"), a0 = dsv4_token_id(tok, "ł");
    CHECK(e4 >= 0 && bd >= 0 && a0 >= 0, "byte tokens");
    dsv4_detok_stream_push(st, e4, &o, &ol);
    CHECK(ol == 0, "E4 held");
    dsv4_detok_stream_push(st, bd, &o, &ol);
    CHECK(ol == 0, "E4 BD held");
    dsv4_detok_stream_push(st, a0, &o, &ol);
    CHECK(ol == 3 && !memcmp(o, "你", 3), "你 released");
    CHECK(dsv4_detok_stream_push(st, 999999, &o, &ol) == -1, "bad id");
    dsv4_detok_stream_free(st);
}

/* Four threads encode the same texts at once and must all agree with the
 * single-threaded result (a loaded tokenizer is read-only). */
typedef struct { const char *text; size_t len; const int32_t *want; size_t n_want; int bad; } thread_job;

static void *thread_encode(void *arg) {
    thread_job *j = arg;
    for (int r = 0; r < 20; r++) {
        int32_t *ids;
        size_t n;
        if (dsv4_tokenize(tok, j->text, j->len, &ids, &n)) { j->bad++; continue; }
        if (n != j->n_want || memcmp(ids, j->want, n * sizeof *ids)) j->bad++;
        free(ids);
    }
    return NULL;
}

TEST(threads) {
    size_t len;
    char err[256];
    char *text = read_file(DATA("tokenizer/README.md"), &len, err, sizeof err);
    CHECK(text != NULL, "%s", err);
    if (!text) return;
    int32_t *want;
    size_t n_want;
    CHECK(!dsv4_tokenize(tok, text, len, &want, &n_want), "encode");
    pthread_t th[4];
    thread_job jobs[4];
    for (int i = 0; i < 4; i++) {
        jobs[i] = (thread_job){text, len, want, n_want, 0};
        pthread_create(&th[i], NULL, thread_encode, &jobs[i]);
    }
    int bad = 0;
    for (int i = 0; i < 4; i++) { pthread_join(th[i], NULL); bad += jobs[i].bad; }
    CHECK(bad == 0, "%d concurrent encodings differ", bad);
    free(want);
    free(text);
}

TEST(load_errors) {
    char err[256] = "";
    CHECK(dsv4_tokenizer_load("/nonexistent/tokenizer.json", err, sizeof err) == NULL && strstr(err, "nonexistent"),
          "missing file: %s", err);
    err[0] = 0;
    CHECK(dsv4_tokenizer_load_mem("{\"model\": [1,2", 14, err, sizeof err) == NULL && strstr(err, "malformed JSON"),
          "truncated JSON: %s", err);
    err[0] = 0;
    CHECK(dsv4_tokenizer_load_mem("[]", 2, err, sizeof err) == NULL && err[0], "array: %s", err);
    const char *other = "{\"normalizer\":null,\"pre_tokenizer\":{\"type\":\"ByteLevel\"},\"model\":{\"vocab\":{},\"merges\":[]}}";
    err[0] = 0;
    CHECK(dsv4_tokenizer_load_mem(other, strlen(other), err, sizeof err) == NULL && strstr(err, "pre_tokenizer"),
          "other pre-tokenizer refused: %s", err);
    /* load_mem of the real file works and agrees with load. */
    size_t len;
    char *js = read_file(TOKENIZER_JSON, &len, err, sizeof err);
    dsv4_tokenizer *t2 = js ? dsv4_tokenizer_load_mem(js, len, err, sizeof err) : NULL;
    CHECK(t2 != NULL, "load_mem: %s", err);
    if (t2) {
        int32_t *a, *b;
        size_t na, nb;
        const char *s = "load_mem gives the same ids: 你好, <think>ok</think> 12345";
        dsv4_tokenize(tok, s, strlen(s), &a, &na);
        dsv4_tokenize(t2, s, strlen(s), &b, &nb);
        CHECK(na == nb && !memcmp(a, b, na * sizeof *a), "same ids");
        free(a); free(b);
        /* Truncations of a valid file fail cleanly. */
        int all_fail = 1;
        for (size_t cut = 1; cut < len; cut += len / 7) {
            dsv4_tokenizer *t3 = dsv4_tokenizer_load_mem(js, cut, err, sizeof err);
            if (t3) { all_fail = 0; dsv4_tokenizer_free(t3); }
        }
        CHECK(all_fail, "truncated files refused");
    }
    dsv4_tokenizer_free(t2);
    free(js);
}

int main(void) {
    RUN(load);
    RUN(golden_encode);
    RUN(chat_golden_prompts);
    RUN(spec_vectors);
    RUN(special_tokens);
    RUN(unicode_classes);
    RUN(pretokenizer_matches_pcre2);
    RUN(bpe_scan_equals_heap);
    RUN(random_bytes_round_trip);
    RUN(stream_equals_one_shot);
    RUN(threads);
    RUN(load_errors);
    dsv4_tokenizer_free(tok);
    return check_summary();
}
