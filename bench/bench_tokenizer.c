/*
 * bench_tokenizer.c - encoding speed of the DeepSeek-V4 tokenizer.
 *
 *   build/bench/bench_tokenizer [tokenizer.json]     (run from the repo root)
 *
 * Inputs come from the repository's own text (nothing downloaded):
 *   prose  the Markdown READMEs under data/ and tests/data/ plus the long
 *          English golden line (mostly English prose, some tables/code)
 *   code   every C file under src/ (one folder per concern)
 *   cjk    the lines of golden texts that are mostly Chinese/Japanese/Korean
 *   mixed  the long multilingual/emoji golden line
 * Each input is one dsv4_tokenize call (as for one document: the word cache
 * starts empty every call), repeated for at least 0.5 s.
 *
 * Baselines measured in the same run over the same bytes:
 *   memcpy  copying the input once (memory bandwidth bound)
 *   utf8    a naive byte-by-byte UTF-8 decode with utf8proc_iterate plus a
 *           utf8proc_category lookup per code point (the least work any
 *           Unicode-aware pre-tokenizer must do)
 * Each figure is the best of a few rounds timed in thread CPU time.  Also reported: load time
 * of tokenizer.json (best of 3) and decode speed.
 */
#include "dsv4_tokenizer.h"
#include "util/util.h"

#include <glob.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <utf8proc.h>


static void add_file(strbuf *b, const char *path) {
    size_t n;
    char err[256];
    char *s = read_file(path, &n, err, sizeof err);
    if (!s) return;
    strbuf_add(b, s, n);
    strbuf_add(b, "\n", 1);
    free(s);
}

static void add_glob(strbuf *b, const char *pattern) {
    glob_t g;
    if (glob(pattern, 0, NULL, &g)) return;
    for (size_t i = 0; i < g.gl_pathc; i++) add_file(b, g.gl_pathv[i]);
    globfree(&g);
}

/* Golden texts chosen by a predicate; with by_line, each line of each text
 * is judged (and kept) on its own. */
static void add_golden(strbuf *b, int (*want)(const char *, size_t), int by_line) {
    FILE *f = fopen("tests/data/tokenizer/golden-encode.jsonl", "r");
    if (!f) return;
    char *line = NULL;
    size_t cap = 0;
    while (getline(&line, &cap, f) > 0) {
        json_error_t je;
        json_t *o = json_loads(line, 0, &je);
        json_t *t = json_object_get(o, "text");
        const char *s = json_string_value(t);
        size_t n = json_string_length(t);
        while (s && n) {
            const char *nl = by_line ? memchr(s, '\n', n) : NULL;
            size_t l = nl ? (size_t)(nl - s) + 1 : n;
            if (want(s, l)) strbuf_add(b, s, l);
            s += l;
            n -= l;
        }
        json_decref(o);
    }
    free(line);
    fclose(f);
}

static int is_long_english(const char *s, size_t n) { return n > 2000 && !strncmp(s, "Large language", 14); }
static int is_mixed(const char *s, size_t n) { (void)s; return n > 15000; }
/* Mostly CJK: at least 60% of the bytes in 3-byte sequences starting
 * E3..EF (kana, CJK ideographs, Hangul, full-width punctuation). */
static int is_cjk(const char *s, size_t n) {
    size_t cjk = 0;
    for (size_t i = 0; i + 2 < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0xE3 && c <= 0xEF) { cjk += 3; i += 2; }
    }
    return n >= 6 && cjk * 10 >= n * 6;
}

static volatile size_t sink;

/* Thread CPU seconds: on a shared, busy machine this is far steadier than
 * wall time (time spent descheduled does not count). */
static double cpu_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Best rate (MB/s) of `rounds` timed rounds of at least `secs` each: the
 * best round is the least disturbed by other work on the machine. */
#define TIMED(rate_out, rounds, secs, nbytes, body) do { \
    double best_ = 0; \
    for (int r_ = 0; r_ < (rounds); r_++) { \
        size_t reps_ = 0; double t0_ = cpu_now(), dt_; \
        do { body; reps_++; dt_ = cpu_now() - t0_; } while (dt_ < (secs)); \
        double mb_ = (double)(nbytes) * reps_ / dt_ / 1e6; \
        if (mb_ > best_) best_ = mb_; \
    } \
    rate_out = best_; } while (0)

static void utf8_scan(const char *s, size_t n) {
    const utf8proc_uint8_t *p = (const utf8proc_uint8_t *)s;
    utf8proc_ssize_t left = (utf8proc_ssize_t)n;
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
}

static void bench_one(const dsv4_tokenizer *t, const char *name, const strbuf *in) {
    if (!in->n) { printf("%-6s (no input found)\n", name); return; }
    int32_t *ids;
    size_t n_ids;
    if (dsv4_tokenize(t, in->p, in->n, &ids, &n_ids)) { printf("%s: encode failed\n", name); return; }
    double enc, dec, u8, mc;
    TIMED(enc, 5, 0.15, in->n, {
        int32_t *v; size_t k;
        dsv4_tokenize(t, in->p, in->n, &v, &k);
        sink += k; free(v);
    });
    TIMED(dec, 3, 0.05, in->n, {
        char *out; size_t ol;
        dsv4_detokenize(t, ids, n_ids, &out, &ol);
        sink += ol; free(out);
    });
    TIMED(u8, 3, 0.1, in->n, utf8_scan(in->p, in->n));
    char *dst = xmalloc(in->n);
    TIMED(mc, 3, 0.05, in->n, { memcpy(dst, in->p, in->n); sink += (unsigned char)dst[sink % in->n]; });
    free(dst);
    free(ids);
    printf("%-6s %7zu B %6zu tok %4.2f B/tok | encode %6.1f MB/s | decode %6.0f MB/s | baselines: utf8 scan %6.1f MB/s, memcpy %6.0f MB/s\n",
           name, in->n, n_ids, (double)in->n / (double)(n_ids ? n_ids : 1), enc, dec, u8, mc);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/tokenizer.json";
    char err[512];
    /* Load a few times, report the fastest. */
    dsv4_tokenizer *t = NULL;
    double load = 1e9, load_cpu = 1e9;
    for (int i = 0; i < 3; i++) {
        dsv4_tokenizer_free(t);
        double t0 = now_sec(), c0 = cpu_now();
        t = dsv4_tokenizer_load(path, err, sizeof err);
        double dt = now_sec() - t0, dc = cpu_now() - c0;
        if (!t) { fprintf(stderr, "bench_tokenizer: %s\n", err); return 1; }
        if (dt < load) load = dt;
        if (dc < load_cpu) load_cpu = dc;
    }
    printf("tokenizer: %s loaded in %.3f s wall, %.3f s CPU (%d ids), peak RSS %.0f MiB\n", path, load, load_cpu,
           dsv4_tokenizer_vocab_size(t), peak_rss_mb());

    strbuf prose = {0}, code = {0}, cjk = {0}, mixed = {0};
    add_glob(&prose, "data/*.md");
    add_glob(&prose, "tests/data/*/README.md");
    add_golden(&prose, is_long_english, 0);
    add_glob(&code, "src/*/*.c");
    add_golden(&cjk, is_cjk, 1);
    add_golden(&mixed, is_mixed, 0);

    bench_one(t, "prose", &prose);
    bench_one(t, "code", &code);
    bench_one(t, "cjk", &cjk);
    bench_one(t, "mixed", &mixed);

    free(prose.p); free(code.p); free(cjk.p); free(mixed.p);
    dsv4_tokenizer_free(t);
    return 0;
}
