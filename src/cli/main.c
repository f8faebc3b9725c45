/*
 * main.c - the `dsv4` program: one binary, one subcommand per job.
 */
#include <stdio.h>
#include <string.h>
#include "cli/cli.h"

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *help;
} subcommand;

static const subcommand commands[] = {
    {"run",           cmd_run,           "generate a reply to one prompt, streamed"},
    {"chat",          cmd_chat,          "interactive multi-turn chat in the terminal"},
    {"serve",         cmd_serve,         "OpenAI/Anthropic-compatible HTTP server"},
    {"info",          cmd_info,          "architecture summary and tensor inventory check"},
    {"logits",        cmd_logits,        "run ids through the model, write logits (safetensors)"},
    {"bench",         cmd_bench,         "measure bandwidth, decode and prefill speed"},
    {"gen",           cmd_gen,           "write a random-weight checkpoint in the release format"},
    {"convert",       cmd_convert,       "convert a checkpoint to a deepseek4 GGUF file"},
    {"tokenize",      cmd_tokenize,      "text to token ids"},
    {"detokenize",    cmd_detokenize,    "token ids to text"},
    {"chat-template", cmd_chat_template, "render messages with the V4 chat encoding"},
    {"chat-parse",    cmd_chat_parse,    "parse model output (reasoning, content, DSML tool calls)"},
    {"eval",          cmd_eval,          "evaluate OpenAI-compatible endpoints, write a report"},
};

static void usage(FILE *f) {
    fprintf(f, "usage: dsv4 <command> [options]   (dsv4 <command> --help for its options)\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        fprintf(f, "  %-14s %s\n", commands[i].name, commands[i].help);
}

int main(int argc, char **argv) {
    if (argc < 2) { usage(stderr); return 2; }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout); return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof commands[0]; i++)
        if (!strcmp(argv[1], commands[i].name))
            return commands[i].fn(argc - 1, argv + 1);
    fprintf(stderr, "dsv4: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
