/*
 * cmd_gen.c - `dsv4 gen`: write a random-weight DeepSeek-V4 checkpoint in
 * the release format (see src/model/gen.h), or print the path of the
 * built-in default model.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"
#include "model/gen.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv4 gen --preset tiny|default|flash|pro [options] -o DIR\n"
            "       dsv4 gen --default-dir      print (and create on first use) the built-in default model\n"
            "\n"
            "Writes a random-weight DeepSeek-V4 checkpoint in the exact release format: config.json,\n"
            "model-0000K-of-0000N.safetensors + model.safetensors.index.json (FP8 E4M3 linears with\n"
            "128x128 UE8M0 scales, MXFP4 routed experts, BF16/F32/I64 like the release), the MTP layer,\n"
            "and tokenizer.json/tokenizer_config.json when the vocabulary is the real 129280.\n"
            "\n"
            "presets:\n"
            "  tiny     the golden case-A geometry: dim 256, 4 layers [0,4,16,4], vocab 1024, window 8\n"
            "  default  the built-in model: dim 256, 5 layers [0,4,128,4,16], 16 experts top-4, vocab 129280\n"
            "  flash    V4-Flash shapes (dim 4096, 64 heads, 256 experts top-6, 43 layers); with --layers N\n"
            "           the layer types are [0,4,128,4,128,...] (so --layers 4 gives [0,4,128,4])\n"
            "  pro      V4-Pro shapes (dim 7168, 128 heads, 384 experts, 61 layers); --layers N takes the\n"
            "           first N of the release list [128,128,4,128,...]\n"
            "options:\n"
            "  --layers N      main layers (hash layers become min(3, N) for flash/pro)\n"
            "  --experts E     routed experts per layer\n"
            "  --topk K        experts per token\n"
            "  --vocab V       vocabulary size\n"
            "  --dim D         hidden size (a multiple of 128)\n"
            "  --seed S        random seed (default 0); output is deterministic per seed\n"
            "  --shard-mb M    target shard size in MiB\n"
            "  --fp8-experts   routed experts in FP8 with 128x128 scales (the -Base variant)\n"
            "  --threads T     worker threads (default 2)\n"
            "  --dry-run       print config.json and the size, write nothing\n"
            "  -q              no progress output\n"
            "  -o DIR          output directory (created if missing)\n");
}

/* Progress on stderr: a line redrawn 4 times a second on a terminal, else
 * (logs, CI) one line per 10% of large checkpoints. */
typedef struct { double t0, last; int tty, quiet, decile; } progress_state;

static void on_progress(void *ud, uint64_t done, uint64_t total) {
    progress_state *p = ud;
    double now = now_sec(), el = now - p->t0, pct = total ? 100.0 * (double)done / (double)total : 100.0;
    if (p->quiet) return;
    if (p->tty) {
        if (now - p->last < 0.25 && done < total) return;
        p->last = now;
        fprintf(stderr, "\rgen: %5.1f%%  %.2f / %.2f GB  %.2f GB/s ", pct, (double)done / 1e9, (double)total / 1e9,
                el > 0 ? (double)done / 1e9 / el : 0.0);
    } else {
        if (total < (1ull << 30) || (int)(pct / 10) <= p->decile) return;
        p->decile = (int)(pct / 10);
        fprintf(stderr, "gen: %3d%%  %.2f / %.2f GB  %.1f s\n", p->decile * 10, (double)done / 1e9, (double)total / 1e9, el);
    }
    fflush(stderr);
}

static int parse_int(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || !*v || *end || x < lo || x > hi) {
        fprintf(stderr, "dsv4 gen: %s needs an integer in %ld..%ld\n", opt, lo, hi);
        return -1;
    }
    *out = x;
    return 0;
}

int cmd_gen(int argc, char **argv) {
    const char *preset = NULL, *out = NULL;
    long layers = 0, experts = 0, topk = 0, vocab = 0, dim = 0, shard_mb = 0, threads = 2;
    unsigned long long seed = 0;
    int fp8 = 0, quiet = 0, default_dir = 0, dry = 0;
    char err[512];
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--fp8-experts")) fp8 = 1;
        else if (!strcmp(a, "-q") || !strcmp(a, "--quiet")) quiet = 1;
        else if (!strcmp(a, "--default-dir")) default_dir = 1;
        else if (!strcmp(a, "--dry-run")) dry = 1;
        else if (!strcmp(a, "--preset") && v) preset = argv[++i];
        else if ((!strcmp(a, "-o") || !strcmp(a, "--out")) && v) out = argv[++i];
        else if (!strcmp(a, "--seed") && v) {
            char *end;
            seed = strtoull(v, &end, 10);
            if (!*v || *end || *v == '-') { fprintf(stderr, "dsv4 gen: --seed needs a non-negative integer\n"); return 2; }
            i++;
        }
#define INTOPT(name, var, lo, hi) \
        else if (!strcmp(a, name)) { if (parse_int(name, v, lo, hi, &x)) return 2; var = x; i++; }
        INTOPT("--layers", layers, 1, DSV4_MAX_LAYERS - 1)
        INTOPT("--experts", experts, 1, 65536)
        INTOPT("--topk", topk, 1, 64)
        INTOPT("--vocab", vocab, 2, 1 << 24)
        INTOPT("--dim", dim, 128, 65536)
        INTOPT("--shard-mb", shard_mb, 1, 1 << 20)
        INTOPT("--threads", threads, 1, 256)
#undef INTOPT
        else {
            fprintf(stderr, "dsv4 gen: unknown or incomplete option \"%s\"\n", a);
            usage(stderr);
            return 2;
        }
    }
    if (default_dir) {
        char dir[4096];
        if (dsv4_default_model_dir(dir, sizeof dir, err, sizeof err)) { fprintf(stderr, "dsv4 gen: %s\n", err); return 1; }
        printf("%s\n", dir);
        return 0;
    }
    if (!preset || (!out && !dry)) {
        fprintf(stderr, "dsv4 gen: %s is required\n", !preset ? "--preset" : "-o DIR");
        usage(stderr);
        return 2;
    }
    dsv4_gen_opts o;
    if (dsv4_gen_preset(preset, &o, err, sizeof err) ||
        dsv4_gen_override(&o, (int)layers, (int)experts, (int)topk, (int)vocab, (int)dim, err, sizeof err)) {
        fprintf(stderr, "dsv4 gen: %s\n", err);
        return 2;
    }
    o.seed = seed;
    o.fp8_experts = fp8;
    o.threads = (int)threads;
    if (shard_mb) o.shard_bytes = (uint64_t)shard_mb << 20;
    progress_state ps = {now_sec(), 0, !quiet && isatty(2), quiet, 0};
    o.progress = on_progress;
    o.progress_ud = &ps;

    const dsv4_config *c = &o.cfg;
    int nt = 0;
    uint64_t total = dsv4_gen_total_bytes(&o, &nt);
    if (!quiet) {
        fprintf(stderr, "dsv4 gen: preset %s seed %llu: dim %d, %d layers [", preset, seed, c->dim, c->n_layers);
        for (int i = 0; i < c->n_layers + c->n_mtp_layers; i++)
            fprintf(stderr, "%s%d", i == 0 ? "" : (i == c->n_layers ? " | mtp " : ","), c->compress_ratios[i]);
        fprintf(stderr, "], %d hash, %d experts top-%d (%s), vocab %d: %d tensors, %llu bytes (%.3f GB)\n",
                c->n_hash_layers, c->n_routed_experts, c->n_activated_experts, fp8 ? "fp8" : "fp4", c->vocab_size, nt,
                (unsigned long long)total, (double)total / 1e9);
    }
    if (dry) {
        char *js = dsv4_gen_config_json(&o);
        fputs(js, stdout);
        free(js);
        return 0;
    }
    if (dsv4_gen_write(&o, out, err, sizeof err)) {
        if (ps.tty) fputc('\n', stderr);
        fprintf(stderr, "dsv4 gen: %s\n", err);
        return 1;
    }
    double el = now_sec() - ps.t0;
    if (!quiet) {
        if (ps.tty) fputc('\n', stderr);
        fprintf(stderr, "dsv4 gen: wrote %s in %.2f s (%.2f GB/s), peak RSS %.0f MB\n", out, el,
                el > 0 ? (double)total / 1e9 / el : 0.0, peak_rss_mb());
    }
    return 0;
}
