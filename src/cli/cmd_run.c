/*
 * cmd_run.c - `dsv4 run` (one prompt, reply streamed) and `dsv4 chat`
 * (interactive, multi-turn).  Both use the server's generation session, so
 * sampling, stop handling and the DSML parsing are the same everywhere.
 *
 * The reasoning of thinking mode is printed dimmed under a "thinking"
 * header, the answer after it.  `dsv4 chat` keeps the sequence between
 * turns: each turn renders only the new user message (the encoder's
 * context mode) and feeds only its tokens.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "cli/cli.h"
#include "server/generate.h"
#include "util/util.h"

typedef struct {
    const char *model, *prompt, *system, *mode;
    int max_tokens, ctx, threads, color;
    float temperature, top_p;
    uint64_t seed;
} run_opts;

static void usage(FILE *f, const char *cmd) {
    fprintf(f,
        "usage: dsv4 %s [-m DIR] %s[options]\n"
        "  -m, --model DIR      model directory (default: the built-in default model)\n"
        "%s"
        "  --system TEXT        system prompt\n"
        "  --mode MODE          chat | thinking | max (thinking with maximum effort); default chat\n"
        "  --max-tokens N       reply length limit (default 256)\n"
        "  --temperature T      default 1.0 (0 = greedy)\n"
        "  --top-p P            default 0.95\n"
        "  --seed S             sampling seed (default: from the clock)\n"
        "  --ctx N              context length (default 4096)\n"
        "  --threads N          engine worker threads (default: all CPUs)\n"
        "  --no-color           no ANSI styling of the reasoning\n",
        cmd, strcmp(cmd, "run") ? "" : "-p TEXT ",
        strcmp(cmd, "run") ? "" : "  -p, --prompt TEXT    the user message ('-' reads stdin)\n");
}

static int parse_opts(int argc, char **argv, run_opts *o, int need_prompt) {
    memset(o, 0, sizeof *o);
    o->mode = "chat";
    o->max_tokens = 256;
    o->ctx = 4096;
    o->temperature = 1.0f;
    o->top_p = 0.95f;
    o->seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
    o->color = isatty(1);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(stdout, argv[0]); exit(0); }
#define OPT(s, l) ((!strcmp(a, s) || !strcmp(a, l)) && v && ++i)
        if (OPT("-m", "--model")) o->model = v;
        else if (OPT("-p", "--prompt")) o->prompt = v;
        else if (OPT("--system", "--system")) o->system = v;
        else if (OPT("--mode", "--mode")) o->mode = v;
        else if (OPT("--max-tokens", "-n")) o->max_tokens = atoi(v);
        else if (OPT("--temperature", "-t")) o->temperature = (float)atof(v);
        else if (OPT("--top-p", "--top-p")) o->top_p = (float)atof(v);
        else if (OPT("--seed", "-s")) o->seed = strtoull(v, NULL, 10);
        else if (OPT("--ctx", "--ctx")) o->ctx = atoi(v);
        else if (OPT("--threads", "--threads")) o->threads = atoi(v);
        else if (!strcmp(a, "--no-color")) o->color = 0;
        else { fprintf(stderr, "dsv4 %s: unknown or incomplete option '%s'\n", argv[0], a); usage(stderr, argv[0]); return 2; }
#undef OPT
    }
    if (strcmp(o->mode, "chat") && strcmp(o->mode, "thinking") && strcmp(o->mode, "max")) {
        fprintf(stderr, "dsv4 %s: --mode must be chat, thinking or max\n", argv[0]);
        return 2;
    }
    if (o->max_tokens < 1) { fprintf(stderr, "dsv4 %s: --max-tokens must be >= 1\n", argv[0]); return 2; }
    if (need_prompt && !o->prompt) { fprintf(stderr, "dsv4 run: -p TEXT is required\n"); usage(stderr, "run"); return 2; }
    return 0;
}

/* ---- printing the events ------------------------------------------------ */

typedef struct {
    int color;
    int section;         /* 0 nothing yet, 1 reasoning, 2 answer, 3 tool call */
    char *content;       /* the reply, kept for the chat history */
    size_t content_len;
    char *reasoning;
    size_t reasoning_len;
} printer;

static void append(char **buf, size_t *len, const char *t, size_t n) {
    *buf = xrealloc(*buf, *len + n + 1);
    memcpy(*buf + *len, t, n);
    *len += n;
    (*buf)[*len] = 0;
}

static void enter(printer *p, int section) {
    if (p->section == section) return;
    if (p->section == 1 && p->color) fputs("\033[0m", stdout);
    if (p->section) fputs("\n", stdout);
    if (section == 1) fputs(p->color ? "\033[2m[thinking]\n" : "[thinking]\n", stdout);
    if (section == 2 && p->section == 1) fputs(p->color ? "\033[1m[answer]\033[0m\n" : "[answer]\n", stdout);
    p->section = section;
}

static void on_event(void *user, const dsv4_dsml_event *ev) {
    printer *p = user;
    switch (ev->kind) {
    case DSV4_EV_REASONING:
        enter(p, 1);
        fwrite(ev->text, 1, ev->len, stdout);
        append(&p->reasoning, &p->reasoning_len, ev->text, ev->len);
        break;
    case DSV4_EV_CONTENT:
        enter(p, 2);
        fwrite(ev->text, 1, ev->len, stdout);
        append(&p->content, &p->content_len, ev->text, ev->len);
        break;
    case DSV4_EV_TOOL_START:
        enter(p, 3);
        printf("[tool call] %s(", ev->name ? ev->name : "");
        break;
    case DSV4_EV_TOOL_ARGS:
        fwrite(ev->text, 1, ev->len, stdout);
        break;
    case DSV4_EV_TOOL_END:
        fputs(")", stdout);
        break;
    default:
        break;
    }
    fflush(stdout);
}

/* ---- one reply ---------------------------------------------------------- */

typedef struct { int prompt_tokens, gen_tokens; double prompt_sec, gen_sec; } run_stats;

/* Feed ids (the new part of the prompt), then generate.  *fed_eos: whether
 * the sequence ends with the reply's EOS fed (for the next chat turn). */
static int generate(gen_model *gm, dsv4_seq *seq, const int32_t *ids, int n, const run_opts *o, int thinking,
                    printer *p, run_stats *st) {
    char err[256];
    float *logits = xmalloc((size_t)gm->vocab * sizeof *logits);
    double t0 = now_sec();
    if (dsv4_seq_pos(seq) + n >= dsv4_seq_capacity(seq)) {
        fprintf(stderr, "\ndsv4: the conversation no longer fits the context (%d tokens); use --ctx\n", dsv4_seq_capacity(seq));
        free(logits);
        return -1;
    }
    if (dsv4_forward(seq, ids, n, logits, 0, err, sizeof err)) {
        fprintf(stderr, "dsv4: %s\n", err);
        free(logits);
        return -1;
    }
    double t1 = now_sec();
    gen_params gp;
    memset(&gp, 0, sizeof gp);
    gp.sp.temperature = o->temperature;
    gp.sp.top_p = o->top_p;
    gp.sp.seed = o->seed;
    gp.max_tokens = o->max_tokens;
    if (gp.max_tokens > dsv4_seq_capacity(seq) - dsv4_seq_pos(seq) - 1) gp.max_tokens = dsv4_seq_capacity(seq) - dsv4_seq_pos(seq) - 1;
    gp.thinking = thinking;
    gen_session *g = gen_new(gm, &gp, on_event, p);
    int rc = 0;
    for (;;) {
        int32_t id = gen_step(g, logits);
        if (id < 0) break;
        if (dsv4_forward(seq, &id, 1, logits, 0, err, sizeof err)) {
            fprintf(stderr, "\ndsv4: %s\n", err);
            gen_end(g, GEN_ERROR);
            rc = -1;
            break;
        }
    }
    double t2 = now_sec();
    if (p->section == 1 && p->color) fputs("\033[0m", stdout);
    fputs("\n", stdout);
    fflush(stdout);
    /* the reply's last token (EOS, or the one cut by the limit) was sampled
     * but not fed; the chat history renders the turn ending in EOS */
    if (rc == 0 && dsv4_seq_pos(seq) < dsv4_seq_capacity(seq)) {
        int32_t eos = gm->eos;
        if (dsv4_forward(seq, &eos, 1, NULL, 0, err, sizeof err)) rc = -1;
    }
    st->prompt_tokens = n;
    st->gen_tokens = gen_n_tokens(g);
    st->prompt_sec = t1 - t0;
    st->gen_sec = t2 - t1;
    gen_free(g);
    free(logits);
    return rc;
}

static void print_stats(const run_stats *st) {
    fprintf(stderr, "[prompt: %d tokens, %.1f tok/s | generation: %d tokens, %.1f tok/s]\n", st->prompt_tokens,
            st->prompt_sec > 0 ? st->prompt_tokens / st->prompt_sec : 0.0, st->gen_tokens,
            st->gen_sec > 0 ? st->gen_tokens / st->gen_sec : 0.0);
}

static int open_model(const run_opts *o, gen_model *gm, dsv4_seq **seq) {
    char dir[1024], err[512];
    if (gen_resolve_model_dir(o->model, dir, sizeof dir, err, sizeof err) ||
        gen_model_open(gm, dir, o->ctx, o->threads, err, sizeof err)) {
        fprintf(stderr, "dsv4: %s\n", err);
        return -1;
    }
    *seq = dsv4_seq_new(gm->model, gm->n_ctx, err, sizeof err);
    if (!*seq) { fprintf(stderr, "dsv4: %s\n", err); gen_model_close(gm); return -1; }
    return 0;
}

/* Render messages (with context: only the new ones) to token ids. */
static int render(gen_model *gm, json_t *messages, json_t *context, const run_opts *o, int32_t **ids, int *n) {
    dsv4_chat_opts co;
    dsv4_chat_opts_default(&co);
    co.thinking = strcmp(o->mode, "chat") != 0;
    co.reasoning_effort = !strcmp(o->mode, "max") ? "max" : NULL;
    char *mj = json_dumps(messages, JSON_COMPACT), *cj = context ? json_dumps(context, JSON_COMPACT) : NULL;
    co.context_json = cj;
    char *prompt = NULL, err[512];
    int rc = dsv4_chat_encode(mj, &co, &prompt, err, sizeof err);
    free(mj);
    free(cj);
    if (rc) { fprintf(stderr, "dsv4: %s\n", err); return -1; }
    rc = gen_tokenize(gm, prompt, ids, n);
    free(prompt);
    return rc;
}

static char *read_stdin(void) {
    size_t n = 0, cap = 4096;
    char *b = xmalloc(cap);
    size_t k;
    while ((k = fread(b + n, 1, cap - n - 1, stdin)) > 0) {
        n += k;
        if (cap - n < 2) b = xrealloc(b, cap *= 2);
    }
    b[n] = 0;
    return b;
}

int cmd_run(int argc, char **argv) {
    run_opts o;
    int rc = parse_opts(argc, argv, &o, 1);
    if (rc) return rc;
    char *stdin_text = !strcmp(o.prompt, "-") ? read_stdin() : NULL;
    gen_model gm;
    dsv4_seq *seq;
    if (open_model(&o, &gm, &seq)) { free(stdin_text); return 1; }
    json_t *msgs = json_array();
    if (o.system) json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "system", "content", o.system));
    json_array_append_new(msgs, json_pack("{s:s, s:s}", "role", "user", "content", stdin_text ? stdin_text : o.prompt));
    int32_t *ids = NULL;
    int n = 0;
    rc = 1;
    if (render(&gm, msgs, NULL, &o, &ids, &n) == 0) {
        printer p = {o.color, 0, NULL, 0, NULL, 0};
        run_stats st;
        if (generate(&gm, seq, ids, n, &o, strcmp(o.mode, "chat") != 0, &p, &st) == 0) {
            print_stats(&st);
            rc = 0;
        }
        free(p.content);
        free(p.reasoning);
    }
    free(ids);
    json_decref(msgs);
    free(stdin_text);
    dsv4_seq_free(seq);
    gen_model_close(&gm);
    return rc;
}

int cmd_chat(int argc, char **argv) {
    run_opts o;
    int rc = parse_opts(argc, argv, &o, 0);
    if (rc) return rc;
    gen_model gm;
    dsv4_seq *seq;
    if (open_model(&o, &gm, &seq)) return 1;
    int tty = isatty(0);
    if (tty) fprintf(stderr, "dsv4 chat: model '%s', mode %s. /reset starts over, /exit or Ctrl-D quits.\n", gm.id, o.mode);
    json_t *history = json_array();
    if (o.system) json_array_append_new(history, json_pack("{s:s, s:s}", "role", "system", "content", o.system));
    int rendered_system = 0;
    char line[65536];
    for (;;) {
        if (tty) { fputs(o.color ? "\033[1m> \033[0m" : "> ", stdout); fflush(stdout); }
        if (!fgets(line, sizeof line, stdin)) break;
        line[strcspn(line, "\n")] = 0;
        if (!line[0]) continue;
        if (!strcmp(line, "/exit") || !strcmp(line, "/quit")) break;
        if (!strcmp(line, "/reset")) {
            json_array_clear(history);
            if (o.system) json_array_append_new(history, json_pack("{s:s, s:s}", "role", "system", "content", o.system));
            rendered_system = 0;
            dsv4_seq_reset(seq);
            fprintf(stderr, "[conversation reset]\n");
            continue;
        }
        /* first turn: everything (system + user); later: only the new user
         * message, rendered with the earlier messages as context */
        json_t *user = json_pack("{s:s, s:s}", "role", "user", "content", line);
        json_t *msgs = json_array(), *context = NULL;
        if (dsv4_seq_pos(seq) == 0) {
            json_array_extend(msgs, history);
            rendered_system = 1;
        } else {
            context = history;
        }
        json_array_append(msgs, user);
        (void)rendered_system;
        int32_t *ids = NULL;
        int n = 0;
        if (render(&gm, msgs, context, &o, &ids, &n)) { json_decref(msgs); json_decref(user); rc = 1; break; }
        printer p = {o.color, 0, NULL, 0, NULL, 0};
        run_stats st;
        int g = generate(&gm, seq, ids, n, &o, strcmp(o.mode, "chat") != 0, &p, &st);
        free(ids);
        json_decref(msgs);
        if (g) { json_decref(user); free(p.content); free(p.reasoning); rc = 1; break; }
        print_stats(&st);
        json_array_append_new(history, user);
        json_t *reply = json_pack("{s:s, s:s}", "role", "assistant", "content", p.content ? p.content : "");
        if (p.reasoning) json_object_set_new(reply, "reasoning_content", json_string(p.reasoning));
        json_array_append_new(history, reply);
        free(p.content);
        free(p.reasoning);
        o.seed++;
    }
    json_decref(history);
    dsv4_seq_free(seq);
    gen_model_close(&gm);
    return rc;
}
