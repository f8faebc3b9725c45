/*
 * cmd_serve.c - `dsv4 serve`: the OpenAI/Anthropic-compatible HTTP server.
 * Runs until SIGINT/SIGTERM.  With no -m it serves the built-in default
 * model.  Binds 127.0.0.1:8080 unless told otherwise.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "server/server.h"

static void usage(FILE *f) {
    fprintf(f,
        "usage: dsv4 serve [-m DIR] [options]\n"
        "  -m, --model DIR        model directory (default: the built-in default model)\n"
        "  --host ADDR            IPv4 address to bind (default 127.0.0.1)\n"
        "  --port N               TCP port (default 8080; 0 = any free port, printed)\n"
        "  --api-key KEY          require 'Authorization: Bearer KEY' or 'x-api-key: KEY'\n"
        "                         (default: $DSV4_API_KEY if set, else no authentication)\n"
        "  --ctx N                context length per sequence (default 4096)\n"
        "  --parallel N           sequences decoded together in one batch (default 8)\n"
        "  --queue N              waiting requests before 503 (default 64)\n"
        "  --cache-slots N        prefix-cache snapshots (default 8, 0 = off)\n"
        "  --prefill-chunk N      prompt tokens per engine call (default 512)\n"
        "  --max-body BYTES       request body limit (default 8388608)\n"
        "  --max-tokens-limit N   largest max_tokens accepted (default: the context)\n"
        "  --default-max-tokens N when a request gives none (default: rest of context)\n"
        "  --threads N            engine worker threads (default: all CPUs)\n");
}

int cmd_serve(int argc, char **argv) {
    const char *model = NULL;
    server_opts o;
    memset(&o, 0, sizeof o);
    o.host = "127.0.0.1";
    o.port = 8080;
    o.api_key = getenv("DSV4_API_KEY");
    o.sched.max_batch = 8;
    o.sched.max_queue = 64;
    o.sched.cache_slots = 8;
    o.sched.prefill_chunk = 512;
    int ctx = 4096, threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
#define OPT(name) (!strcmp(a, name) && v && ++i)
        if (OPT("-m") || (!strcmp(a, "--model") && v && ++i)) model = v;
        else if (OPT("--host")) o.host = v;
        else if (OPT("--port")) o.port = atoi(v);
        else if (OPT("--api-key")) o.api_key = v;
        else if (OPT("--ctx")) ctx = atoi(v);
        else if (OPT("--parallel")) o.sched.max_batch = atoi(v);
        else if (OPT("--queue")) o.sched.max_queue = atoi(v);
        else if (OPT("--cache-slots")) o.sched.cache_slots = atoi(v);
        else if (OPT("--prefill-chunk")) o.sched.prefill_chunk = atoi(v);
        else if (OPT("--max-body")) o.max_body = (size_t)atol(v);
        else if (OPT("--max-tokens-limit")) o.max_tokens_limit = atoi(v);
        else if (OPT("--default-max-tokens")) o.default_max_tokens = atoi(v);
        else if (OPT("--threads")) threads = atoi(v);
        else { fprintf(stderr, "dsv4 serve: unknown or incomplete option '%s'\n", a); usage(stderr); return 2; }
#undef OPT
    }
    if (o.port < 0 || o.port > 65535 || ctx < 16 || o.sched.max_batch < 1) {
        fprintf(stderr, "dsv4 serve: bad --port, --ctx or --parallel\n");
        return 2;
    }
    char dir[1024], err[512];
    if (gen_resolve_model_dir(model, dir, sizeof dir, err, sizeof err)) {
        fprintf(stderr, "dsv4 serve: %s\n", err);
        return 1;
    }
    /* block the stop signals in every thread; the main thread waits for them */
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
    gen_model gm;
    if (gen_model_open(&gm, dir, ctx, threads, err, sizeof err)) {
        fprintf(stderr, "dsv4 serve: %s\n", err);
        return 1;
    }
    server *s = server_start(&gm, &o, err, sizeof err);
    if (!s) {
        fprintf(stderr, "dsv4 serve: %s\n", err);
        gen_model_close(&gm);
        return 1;
    }
    fprintf(stderr, "dsv4 serve: model '%s' (%s), context %d, batch %d\n", gm.id, dir, gm.n_ctx, o.sched.max_batch);
    fprintf(stderr, "dsv4 serve: listening on http://%s:%d%s\n", o.host, server_port(s),
            o.api_key && *o.api_key ? " (API key required)" : "");
    int sig = 0;
    sigwait(&set, &sig);
    fprintf(stderr, "dsv4 serve: signal %d, shutting down\n", sig);
    server_stop(s);
    gen_model_close(&gm);
    return 0;
}
