/*
 * cmd_convert.c - `dsv4 convert`: a release checkpoint directory to a
 * deepseek4 GGUF file that both dsv4 and llama.cpp load.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "cli/cli.h"
#include "format/gguf_model.h"
#include "util/util.h"

typedef struct { double t0, last_t; int quiet; int last_pct; } bar;

static void progress(void *ctx, uint64_t done, uint64_t total, const char *name) {
    bar *b = ctx;
    if (b->quiet) return;
    int pct = total ? (int)(100.0 * (double)done / (double)total) : 100;
    double now = now_sec(), el = now - b->t0;
    /* redraw when the percentage moves or twice a second, not per tensor */
    if (pct == b->last_pct && now - b->last_t < 0.5 && done < total) return;
    b->last_t = now;
    int width = 30, fill = pct * width / 100;
    char line[64];
    memset(line, '#', (size_t)fill); memset(line + fill, '.', (size_t)(width - fill)); line[width] = 0;
    fprintf(stderr, "\r[%s] %3d%% %7.1f/%.1f GiB %5.1fs %-40.40s", line, pct, (double)done / (1 << 30),
            (double)total / (1 << 30), el, name);
    b->last_pct = pct;
}

static void usage(FILE *f) {
    fprintf(f, "usage: dsv4 convert -m DIR -o FILE.gguf [--type mxfp4-moe|q8_0|bf16|f32] [--tokenizer tokenizer.json]\n"
               "                    [--threads N] [--quiet]\n"
               "  mxfp4-moe  (default) the official ggml-org layout: MXFP4 routed experts (lossless repack),\n"
               "             Q8_0 for the FP8 matrices, BF16 kept, F32 vectors\n"
               "  q8_0       the same with Q8_0 routed experts\n"
               "  bf16, f32  every matrix BF16 / F32 (lossless)\n");
}

int cmd_convert(int argc, char **argv) {
    const char *dir = NULL, *out = NULL, *type = "mxfp4-moe", *tok = NULL;
    int threads = 0, quiet = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) dir = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && i + 1 < argc) out = argv[++i];
        else if ((!strcmp(a, "--type") || !strcmp(a, "-t")) && i + 1 < argc) type = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(a, "--threads") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) quiet = 1;
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else { fprintf(stderr, "dsv4 convert: unknown argument '%s'\n", a); usage(stderr); return 2; }
    }
    if (!dir || !out) { usage(stderr); return 2; }
    bar b = {now_sec(), 0, quiet, -1};
    char err[1024];
    if (gguf_convert(dir, out, type, tok, threads, progress, &b, err, sizeof err)) {
        if (!quiet) fputc('\n', stderr);
        fprintf(stderr, "dsv4 convert: %s\n", err);
        return 1;
    }
    if (!quiet) fprintf(stderr, "\nwrote %s (%s) in %.1fs\n", out, type, now_sec() - b.t0);
    return 0;
}
