#!/bin/sh
# llamacpp-logits.sh - per-position logits of llama.cpp on a GGUF, for the
# dsv4-vs-llama.cpp cross-check in docs/gguf.md.
#
#   bench/llamacpp-logits.sh LLAMA_BUILD_DIR MODEL.gguf IDS OUT.f32 [--decode]
#
# Builds (once, into LLAMA_BUILD_DIR/dsv4-logits) a small C program against
# the libllama of an existing llama.cpp build (see bench/vs-llamacpp.sh for
# how that build is made); nothing of llama.cpp enters this repository.
# IDS is a comma-separated token list; OUT gets len(IDS) x n_vocab float32
# rows: row t = logits after token t.  Without --decode the whole list is one
# batch (prefill); with --decode one token per llama_decode call.  The KV
# cache is F32 so that only the weights' and the kernels' arithmetic differs.
set -e
B=$1; M=$2; IDS=$3; OUT=$4; MODE=${5:-}
SRC=$(cd "$(dirname "$0")" && pwd)
LSRC=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$B/CMakeCache.txt")
TOOL=$B/dsv4-logits
if [ ! -x "$TOOL" ] || [ "$0" -nt "$TOOL" ]; then
    cat > "$B/dsv4-logits.c" <<'C'
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
static void quiet(enum ggml_log_level l, const char *t, void *u) { (void)u; if (l >= GGML_LOG_LEVEL_ERROR) fputs(t, stderr); }
int main(int argc, char **argv) {
    if (argc < 4) { fprintf(stderr, "usage: dsv4-logits MODEL IDS OUT [decode]\n"); return 2; }
    int decode = argc > 4;
    llama_log_set(quiet, NULL);
    llama_backend_init();
    struct llama_model_params mp = llama_model_default_params();
    struct llama_model *model = llama_model_load_from_file(argv[1], mp);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    int n = 1; for (const char *p = argv[2]; *p; p++) n += *p == ',';
    llama_token *ids = malloc(sizeof *ids * n);
    char *s = argv[2]; for (int i = 0; i < n; i++) ids[i] = (llama_token)strtol(s, &s, 10), s += *s == ',';
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = n + 16; cp.n_batch = n + 16; cp.n_ubatch = n + 16; cp.n_seq_max = 1;
    cp.n_threads = cp.n_threads_batch = 2;
    cp.type_k = GGML_TYPE_F32; cp.type_v = GGML_TYPE_F32;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) { fprintf(stderr, "cannot create context\n"); return 1; }
    int V = llama_vocab_n_tokens(llama_model_get_vocab(model));
    FILE *f = fopen(argv[3], "wb");
    struct llama_batch b = llama_batch_init(n, 0, 1);
    for (int start = 0; start < n; ) {
        int len = decode ? 1 : n;
        b.n_tokens = len;
        for (int i = 0; i < len; i++) {
            b.token[i] = ids[start + i]; b.pos[i] = start + i; b.n_seq_id[i] = 1; b.seq_id[i][0] = 0; b.logits[i] = 1;
        }
        if (llama_decode(ctx, b)) { fprintf(stderr, "decode failed at %d\n", start); return 1; }
        for (int i = 0; i < len; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), V, f);
        start += len;
    }
    fclose(f);
    llama_batch_free(b);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
C
    cc -O2 -o "$TOOL" "$B/dsv4-logits.c" -I"$LSRC/include" -I"$LSRC/ggml/include" -L"$B/bin" -lllama -lggml -lggml-base \
        -Wl,-rpath,"$B/bin"
fi
if [ "$MODE" = "--decode" ]; then "$TOOL" "$M" "$IDS" "$OUT" decode; else "$TOOL" "$M" "$IDS" "$OUT"; fi
