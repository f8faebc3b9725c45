/*
 * bench_tokenizer.c - encoding speed of the DeepSeek-V4 tokenizer.
 *
 *   build/bench/bench_tokenizer [tokenizer.json]     (run from the repo root)
 *
 * Inputs come from the repository's own text (nothing downloaded):
 *   prose  the Markdown READMEs under data/ and tests/data/ plus the long
 *          English golden line (mostly English prose, some tables/code)
 *   code   every C file under src/ (one folder per concern)
 *   cjk    the golden lines that are mostly Chinese/Japanese/Korean
 *   mixed  the long multilingual/emoji golden line
 * Each input is one dsv4_tokenize call (as for one document: the word cache
 * starts empty every call), repeated for at least 0.5 s.
 *
 * Baselines measured in the same run over the same bytes:
 *   memcpy  copying the input once (memory bandwidth bound)
 *   utf8    a naive byte-by-byte UTF-8 decode with utf8proc_iterate plus a
 *           utf8proc_category lookup per code point (the least work any
 *           Unicode-aware pre-tokenizer must do)
 * Also reported: load time of tokenizer.json and decode speed.
 */
#include "dsv4_tokenizer.h"
#include "util/util.h"

#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

typedef struct { char *s; size_t n, cap; } buf;

static void buf_add(buf *b, const char *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->s = xrealloc(b->s, b->cap);
    }
    memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static void add_file(buf *b, const char *path) {
    size_t n;
    char err[256];
    char *s = read_file(path, &n, err, sizeof err);
    if (!s) return;
    buf_add(b, s, n);
    buf_add(b, "\n", 1);
    free(s);
}

static void add_glob(buf *b, const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g)) return;
    for (size_t i = 0; i < g.gl_pathc; i++) add_file(b, g.gl_pathv[i]);
    globfree(&g);
}

/* Golden lines chosen by a predicate on the text. */
static void add_golden(buf *b, int (*want)(const char *, size_t)) {
    FILE *f = fopen("tests/data/tokenizer/golden-encode.jsonl", "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_t *t = json_object_get(o, "text");
        if (json_is_string(t) && want(json_string_value(t), json_string_length(t))) {
            buf_add(b, json_string_value(t), json_string_length(t));
            buf_add(b, "\n", 1);
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
}

static int is_long_english(const char *s, size_t n) { return n > 2000 && !strncmp(s, "Large language", 14); }
static int is_mixed(const char *s, size_t n) { (void)s; return n > 15000; }
/* Mostly CJK: at least 60% of the bytes in 3-byte sequences starting E3..E9
 * or EA..ED (Hangul). */
static int is_cjk(const char *s, size_t n) {
    size_t cjk = 0;
    for (size_t i = 0; i + 2 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xE3 && c <= 0xED) { cjk += 3; i += 2; }
    }
    return n >= 6 && cjk * 10 >= n * 6;
}

static double rate(double bytes, double secs) { return bytes / secs / 1e6; }

static volatile size_t sink;

static void bench_one(const dsv4_tokenizer *t, const char *name, const buf *in) {
    if (!in->n) { printf("%-6s (no input found)\n", name); return; }
    /* Tokenizer. */
    size_t reps = 0, n_ids = 0;
    double t0 = now_sec(), dt;
    do {
        int32_t *ids;
        if (dsv4_tokenize(t, in->s, in->n, &ids, &n_ids)) { printf("%s: encode failed\n", name); return; }
        sink += ids[n_ids ? n_ids - 1 : 0];
        free(ids);
        reps++;
        dt = now_sec() - t0;
    } while (dt < 0.5);
    double enc = rate((double)in->n * reps, dt);
    /* Decode of the same ids. */
    int32_t *ids;
    dsv4_tokenize(t, in->s, in->n, &ids, &n_ids);
    size_t dreps = 0;
    t0 = now_sec();
    do {
        char *out;
        size_t ol;
        dsv4_detokenize(t, ids, n_ids, &out, &ol);
        sink += ol;
        free(out);
        dreps++;
        dt = now_sec() - t0;
    } while (dt < 0.2);
    double dec = rate((double)in->n * dreps, dt);
    free(ids);
    /* Baseline 1: memcpy. */
    char *dst = xmalloc(in->n);
    size_t mreps = 0;
    t0 = now_sec();
    do { memcpy(dst, in->s, in->n); sink += (unsigned char)dst[mreps % in->n]; mreps++; dt = now_sec() - t0; } while (dt < 0.2);
    double mc = rate((double)in->n * mreps, dt);
    free(dst);
    /* Baseline 2: naive UTF-8 decode + category per code point. */
    size_t ureps = 0;
    t0 = now_sec();
    do {
        const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)in->s;
        utf8proc_ssize_t left = (utf8proc_ssize_t)in->n;
        size_t cats = 0;
        while (left > 0) {
            utf8proc_int32_t cp;
            utf8proc_ssize_t k = utf8proc_iterate(p, left, &cp);
            if (k <= 0) k = 1, cp = 0xFFFD;
            cats += (size_t)utf8proc_category(cp);
            p += k;
            left -= k;
        }
        sink += cats;
        ureps++;
        dt = now_sec() - t0;
    } while (dt < 0.3);
    double u8 = rate((double)in->n * ureps, dt);
    printf("%-6s %8zu B %7zu tok %5.2f B/tok | encode %7.1f MB/s | decode %7.1f MB/s | baseline utf8 scan %7.1f MB/s, memcpy %8.1f MB/s\n",
           name, in->n, n_ids, (double)in->n / (double)(n_ids ? n_ids : 1), enc, dec, u8, mc);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/tokenizer.json";
    char err[512];
    double t0 = now_sec();
    dsv4_tokenizer *t = dsv4_tokenizer_load(path, err, sizeof err);
    double load = now_sec() - t0;
    if (!t) { fprintf(stderr, "bench_tokenizer: %s\n", err); return 1; }
    printf("tokenizer: %s loaded in %.3f s (%d ids), peak RSS %.0f MiB\n", path, load,
           dsv4_tokenizer_vocab_size(t), peak_rss_mb());

    buf prose = {0}, code = {0}, cjk = {0}, mixed = {0};
    add_glob(&prose, "data/*.md");
    add_glob(&prose, "tests/data/*/README.md");
    add_golden(&prose, is_long_english);
    add_glob(&code, "src/*/*.c");
    add_golden(&cjk, is_cjk);
    add_golden(&mixed, is_mixed);

    bench_one(t, "prose", &prose);
    bench_one(t, "code", &code);
    bench_one(t, "cjk", &cjk);
    bench_one(t, "mixed", &mixed);

    free(prose.s); free(code.s); free(cjk.s); free(mixed.s);
    dsv4_tokenizer_free(t);
    return 0;
}
