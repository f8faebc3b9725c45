/*
 * test_sampler.c - token selection: greedy ties, seeds, temperature
 * matching the softmax, top-k, top-p, min-p, and the allowed-id mask.
 */
#include "check.h"
#include "dsv4.h"
#include <math.h>

#define V 16

static dsv4_sampler *mk(float temp, float top_p, int top_k, float min_p, uint64_t seed) {
    dsv4_sampler_params p = {temp, top_p, top_k, min_p, seed};
    return dsv4_sampler_new(&p, V);
}

static void logits_init(float *l) {
    for (int i = 0; i < V; i++) l[i] = (float)(i % 5) * 0.5f - (float)i * 0.05f;
}

/* dsv4_argmax against its definition, the one loop from best = 0, on
 * lengths around its 8-wide blocks, with ties, NaNs (also first) and
 * infinities. */
static int argmax_def(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

TEST(argmax_matches_definition) {
    float x[70];
    unsigned r = 12345;
    int ok = 1, cases = 0;
    for (int n = 1; n <= 70; n++)
        for (int rep = 0; rep < 40; rep++) {
            for (int i = 0; i < n; i++) {
                r = r * 1103515245u + 12345u;
                int v = (int)(r >> 16) % 23;
                /* few distinct values: many ties */
                x[i] = v == 0 ? NAN : v == 1 ? INFINITY : v == 2 ? -INFINITY : (float)(v % 5) - 2.0f;
            }
            if (rep == 1) x[0] = NAN;
            if (rep == 2) for (int i = 0; i < n; i++) x[i] = NAN;
            ok &= dsv4_argmax(x, n) == argmax_def(x, n);
            cases++;
        }
    CHECK(ok, "argmax == its one-loop definition (%d cases, ties, NaN, inf)", cases);
}

TEST(greedy_and_ties) {
    float l[V] = {0};
    l[3] = 2; l[9] = 2;
    dsv4_sampler *s = mk(0, 1, 0, 0, 1);
    CHECK(dsv4_sample(s, l, NULL) == 3, "greedy tie goes to the lowest id");
    CHECK(dsv4_argmax(l, V) == 3, "argmax tie goes to the lowest id");
    uint64_t mask = ~(1ull << 3);
    CHECK(dsv4_sample(s, l, &mask) == 9, "greedy respects the mask");
    dsv4_sampler_free(s);
}

TEST(seed_reproducible) {
    float l[V];
    logits_init(l);
    dsv4_sampler *a = mk(1, 1, 0, 0, 42), *b = mk(1, 1, 0, 0, 42), *c = mk(1, 1, 0, 0, 43);
    int same = 1, differ = 0;
    for (int i = 0; i < 200; i++) {
        int x = dsv4_sample(a, l, NULL), y = dsv4_sample(b, l, NULL), z = dsv4_sample(c, l, NULL);
        same &= x == y;
        differ |= x != z;
    }
    CHECK(same, "same seed, same draws");
    CHECK(differ, "another seed, other draws");
    dsv4_sampler_free(a); dsv4_sampler_free(b); dsv4_sampler_free(c);
}

/* Empirical frequencies at T=0.7 match softmax(l/T) within 4 sigma. */
TEST(temperature_matches_softmax) {
    float l[V];
    logits_init(l);
    float T = 0.7f;
    double p[V], z = 0;
    for (int i = 0; i < V; i++) z += p[i] = exp(l[i] / T);
    int cnt[V] = {0}, N = 200000;
    dsv4_sampler *s = mk(T, 1, 0, 0, 7);
    for (int i = 0; i < N; i++) cnt[dsv4_sample(s, l, NULL)]++;
    for (int i = 0; i < V; i++) {
        double q = p[i] / z, sd = sqrt(N * q * (1 - q));
        CHECK(fabs(cnt[i] - N * q) <= 4 * sd + 1, "id %d: %d draws, expected %.0f", i, cnt[i], N * q);
    }
    dsv4_sampler_free(s);
}

TEST(filters) {
    float l[V];
    logits_init(l);
    /* sorted order of l: ids by value */
    dsv4_sampler *k1 = mk(1, 1, 1, 0, 3);
    int ok = 1;
    for (int i = 0; i < 100; i++) ok &= dsv4_sample(k1, l, NULL) == dsv4_argmax(l, V);
    CHECK(ok, "top_k 1 is greedy");
    dsv4_sampler *k3 = mk(1, 1, 3, 0, 3);
    int seen[V] = {0};
    for (int i = 0; i < 2000; i++) seen[dsv4_sample(k3, l, NULL)] = 1;
    int n = 0;
    for (int i = 0; i < V; i++) n += seen[i];
    CHECK(n == 3, "top_k 3 draws exactly 3 ids (%d)", n);
    dsv4_sampler *tp = mk(1, 0.01f, 0, 0, 3);
    ok = 1;
    for (int i = 0; i < 100; i++) ok &= dsv4_sample(tp, l, NULL) == dsv4_argmax(l, V);
    CHECK(ok, "tiny top_p keeps only the top id");
    dsv4_sampler *mp = mk(1, 1, 0, 0.99f, 3);
    ok = 1;
    for (int i = 0; i < 100; i++) ok &= dsv4_sample(mp, l, NULL) == dsv4_argmax(l, V);
    CHECK(ok, "min_p 0.99 keeps only the top id");
    uint64_t mask = (1ull << 5) | (1ull << 11);
    dsv4_sampler *mk5 = mk(1.5f, 0.9f, 0, 0, 3);
    ok = 1;
    for (int i = 0; i < 500; i++) { int t = dsv4_sample(mk5, l, &mask); ok &= t == 5 || t == 11; }
    CHECK(ok, "sampling never leaves the mask");
    uint64_t none = 0;
    CHECK(dsv4_sample(mk5, l, &none) == -1, "an empty mask gives -1");
    dsv4_sampler_free(k1); dsv4_sampler_free(k3); dsv4_sampler_free(tp); dsv4_sampler_free(mp); dsv4_sampler_free(mk5);
}

int main(void) {
    RUN(argmax_matches_definition);
    RUN(greedy_and_ties);
    RUN(seed_reproducible);
    RUN(temperature_matches_softmax);
    RUN(filters);
    return check_summary();
}
