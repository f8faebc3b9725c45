/*
 * cmd_chat_template.c - `dsv4 chat-template`: render a conversation with the
 * DeepSeek-V4 chat encoding (encode_messages), as text or token ids.
 *
 *   dsv4 chat-template [-t tokenizer.json | -m DIR] --messages M.json
 *       [--mode chat|thinking] [--reasoning-effort high|max]
 *       [--no-drop-thinking] [--no-bos] [--context C.json] [--tools T.json]
 *       [--ids]
 *   dsv4 chat-template [-t tokenizer.json | -m DIR] --jsonl IN
 *
 * --jsonl reads lines shaped like tests/data/chat/golden-encode.jsonl
 * (messages, thinking_mode, reasoning_effort, drop_thinking,
 * add_default_bos_token, context) and writes one line per input line:
 * {"prompt": ..., "ids": [...]} ("ids" only when a tokenizer is given), or
 * {"error": {"type": ..., "message": ...}} when the official encoder would
 * raise.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "dsv4_chat.h"
#include "dsv4_tokenizer.h"
#include "text/chat_internal.h"
#include "text/pyjson.h"
#include "util/util.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: dsv4 chat-template [-t tokenizer.json | -m DIR] --messages M.json\n"
            "           [--mode chat|thinking] [--reasoning-effort high|max] [--no-drop-thinking]\n"
            "           [--no-bos] [--context C.json] [--tools T.json] [--ids]\n"
            "       dsv4 chat-template [-t tokenizer.json | -m DIR] --jsonl IN\n"
            "Renders OpenAI-style messages with the DeepSeek-V4 chat encoding and prints the\n"
            "prompt (with --ids: its token ids as a JSON array).  Default mode: chat.\n");
}

static dsv4_tokenizer *load_tokenizer(const char *tok_path, const char *model_dir) {
    char path[4096], err[512];
    if (model_dir) tok_path = path_join(path, sizeof path, model_dir, "tokenizer.json");
    if (!tok_path) return NULL;
    dsv4_tokenizer *t = dsv4_tokenizer_load(tok_path, err, sizeof err);
    if (!t) fprintf(stderr, "dsv4 chat-template: %s: %s\n", tok_path, err);
    return t;
}

/* Appends the ids of text as a JSON array. */
static int put_ids(pjbuf *b, const dsv4_tokenizer *t, const char *text, size_t len) {
    int32_t *ids = NULL;
    size_t n = 0;
    if (dsv4_tokenize(t, text, len, &ids, &n) < 0) return -1;
    pjb_putc(b, '[');
    for (size_t i = 0; i < n; i++) pjb_printf(b, i ? ", %d" : "%d", ids[i]);
    pjb_putc(b, ']');
    free(ids);
    return 0;
}

/* "Type: message" -> {"error": {"type": ..., "message": ...}} */
static void put_error(pjbuf *b, const char *err) {
    const char *colon = strstr(err, ": ");
    pjb_puts(b, "{\"error\": {\"type\": ");
    if (colon) pj_dumps_str(b, err, (size_t)(colon - err), 0);
    else pjb_puts(b, "\"Error\"");
    pjb_puts(b, ", \"message\": ");
    const char *msg = colon ? colon + 2 : err;
    pj_dumps_str(b, msg, strlen(msg), 0);
    pjb_puts(b, "}}");
}

/* One golden-encode-shaped line to its output line. */
static void encode_line(pjbuf *out, const char *line, size_t len, const dsv4_tokenizer *t) {
    char err[4096];
    pj_arena *a = pj_arena_new();
    pj *in = pj_parse(a, line, len, err, sizeof err);
    char *prompt = NULL;
    if (!in || in->type != PJ_DICT) {
        put_error(out, in ? "TypeError: line is not a JSON object" : err);
        goto done;
    }
    pj *mode = pj_get(in, "thinking_mode"), *v;
    chat_values cv = {0, 1, 1, NULL, NULL};
    if (mode && !pj_is_str(mode, "chat") && !pj_is_str(mode, "thinking")) {
        pjbuf m;
        pjb_init(&m);
        pj_str(&m, mode);
        snprintf(err, sizeof err, "AssertionError: Invalid thinking_mode `%s`", m.p);
        pjb_free(&m);
        put_error(out, err);
        goto done;
    }
    cv.thinking = pj_is_str(mode, "thinking");
    if ((v = pj_get(in, "drop_thinking"))) cv.drop_thinking = pj_truthy(v);
    if ((v = pj_get(in, "add_default_bos_token"))) cv.add_default_bos_token = pj_truthy(v);
    if ((v = pj_get(in, "reasoning_effort")) && v->type != PJ_NULL) cv.effort = v;
    char *msg;
    size_t plen;
    if (chat_encode_values(a, pj_get(in, "messages"), pj_get(in, "context"), &cv, &prompt, &plen,
                           &msg) < 0) {
        put_error(out, msg);
        free(msg);
        goto done;
    }
    pjb_puts(out, "{\"prompt\": ");
    pj_dumps_str(out, prompt, plen, 0);
    if (t) {
        pjb_puts(out, ", \"ids\": ");
        if (put_ids(out, t, prompt, plen) < 0) pjb_puts(out, "null");
    }
    pjb_putc(out, '}');
done:
    free(prompt);
    pj_arena_free(a);
}

static int run_jsonl(const char *path, const dsv4_tokenizer *t) {
    char err[512];
    size_t len;
    char *text = read_file(path, &len, err, sizeof err);
    if (!text) { fprintf(stderr, "dsv4 chat-template: %s\n", err); return 1; }
    pjbuf out;
    pjb_init(&out);
    char *end = text + len;
    for (char *line = text; line < end;) {
        char *nl = memchr(line, '\n', (size_t)(end - line));
        size_t ll = (size_t)((nl ? nl : end) - line);
        if (ll && line[ll - 1] == '\r') ll--;
        size_t k = 0;
        while (k < ll && (line[k] == ' ' || line[k] == '\t')) k++;
        if (k < ll) {   /* blank lines are skipped */
            encode_line(&out, line, ll, t);
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

static char *read_json_file(const char *path) {
    char err[512];
    size_t len;
    char *text = read_file(path, &len, err, sizeof err);
    if (!text) fprintf(stderr, "dsv4 chat-template: %s\n", err);
    else if (strlen(text) != len) {
        fprintf(stderr, "dsv4 chat-template: %s: contains a NUL byte\n", path);
        free(text);
        return NULL;
    }
    return text;
}

int cmd_chat_template(int argc, char **argv) {
    const char *tok_path = NULL, *model_dir = NULL, *messages_path = NULL, *jsonl = NULL;
    const char *context_path = NULL, *tools_path = NULL;
    int want_ids = 0;
    dsv4_chat_opts o;
    dsv4_chat_opts_default(&o);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *next = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout); return 0; }
        else if (!strcmp(a, "--ids")) want_ids = 1;
        else if (!strcmp(a, "--no-drop-thinking")) o.drop_thinking = 0;
        else if (!strcmp(a, "--no-bos")) o.add_default_bos_token = 0;
        else if (!next) { usage(stderr); return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--tokenizer")) tok_path = argv[++i];
        else if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_dir = argv[++i];
        else if (!strcmp(a, "--messages")) messages_path = argv[++i];
        else if (!strcmp(a, "--jsonl")) jsonl = argv[++i];
        else if (!strcmp(a, "--context")) context_path = argv[++i];
        else if (!strcmp(a, "--tools")) tools_path = argv[++i];
        else if (!strcmp(a, "--reasoning-effort")) o.reasoning_effort = argv[++i];
        else if (!strcmp(a, "--mode")) {
            const char *m = argv[++i];
            if (!strcmp(m, "thinking")) o.thinking = 1;
            else if (!strcmp(m, "chat")) o.thinking = 0;
            else { fprintf(stderr, "dsv4 chat-template: --mode must be chat or thinking\n"); return 2; }
        } else { usage(stderr); return 2; }
    }
    if (!!messages_path == !!jsonl) { usage(stderr); return 2; }

    dsv4_tokenizer *t = NULL;
    if ((tok_path || model_dir) && (want_ids || jsonl)) {
        if (!(t = load_tokenizer(tok_path, model_dir))) return 1;
    } else if (want_ids) {
        fprintf(stderr, "dsv4 chat-template: --ids needs -t tokenizer.json or -m DIR\n");
        return 2;
    }
    if (jsonl) {
        int rc = run_jsonl(jsonl, t);
        if (t) dsv4_tokenizer_free(t);
        return rc;
    }

    int rc = 1;
    char *messages = read_json_file(messages_path), *context = NULL, *tools = NULL, *prompt = NULL;
    char err[4096];
    if (!messages) goto done;
    if (context_path && !(o.context_json = context = read_json_file(context_path))) goto done;
    if (tools_path && !(o.tools_json = tools = read_json_file(tools_path))) goto done;
    if (dsv4_chat_encode(messages, &o, &prompt, err, sizeof err) < 0) {
        fprintf(stderr, "dsv4 chat-template: %s\n", err);
        goto done;
    }
    if (want_ids) {
        pjbuf b;
        pjb_init(&b);
        if (put_ids(&b, t, prompt, strlen(prompt)) < 0) {
            fprintf(stderr, "dsv4 chat-template: tokenization failed\n");
            pjb_free(&b);
            goto done;
        }
        printf("%s\n", b.p);
        pjb_free(&b);
    } else {
        fwrite(prompt, 1, strlen(prompt), stdout);
    }
    rc = 0;
done:
    free(messages);
    free(context);
    free(tools);
    free(prompt);
    if (t) dsv4_tokenizer_free(t);
    return rc;
}
