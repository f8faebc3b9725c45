/*
 * cmd_chat_parse.c - `dsv4 chat-parse`: parse DeepSeek-V4 model output into
 * reasoning, content and tool calls (parse_message_from_completion_text).
 *
 *   dsv4 chat-parse --jsonl IN
 *       lines shaped like tests/data/chat/golden-parse.jsonl (text,
 *       thinking_mode) -> one line each: {"result": {...}} or
 *       {"error": {"type": ..., "message": ...}}
 *   dsv4 chat-parse [--mode chat|thinking] [--stream] [FILE|-]
 *       parse one output read from FILE (default stdin) and print the
 *       result object, or the error (exit 1).  --stream feeds the text to
 *       the incremental parser byte by byte and prints its events as JSON
 *       lines instead.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dsv4_chat.h"
#include "text/pyjson.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f, "usage: dsv4 chat-parse --jsonl IN\n"
               "       dsv4 chat-parse [--mode chat|thinking] [--stream] [FILE|-]\n"
               "Parses DeepSeek-V4 model output (reasoning, content, DSML tool calls).\n"
               "Default mode: chat.\n");
}

static void parse_line(pjbuf *out, const char *line, size_t len) {
    char err[512];
    pj_arena *a = pj_arena_new();
    pj *in = pj_parse(a, line, len, err, sizeof err);
    pj *text = in ? pj_get(in, "text") : NULL, *mode = in ? pj_get(in, "thinking_mode") : NULL;
    if (!text || text->type != PJ_STR) {
        const char *msg = in ? "line has no \"text\" string" : err;
        pjb_puts(out, "{\"error\": {\"type\": \"InputError\", \"message\": ");
        pj_dumps_str(out, msg, strlen(msg), 0);
        pjb_puts(out, "}}");
    } else {
        char *res = dsv4_dsml_parse_json(text->s, text->len, pj_is_str(mode, "thinking"));
        pjb_puts(out, res);
        free(res);
    }
    pj_arena_free(a);
}

static int run_jsonl(const char *path) {
    char err[512];
    size_t len;
    char *text = read_file(path, &len, err, sizeof err);
    if (!text) { fprintf(stderr, "dsv4 chat-parse: %s\n", err); return 1; }
    pjbuf out;
    pjb_init(&out);
    char *end = text + len;
    for (char *line = text; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ll = (size_t)((nl ? nl : end) - line);
        if (ll && line[ll - 1] == '\r') ll--;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k < ll) {
            parse_line(&out, line, ll);
            pjb_putc(&out, '\n');
            fwrite(out.p, 1, out.len, stdout);
            out.len = 0;
        }
        line = nl ? nl + 1 : end;
    }
    pjb_free(&out);
    free(text);
    return 0;
}

static const char *const EVENT_NAMES[] = {"", "reasoning", "content", "tool_start", "tool_args",
                                          "tool_end", "error"};

static void print_event(void *user, const dsv4_dsml_event *ev) {
    (void)user;
    pjbuf b;
    pjb_init(&b);
    pjb_printf(&b, "{\"event\": \"%s\", \"index\": %d", EVENT_NAMES[ev->kind], ev->index);
    if (ev->name) { pjb_puts(&b, ", \"name\": "); pj_dumps_str(&b, ev->name, ev->name_len, 0); }
    if (ev->text) { pjb_puts(&b, ", \"text\": "); pj_dumps_str(&b, ev->text, ev->len, 0); }
    pjb_puts(&b, "}\n");
    fwrite(b.p, 1, b.len, stdout);
    pjb_free(&b);
}

static char *read_input(const char *path, size_t *len) {
    char err[512];
    if (strcmp(path, "-")) {
        char *t = read_file(path, len, err, sizeof err);
        if (!t) fprintf(stderr, "dsv4 chat-parse: %s\n", err);
        return t;
    }
    pjbuf b;
    pjb_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, stdin)) > 0) pjb_putn(&b, chunk, n);
    pjb_putn(&b, "", 0);
    *len = b.len;
    return pjb_steal(&b);
}

int cmd_chat_parse(int argc, char **argv) {
    const char *jsonl = NULL, *path = "-";
    int thinking = 0, stream = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--stream")) stream = 1;
        else if (!strcmp(a, "--jsonl") && i + 1 < argc) jsonl = argv[++i];
        else if (!strcmp(a, "--mode") && i + 1 < argc) {
            const char *m = argv[++i];
            if (!strcmp(m, "thinking")) thinking = 1;
            else if (!strcmp(m, "chat")) thinking = 0;
            else { fprintf(stderr, "dsv4 chat-parse: --mode must be chat or thinking\n"); return 2; }
        } else if (a[0] != '-' || !strcmp(a, "-")) path = a;
        else { usage(stderr); return 2; }
    }
    if (jsonl) return run_jsonl(jsonl);

    size_t len;
    char *text = read_input(path, &len);
    if (!text) return 1;
    int rc;
    if (stream) {
        dsv4_dsml_stream *s = dsv4_dsml_stream_new(thinking, print_event, NULL);
        for (size_t i = 0; i < len; i++) dsv4_dsml_stream_feed(s, text + i, 1);
        rc = dsv4_dsml_stream_finish(s) < 0;
        dsv4_dsml_stream_free(s);
    } else {
        char *res = dsv4_dsml_parse_json(text, len, thinking);
        rc = strncmp(res, "{\"result\"", 9) != 0;
        printf("%s\n", res);
        free(res);
    }
    free(text);
    return rc;
}
