/*
 * bench_grammar.c - cost of the grammar's allowed-token mask on the real
 * DeepSeek vocabulary (129,280 ids), and a check that random walks under a
 * token budget always complete.
 *
 *   build/bench/bench_grammar [tokenizer.json] [steps]
 *
 * Walks: pick uniformly among the allowed ids (a stand-in for a random
 * model) for a JSON schema, json_object and a DSML tool call; prints the
 * mean / p50 / max mask time, the cache hit rate and the trie build time.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dsv4.h"
#include "server/grammar.h"
#include "util/util.h"

static dsv4_tokenizer *tok;
static int32_t eos = 1, think_end, dsml;

static const char *bytes_of(void *ud, int32_t id, size_t *len) {
    (void)ud;
    if (id >= dsv4_tokenizer_vocab_size(tok)) return NULL;
    if (dsv4_token_is_special(tok, id) && id != think_end && id != dsml) return NULL;
    return dsv4_token_bytes(tok, id, len);
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static uint64_t rng = 0x243F6A8885A308D3ull;
static uint64_t next(void) { rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17; return rng; }

static void run(const char *name, grammar *g, gvocab *v, int vocab, int budget, int walks) {
    uint64_t *mask = malloc((size_t)(vocab + 63) / 64 * 8);
    double *t = malloc(sizeof(double) * (size_t)budget * (size_t)walks);
    int nt = 0, ok = 0;
    long masks = 0, hits = 0;
    for (int w = 0; w < walks; w++) {
        gmatcher *m = gmatcher_new(g, v);
        for (int step = 0; step < budget; step++) {
            double t0 = now_sec();
            int n = gmatcher_mask(m, budget - step, mask);
            t[nt++] = now_sec() - t0;
            if (n <= 0) break;
            int pick = (int)(next() % (uint64_t)n), id = -1;
            for (int i = 0; i < vocab && id < 0; i++)
                if ((mask[i >> 6] >> (i & 63)) & 1) { if (pick-- == 0) id = i; }
            if (id == eos) { ok++; break; }
            if (gmatcher_accept(m, id)) break;
            if (gmatcher_done(m) == 2) { ok++; break; }
        }
        long a, b;
        gmatcher_stats(m, &a, &b);
        masks += a; hits += b;
        gmatcher_free(m);
    }
    qsort(t, (size_t)nt, sizeof *t, cmp_d);
    double sum = 0;
    for (int i = 0; i < nt; i++) sum += t[i];
    printf("%-12s budget %4d: %d/%d walks completed; mask mean %.3f ms, p50 %.3f ms, p99 %.3f ms, max %.3f ms; cache hits %.0f%%\n",
           name, budget, ok, walks, 1e3 * sum / nt, 1e3 * t[nt / 2], 1e3 * t[(int)(nt * 0.99)], 1e3 * t[nt - 1],
           masks ? 100.0 * (double)hits / (double)masks : 0.0);
    free(mask);
    free(t);
}

int main(int argc, char **argv) {
    const char *path = argc > 1 ? argv[1] : "data/tokenizer.json";
    int walks = argc > 2 ? atoi(argv[2]) : 10;
    char err[256];
    tok = dsv4_tokenizer_load(path, err, sizeof err);
    if (!tok) { fprintf(stderr, "%s\n", err); return 1; }
    think_end = dsv4_token_id(tok, "</think>");
    dsml = dsv4_token_id(tok, "\xef\xbd\x9c" "DSML" "\xef\xbd\x9c");
    int vocab = 129280;
    double t0 = now_sec();
    gvocab *v = gvocab_new(vocab, bytes_of, NULL, eos);
    printf("vocabulary trie over %d ids built in %.1f ms\n", vocab, 1e3 * (now_sec() - t0));
    const char *schema = "{\"type\":\"object\",\"properties\":{\"name\":{\"type\":\"string\"},\"age\":{\"type\":\"integer\"},"
                         "\"tags\":{\"type\":\"array\",\"items\":{\"enum\":[\"a\",\"b\"]}}},\"required\":[\"name\",\"age\"]}";
    const char *tools = "[{\"type\":\"function\",\"function\":{\"name\":\"get_weather\",\"parameters\":{\"type\":\"object\","
                        "\"properties\":{\"city\":{\"type\":\"string\"},\"days\":{\"type\":\"integer\"}},\"required\":[\"city\"]}}}]";
    grammar *g1 = grammar_from_json_schema(schema, err, sizeof err);
    grammar *g2 = grammar_from_json_schema(NULL, err, sizeof err);
    grammar *g3 = grammar_dsml_tools(tools, NULL, 0, err, sizeof err);
    if (!g1 || !g2 || !g3) { fprintf(stderr, "%s\n", err); return 1; }
    run("json_schema", g1, v, vocab, 60, walks);
    run("json_schema", g1, v, vocab, 300, walks);
    run("json_object", g2, v, vocab, 100, walks);
    run("dsml_tool", g3, v, vocab, 120, walks);
    grammar_free(g1); grammar_free(g2); grammar_free(g3);
    gvocab_free(v);
    dsv4_tokenizer_free(tok);
    return 0;
}
