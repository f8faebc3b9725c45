/*
 * test_ops.c - the model's small shared operations against straightforward
 * definitions: top-k selection (both algorithms give the reference order:
 * higher score first, ties by lower index), and the multi-vector forms of
 * the attention primitives, which must equal the single-vector calls bit
 * for bit (the model relies on it for numerics that do not depend on how
 * heads are grouped).
 */
#include "check.h"
#include "model/ops.h"
#include "num/cpu.h"
#include "num/vecops.h"
#include <math.h>
#include <stdint.h>

static uint64_t rng = 0x243f6a8885a308d3ull;
static uint32_t rnd32(void) {
    rng ^= rng << 13; rng ^= rng >> 7; rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}
static float rndf(void) { return (float)((rnd32() & 0xffffff) / 8388608.0 - 1.0); }

/* The definition: k times, the best remaining element (ties: lower index). */
static void topk_naive(const float *s, int n, int k, int *out) {
    char *used = calloc((size_t)n, 1);
    for (int r = 0; r < k && r < n; r++) {
        int best = -1;
        for (int i = 0; i < n; i++)
            if (!used[i] && (best < 0 || s[i] > s[best])) best = i;
        used[best] = 1;
        out[r] = best;
    }
    free(used);
}

TEST(topk_order) {
    const int ns[] = {10, 300, 5000, 20000}, ks[] = {1, 6, 64, 512, 4999};
    for (size_t a = 0; a < sizeof ns / sizeof *ns; a++)
        for (size_t b = 0; b < sizeof ks / sizeof *ks; b++) {
            int n = ns[a], k = ks[b] < n ? ks[b] : n;
            float *s = malloc((size_t)n * sizeof(float));
            for (int tie = 0; tie < 2; tie++) {
                /* tie = 1: few distinct values, many equal scores */
                for (int i = 0; i < n; i++) s[i] = tie ? (float)(rnd32() % 7) : rndf();
                int *got = malloc((size_t)k * sizeof(int)), *want = malloc((size_t)k * sizeof(int));
                topk_desc(s, n, k, got);
                topk_naive(s, n, k, want);
                CHECK(!memcmp(got, want, (size_t)k * sizeof(int)), "top-%d of %d (%s): same ids, same order", k, n,
                      tie ? "ties" : "distinct");
                free(got); free(want);
            }
            free(s);
        }
}

static void check_vec_multi(void) {
    const int n = 512 + 16 * (int)(rnd32() % 3) + (int)(rnd32() % 16);   /* tails too */
    float *a[4], *y[4], *y1[4], x[600], d4[4], f[4];
    for (int h = 0; h < 4; h++) {
        a[h] = malloc(600 * sizeof(float)); y[h] = malloc(600 * sizeof(float)); y1[h] = malloc(600 * sizeof(float));
        for (int i = 0; i < 600; i++) { a[h][i] = rndf(); y[h][i] = y1[h][i] = rndf(); }
        f[h] = rndf();
    }
    for (int i = 0; i < 600; i++) x[i] = rndf();
    vec_dot4((const float *const *)a, x, n, d4);
    int same = 1;
    for (int h = 0; h < 4; h++) {
        float d = vec_dot(a[h], x, n);
        same &= !memcmp(&d, &d4[h], sizeof d);
    }
    CHECK(same, "%s: vec_dot4 == 4 x vec_dot bit for bit (n %d)", cpu_isa_name(cpu_isa()), n);
    vec_axpy4(y, f, x, n);
    for (int h = 0; h < 4; h++) vec_axpy(y1[h], f[h], x, n);
    same = 1;
    for (int h = 0; h < 4; h++) same &= !memcmp(y[h], y1[h], 600 * sizeof(float));
    CHECK(same, "%s: vec_axpy4 == 4 x vec_axpy bit for bit (n %d)", cpu_isa_name(cpu_isa()), n);
    for (int h = 0; h < 4; h++) { free(a[h]); free(y[h]); free(y1[h]); }

    /* ReLU-weighted head sum against the scalar loop */
    int nh = 64, m = 1000 + (int)(rnd32() % 40), ld = m + 7;
    float *xs = malloc((size_t)nh * ld * sizeof(float)), w[64], *r1 = calloc((size_t)m, sizeof(float)),
          *r2 = calloc((size_t)m, sizeof(float));
    for (int i = 0; i < nh * ld; i++) xs[i] = rndf();
    for (int h = 0; h < nh; h++) w[h] = rndf();
    vec_relu_weighted_sum(r1, xs, ld, nh, w, m);
    for (int h = 0; h < nh; h++)
        for (int j = 0; j < m; j++) {
            volatile float p = xs[(size_t)h * ld + j] * w[h];   /* rounded product, then the add */
            if (xs[(size_t)h * ld + j] > 0.0f) r2[j] += p;
        }
    CHECK(!memcmp(r1, r2, (size_t)m * sizeof(float)), "%s: vec_relu_weighted_sum == scalar loop bit for bit",
          cpu_isa_name(cpu_isa()));
    free(xs); free(r1); free(r2);
}

TEST(vec_multi_equals_single) {
    for (int lvl = (int)cpu_best_isa(); lvl >= 0; lvl--) {
        cpu_set_isa((cpu_isa_level)lvl);
        for (int rep = 0; rep < 20; rep++) check_vec_multi();
    }
    cpu_set_isa(cpu_best_isa());
}

int main(void) {
    RUN(topk_order);
    RUN(vec_multi_equals_single);
    return check_summary();
}
