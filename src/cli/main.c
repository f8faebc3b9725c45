/*
 * main.c - the `dsv4` program: one binary, one subcommand per job.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
    int computes;   /* runs the model: wants huge-page malloc (see below) */
} subcommand;

static const subcommand commands[] = {
    {"run",           cmd_run,           "generate a reply to one prompt, streamed", 1},
    {"chat",          cmd_chat,          "interactive multi-turn chat in the terminal", 1},
    {"serve",         cmd_serve,         "OpenAI/Anthropic-compatible HTTP server", 1},
    {"info",          cmd_info,          "architecture summary and tensor inventory check", 0},
    {"logits",        cmd_logits,        "run ids through the model, write logits (safetensors)", 1},
    {"bench",         cmd_bench,         "measure bandwidth, decode and prefill speed", 1},
    {"gen",           cmd_gen,           "write a random-weight checkpoint in the release format", 0},
    {"convert",       cmd_convert,       "convert a checkpoint to a deepseek4 GGUF file", 1},
    {"tokenize",      cmd_tokenize,      "text to token ids", 0},
    {"detokenize",    cmd_detokenize,    "token ids to text", 0},
    {"chat-template", cmd_chat_template, "render messages with the V4 chat encoding", 0},
    {"chat-parse",    cmd_chat_parse,    "parse model output (reasoning, content, DSML tool calls)", 0},
    {"eval",          cmd_eval,          "evaluate OpenAI-compatible endpoints, write a report", 0},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsv4 <command> [options]   (dsv4 <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

/* The forward pass mallocs activation buffers of up to tens of MiB per
 * product (a 512-token prefill's wq_b output is 64 MiB), which glibc serves
 * with fresh mmaps.  On virtual machines a 4 KiB page fault can cost more
 * than the arithmetic: 12.7 us per fault measured here, 208 ms to first-
 * touch 64 MiB, against 70 ms for the product itself.  glibc's tunable
 * glibc.malloc.hugetlb=1 makes malloc madvise its memory for transparent
 * huge pages (one fault per 2 MiB), and mmap_max=0 with a high trim
 * threshold keeps freed buffers in the heap for the next product instead of
 * unmapping them (zeroing fresh pages costs too); tunables are read at
 * start-up only, so the commands that compute re-execute themselves once
 * with them set.
 * DSV4_NO_REEXEC=1 prevents it; under valgrind it is skipped. */
static void reexec_with_hugepage_malloc(char **argv) {
    const char *t = getenv("GLIBC_TUNABLES"), *pre = getenv("LD_PRELOAD");
    if (getenv("DSV4_NO_REEXEC") || (t && strstr(t, "glibc.malloc.hugetlb"))) return;
    if (pre && strstr(pre, "vgpreload")) return;
    char buf[2048];
    if (snprintf(buf, sizeof buf, "%s%sglibc.malloc.hugetlb=1:glibc.malloc.mmap_max=0:"
                 "glibc.malloc.trim_threshold=8589934592", t ? t : "", t && *t ? ":" : "") >= (int)sizeof buf)
        return;
    if (setenv("GLIBC_TUNABLES", buf, 1)) return;
    execv("/proc/self/exe", argv);
    /* exec failed (no /proc?): carry on with the default malloc */
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout); return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            if (commands[i].computes) reexec_with_hugepage_malloc(argv);
            return commands[i].fn(argc - 1, argv + 1);
        }
    fprintf(stderr, "dsv4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
