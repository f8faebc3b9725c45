/*
 * test_ops.c - the model's small shared operations against straightforward
 * definitions: top-k selection (both algorithms give the reference order:
 * higher score first, ties by lower index), and the multi-vector forms of
 * the attention primitives, which must equal the single-vector calls bit
 * for bit (the model relies on it for numerics that do not depend on how
 * heads are grouped); the float -> BF16 conversion against numfmt.h's, and
 * FAST mode's SwiGLU against its formula.
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

    /* the attention's blocks: four queries against two keys, and nx value
     * vectors added in order into four accumulators (nx 0 .. 9, lengths
     * with and without a 64-column remainder) */
    float x2[600], d8[8];
    for (int i = 0; i < 600; i++) x2[i] = rndf();
    const float *b2[2] = {x, x2};
    vec_dot4x2((const float *const *)a, b2, n, d8);
    same = 1;
    for (int h = 0; h < 4; h++)
        for (int k = 0; k < 2; k++) {
            float d = vec_dot(a[h], b2[k], n);
            same &= !memcmp(&d, &d8[h * 2 + k], sizeof d);
        }
    CHECK(same, "%s: vec_dot4x2 == 8 x vec_dot bit for bit (n %d)", cpu_isa_name(cpu_isa()), n);
    enum { NX = 9, LDA = 11 };
    const float *xs9[NX];
    float p[4 * LDA];
    for (int j = 0; j < NX; j++) xs9[j] = a[j % 4] + j % 5;
    for (int i = 0; i < 4 * LDA; i++) p[i] = rndf();
    int nx = (int)(rnd32() % (NX + 1)), n2 = n - (int)(rnd32() % 2) * 64;
    vec_axpy4_xs(y, p, LDA, xs9, nx, n2);
    for (int j = 0; j < nx; j++) {
        float pj[4] = {p[j], p[LDA + j], p[2 * LDA + j], p[3 * LDA + j]};
        vec_axpy4(y1, pj, xs9[j], n2);
    }
    same = 1;
    for (int h = 0; h < 4; h++) same &= !memcmp(y[h], y1[h], 600 * sizeof(float));
    CHECK(same, "%s: vec_axpy4_xs == %d x vec_axpy4 bit for bit (n %d)", cpu_isa_name(cpu_isa()), nx, n2);
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

/* vec_f32_to_bf16 against numfmt.h's f32_to_bf16, bit for bit, on every
 * ISA: rounding ties both ways, carries into the exponent, infinities,
 * NaNs (signalling ones too), subnormals, and random bit patterns, with
 * lengths that leave every tail size. */
TEST(vec_f32_to_bf16_is_f32_to_bf16) {
    static const uint32_t special[] = {0x00000000u, 0x80000000u, 0x3f808000u, 0x3f818000u, 0x3f80ffffu,
                                       0x7f7fffffu, 0xff7fffffu, 0x7f800000u, 0xff800000u, 0x7fc00000u,
                                       0x7f800001u, 0xffbfffffu, 0x00000001u, 0x007fffffu, 0x807f8000u,
                                       0x3fffffffu, 0x477fe000u};
    enum { N = 1000 };
    float x[N];
    uint16_t got[N], want[N];
    for (int lvl = (int)cpu_best_isa(); lvl >= 0; lvl--) {
        cpu_set_isa((cpu_isa_level)lvl);
        for (int rep = 0; rep < 20; rep++) {
            int n = rep < 17 ? rep + 1 : N - (int)(rnd32() % 40);
            for (int i = 0; i < n; i++) {
                uint32_t u = i < (int)(sizeof special / sizeof special[0]) && rep % 2 ? special[i] : rnd32() << 8 ^ rnd32();
                memcpy(&x[i], &u, 4);
                want[i] = f32_to_bf16(x[i]);
            }
            memset(got, 0xAB, sizeof got);
            vec_f32_to_bf16(x, got, (size_t)n);
            int same = !memcmp(got, want, (size_t)n * 2), untouched = 1;
            for (int i = n; i < N; i++) untouched &= got[i] == 0xABAB;
            CHECK(same && untouched, "%s: vec_f32_to_bf16 == f32_to_bf16 bit for bit (n %d; nothing past n written)",
                  cpu_isa_name(cpu_isa()), n);
        }
    }
    cpu_set_isa(cpu_best_isa());
}

/* FAST mode's SwiGLU: within 4 ulp-ish (2e-6 relative, or 1e-30 absolute
 * near zero) of the formula with libm's expf, on every ISA, from -100 to
 * 100 (exp's clamps on both sides), with and without the clamp limit and
 * the routing weight; and one value gives the same bits wherever it sits
 * in a row (tails go through the same arithmetic), so a token's result
 * does not depend on the batch. */
static float swiglu_def(float g, float u, float lim, float w) {
    if (lim > 0) { u = fminf(fmaxf(u, -lim), lim); g = fminf(g, lim); }
    return (float)(w * ((double)g / (1.0 + exp(-(double)g)) * u));
}
TEST(vec_swiglu_matches_definition) {
    enum { N = 300 };
    float g[N], u[N], g0[N];
    for (int lvl = (int)cpu_best_isa(); lvl >= 0; lvl--) {
        cpu_set_isa((cpu_isa_level)lvl);
        for (int rep = 0; rep < 8; rep++) {
            float lim = rep & 1 ? 7.0f : 0.0f, w = rep & 2 ? 0.37f : 1.0f;
            int n = N - rep * 7, bad = -1;
            for (int i = 0; i < n; i++) {
                g[i] = g0[i] = rep < 4 ? -100.0f + 200.0f * (float)i / (float)(n - 1) : 12.0f * rndf();
                u[i] = 3.0f * rndf();
            }
            vec_swiglu(g, u, n, lim, w, 1);
            for (int i = 0; i < n && bad < 0; i++) {
                float want = swiglu_def(g0[i], u[i], lim, w);
                if (!(fabsf(g[i] - want) <= 2e-6f * fabsf(want) + 1e-30f)) bad = i;
            }
            CHECK(bad < 0, "%s: vec_swiglu within 2e-6 of the definition (lim %g, w %g; first miss at %d: %g for %g)",
                  cpu_isa_name(cpu_isa()), lim, w, bad, bad < 0 ? 0.0 : g[bad],
                  bad < 0 ? 0.0 : swiglu_def(g0[bad], u[bad], lim, w));
        }
        /* one (g, u) at every position of rows of every length up to 40 */
        int same = 1;
        float ref = 0;
        for (int n = 1; n <= 40; n++)
            for (int p = 0; p < n; p++) {
                for (int i = 0; i < n; i++) { g[i] = 0.5f * (float)i - 3.0f; u[i] = 1.0f; }
                g[p] = 1.7f; u[p] = -2.3f;
                vec_swiglu(g, u, n, 0.0f, 1.0f, 1);
                if (n == 1) ref = g[0];
                same &= !memcmp(&g[p], &ref, 4);
            }
        CHECK(same, "%s: vec_swiglu gives one value the same bits at every position of every row length",
              cpu_isa_name(cpu_isa()));
    }
    cpu_set_isa(cpu_best_isa());
}

/* mHC's post-mix: the scalar expression per element (old rows read
 * before any is written), bit for bit on every ISA, for stream counts 1-16
 * and column counts with every tail. */
TEST(vec_hc_post_is_the_loop) {
    enum { HC = 16, D = 70 };
    static float h[HC * D], h0[HC * D], want[HC * D], f[D], post[HC], comb[HC * HC];
    for (int lvl = (int)cpu_best_isa(); lvl >= 0; lvl--) {
        cpu_set_isa((cpu_isa_level)lvl);
        for (int rep = 0; rep < 12; rep++) {
            int hc = rep % 3 == 0 ? 4 : rep % 3 == 1 ? 1 + (int)(rnd32() % 16) : 16;
            int d = 1 + (int)(rnd32() % D);
            for (int i = 0; i < hc * d; i++) h[i] = h0[i] = 4.0f * rndf();
            for (int i = 0; i < d; i++) f[i] = rndf();
            for (int i = 0; i < hc; i++) post[i] = rndf();
            for (int i = 0; i < hc * hc; i++) comb[i] = rndf();
            for (int k = 0; k < hc; k++)
                for (int c = 0; c < d; c++) {
                    float sum = 0.0f;
                    for (int i = 0; i < hc; i++) { float p = comb[i * hc + k] * h0[i * d + c]; sum += p; }
                    float pf = post[k] * f[c];
                    want[k * d + c] = pf + sum;
                }
            vec_hc_post(h, f, post, comb, hc, d);
            CHECK(!memcmp(h, want, (size_t)hc * d * sizeof(float)), "%s: vec_hc_post == the loop bit for bit (hc %d, D %d)",
                  cpu_isa_name(cpu_isa()), hc, d);
        }
    }
    cpu_set_isa(cpu_best_isa());
}

int main(void) {
    RUN(topk_order);
    RUN(vec_multi_equals_single);
    RUN(vec_f32_to_bf16_is_f32_to_bf16);
    RUN(vec_swiglu_matches_definition);
    RUN(vec_hc_post_is_the_loop);
    return check_summary();
}
