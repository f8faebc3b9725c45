/*
 * fuzz_tokenizer.c - libFuzzer harness for the tokenizer (sh fuzz/run.sh tokenizer).
 *
 * The first input byte picks a mode, the rest is the payload:
 *   0  encode the payload as text (arbitrary bytes, invalid UTF-8 included)
 *      and check that decoding gives it back; also with DSV4_TOK_NO_SPECIAL
 *   1  read the payload as little-endian int32 ids (wrapped into a range
 *      slightly larger than the vocabulary), decode one-shot and streamed,
 *      and check both agree (out-of-range ids must be refused by both)
 *   2  load the payload as a tokenizer.json (exercises the JSON reader and
 *      the validation; nearly always refused, never crashes)
 * The tokenizer comes from $DSV4_TOKENIZER or data/tokenizer.json (run from
 * the repository root).
 */
#include "dsv4_tokenizer.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static dsv4_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    (void)argc; (void)argv;
    const char *path = getenv("DSV4_TOKENIZER");
    char err[512];
    tok = dsv4_tokenizer_load(path ? path : "data/tokenizer.json", err, sizeof err);
    if (!tok) { fprintf(stderr, "fuzz_tokenizer: %s\n", err); abort(); }
    return 0;
}

static void encode_round_trip(const char *s, size_t n, int flags) {
    int32_t *ids;
    size_t k;
    if (dsv4_tokenize_ex(tok, s, n, flags, &ids, &k)) abort();
    char *out;
    size_t ol;
    if (dsv4_detokenize(tok, ids, k, &out, &ol)) abort();
    if (ol != n || memcmp(out, s, n)) abort();
    free(out);
    free(ids);
}

static void decode_ids(const uint8_t *p, size_t n) {
    size_t k = n / 4;
    int32_t *ids = malloc((k + 1) * sizeof *ids);
    int vs = dsv4_tokenizer_vocab_size(tok);
    int any_bad = 0;
    for (size_t i = 0; i < k; i++) {
        uint32_t v = (uint32_t)p[4 * i] | (uint32_t)p[4 * i + 1] << 8 | (uint32_t)p[4 * i + 2] << 16 |
                     (uint32_t)p[4 * i + 3] << 24;
        ids[i] = (int32_t)(v % (uint32_t)(vs + 16)) - 8;   /* a few below 0 and past the end */
        any_bad |= ids[i] < 0 || ids[i] >= vs;
    }
    char *one = NULL;
    size_t one_len = 0;
    int rc = dsv4_detokenize(tok, ids, k, &one, &one_len);
    if ((rc != 0) != any_bad) abort();
    dsv4_detok_stream *st = dsv4_detok_stream_new(tok);
    char *acc = malloc(one_len + 1);
    size_t al = 0;
    for (size_t i = 0; i < k; i++) {
        const char *o;
        size_t ol;
        int bad = ids[i] < 0 || ids[i] >= vs;
        if ((dsv4_detok_stream_push(st, ids[i], &o, &ol) != 0) != bad) abort();
        if (bad) continue;
        if (!rc) {
            if (al + ol > one_len) abort();
            memcpy(acc + al, o, ol);
        }
        al += ol;
    }
    const char *o;
    size_t ol;
    dsv4_detok_stream_flush(st, &o, &ol);
    if (!rc) {
        if (al + ol != one_len) abort();
        memcpy(acc + al, o, ol);
        if (memcmp(acc, one, one_len)) abort();
    }
    dsv4_detok_stream_free(st);
    free(acc);
    free(one);
    free(ids);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!size) return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    switch (data[0] % 3) {
    case 0:
        encode_round_trip(s, n, 0);
        encode_round_trip(s, n, DSV4_TOK_NO_SPECIAL);
        break;
    case 1:
        decode_ids(data + 1, n);
        break;
    case 2: {
        char err[256];
        dsv4_tokenizer *t = dsv4_tokenizer_load_mem(s, n, err, sizeof err);
        if (t) {
            encode_round_trip("hello world", 11, 0);
            dsv4_tokenizer_free(t);
        }
        break;
    }
    }
    return 0;
}
