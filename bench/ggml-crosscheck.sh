#!/bin/sh
# ggml-crosscheck.sh - dsv4's GGUF block decoders and quantisers against
# ggml's own (libggml-base of a llama.cpp build made by vs-llamacpp.sh).
#
#   bench/ggml-crosscheck.sh LLAMA_BUILD_DIR
#
# For every type dsv4 reads: random blocks decoded by both must agree bit
# for bit; for the types dsv4 quantises (F16, Q8_0, MXFP4): random rows
# quantised by both must give identical bytes.  Builds a small program in
# LLAMA_BUILD_DIR (nothing of llama.cpp enters this repository).
set -e
B=$1
REPO=$(cd "$(dirname "$0")/.." && pwd)
cat > "$B/dsv4-xcheck.c" <<'C'
/* ggml's functions are looked up with dlsym: libdsv4 and libggml both
 * export a ggml_row_size, so the two headers cannot meet in one file. */
#include "num/ggml_quants.h"
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
typedef void (*deq_fn)(const void *, float *, long);
typedef void (*q_fn)(const float *, void *, long);
static unsigned long long s = 88172645463325252ull;
static unsigned r8(void) { s ^= s << 13; s ^= s >> 7; s ^= s << 17; return (unsigned)(s >> 24) & 255; }
int main(int argc, char **argv) {
    void *h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
    if (!h) { fprintf(stderr, "%s\n", dlerror()); return 1; }
    struct { const char *deq, *q; wtype w; const char *n; } t[] = {
        {"ggml_fp16_to_fp32_row", "ggml_fp32_to_fp16_row", W_F16, "F16"},
        {"dequantize_row_q8_0", "quantize_row_q8_0_ref", W_Q8_0, "Q8_0"},
        {"dequantize_row_mxfp4", "quantize_row_mxfp4_ref", W_GG_MXFP4, "MXFP4"},
        {"dequantize_row_q2_K", NULL, W_Q2_K, "Q2_K"}, {"dequantize_row_q3_K", NULL, W_Q3_K, "Q3_K"},
        {"dequantize_row_q4_K", NULL, W_Q4_K, "Q4_K"}, {"dequantize_row_q5_K", NULL, W_Q5_K, "Q5_K"},
        {"dequantize_row_q6_K", NULL, W_Q6_K, "Q6_K"}, {"dequantize_row_iq2_xxs", NULL, W_IQ2_XXS, "IQ2_XXS"},
        {"dequantize_row_iq3_xxs", NULL, W_IQ3_XXS, "IQ3_XXS"}};
    enum { K = 4096 };
    static unsigned char buf[K * 2], q1[K * 2], q2[K * 2];
    static float a[K], b[K], x[K];
    int fails = 0;
    for (unsigned i = 0; i < sizeof t / sizeof t[0]; i++) {
        deq_fn deq = (deq_fn)dlsym(h, t[i].deq);
        if (!deq) { printf("%s: missing in libggml-base\n", t[i].deq); fails++; continue; }
        size_t rs = ggml_row_size(t[i].w, K);
        long bad = 0, nan = 0;
        for (int rep = 0; rep < 200; rep++) {
            for (size_t k = 0; k < rs; k++) buf[k] = (unsigned char)r8();
            deq(buf, a, K);
            ggml_dequant_row(t[i].w, buf, b, K);
            for (int k = 0; k < K; k++) {
                if (a[k] != a[k] && b[k] != b[k]) { nan++; continue; }
                if (memcmp(&a[k], &b[k], 4)) bad++;
            }
        }
        printf("%-8s dequant: %ld of %d values differ (%ld NaN/inf-derived in both)\n", t[i].n, bad, 200 * K, nan);
        fails += bad != 0;
        q_fn q = t[i].q ? (q_fn)dlsym(h, t[i].q) : NULL;
        if (q) {
            long qb = 0;
            for (int rep = 0; rep < 50; rep++) {
                for (int k = 0; k < K; k++) x[k] = ((float)r8() - 127.5f) / (rep % 5 == 0 ? 1000.0f : 20.0f) * (k % 97 == 0 ? 30 : 1);
                q(x, q1, K);
                ggml_quantize_row(t[i].w, x, q2, K);
                qb += memcmp(q1, q2, rs) != 0;
            }
            printf("%-8s quantise: %ld of 50 rows of %d differ\n", t[i].n, qb, K);
            fails += qb != 0;
        }
    }
    printf("%s\n", fails ? "MISMATCH" : "all identical");
    return fails != 0;
}
C
cc -O1 -std=c11 -D_GNU_SOURCE -o "$B/dsv4-xcheck" "$B/dsv4-xcheck.c" -I"$REPO/src" -I"$REPO/include" \
    "$REPO/build/libdsv4.a" -ldl -lm -pthread
"$B/dsv4-xcheck" "$B/bin/libggml-base.so"
