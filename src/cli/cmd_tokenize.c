/*
 * cmd_tokenize.c - `dsv4 tokenize` and `dsv4 detokenize`.
 *
 *   dsv4 tokenize   (-t tokenizer.json | -m DIR) [--file F | TEXT]
 *       prints the ids as a JSON array and a newline, e.g. [19923,2058]
 *   dsv4 tokenize   (-t ... | -m ...) --jsonl IN
 *       reads JSON lines with a "text" member (IN may be -), writes one
 *       {"ids":[...]} line per input line, in order (blank lines skipped)
 *   dsv4 detokenize (-t ... | -m ...) IDS
 *       IDS like 1,2,3 or [1,2,3] (several arguments are joined); prints the
 *       decoded bytes exactly, with no newline added
 *
 * Added tokens in the text are recognised (no BOS is added).  Errors are
 * one line on stderr: exit 2 for usage, 1 for bad input.
 */
#include "cli/cli.h"
#include "dsv4_tokenizer.h"
#include "util/util.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int usage(const char *cmd, int status) {
    FILE *f = status ? stderr : stdout;
    if (!strcmp(cmd, "detokenize"))
        fprintf(f, "usage: dsv4 detokenize (-t tokenizer.json | -m MODEL_DIR) IDS   (IDS: 1,2,3 or [1,2,3])\n");
    else
        fprintf(f, "usage: dsv4 tokenize (-t tokenizer.json | -m MODEL_DIR) [--file F | --jsonl IN | TEXT]\n");
    return status;
}

typedef struct {
    const char *tok_path, *model_dir, *file, *jsonl;
    int n_pos;
    char **pos;
} args;

/* Parse options; positional arguments are collected in order. */
static int parse_args(int argc, char **argv, args *a) {
    memset(a, 0, sizeof *a);
    a->pos = xcalloc((size_t)argc, sizeof *a->pos);
    for (int i = 1; i < argc; i++) {
        const char *s = argv[i];
        const char **slot = !strcmp(s, "-t") || !strcmp(s, "--tokenizer") ? &a->tok_path
                          : !strcmp(s, "-m") || !strcmp(s, "--model") ? &a->model_dir
                          : !strcmp(s, "--file") || !strcmp(s, "-f") ? &a->file
                          : !strcmp(s, "--jsonl") ? &a->jsonl : NULL;
        if (slot) {
            if (i + 1 >= argc) { fprintf(stderr, "dsv4 %s: %s needs a value\n", argv[0], s); return -1; }
            *slot = argv[++i];
        } else if (!strcmp(s, "--")) {
            while (++i < argc) a->pos[a->n_pos++] = argv[i];
        } else if (s[0] == '-' && s[1] && strcmp(argv[0], "detokenize")) {
            fprintf(stderr, "dsv4 %s: unknown option %s\n", argv[0], s);
            return -1;
        } else {
            a->pos[a->n_pos++] = argv[i];
        }
    }
    return 0;
}

static dsv4_tokenizer *load_tokenizer(const char *cmd, const args *a) {
    char path[4096], err[512];
    const char *p = a->tok_path;
    if (!p && a->model_dir) p = path_join(path, sizeof path, a->model_dir, "tokenizer.json");
    dsv4_tokenizer *t = dsv4_tokenizer_load(p, err, sizeof err);
    if (!t) fprintf(stderr, "dsv4 %s: %s\n", cmd, err);
    return t;
}

static int print_ids(FILE *f, const int32_t *ids, size_t n) {
    fputc('[', f);
    for (size_t i = 0; i < n; i++) fprintf(f, i ? ",%d" : "%d", ids[i]);
    return fputc(']', f) == EOF ? -1 : 0;
}

static int tokenize_one(const dsv4_tokenizer *t, const char *text, size_t len) {
    int32_t *ids;
    size_t n;
    if (dsv4_tokenize(t, text, len, &ids, &n)) { fprintf(stderr, "dsv4 tokenize: out of memory\n"); return 1; }
    print_ids(stdout, ids, n);
    fputc('\n', stdout);
    free(ids);
    return 0;
}

static int tokenize_jsonl(const dsv4_tokenizer *t, const char *in) {
    FILE *f = strcmp(in, "-") ? fopen(in, "rb") : stdin;
    if (!f) { fprintf(stderr, "dsv4 tokenize: %s: %s\n", in, strerror(errno)); return 1; }
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    long lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) > 0) {
        lineno++;
        size_t l = (size_t)got;
        while (l && (line[l - 1] == '\n' || line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t')) l--;
        if (!l) continue;
        json_error_t je;
        json_t *o = json_loadb(line, l, JSON_ALLOW_NUL, &je);
        json_t *text = json_object_get(o, "text");
        if (!json_is_string(text)) {
            fprintf(stderr, "dsv4 tokenize: %s:%ld: %s\n", in, lineno,
                    o ? "no string \"text\" member" : je.text);
            json_decref(o);
            rc = 1;
            break;
        }
        int32_t *ids;
        size_t n;
        if (dsv4_tokenize(t, json_string_value(text), json_string_length(text), &ids, &n)) {
            fprintf(stderr, "dsv4 tokenize: out of memory\n");
            json_decref(o);
            rc = 1;
            break;
        }
        fputs("{\"ids\":", stdout);
        print_ids(stdout, ids, n);
        fputs("}\n", stdout);
        free(ids);
        json_decref(o);
    }
    if (!rc && ferror(f)) { fprintf(stderr, "dsv4 tokenize: %s: read error\n", in); rc = 1; }
    free(line);
    if (f != stdin) fclose(f);
    return rc;
}

static char *read_stream(FILE *f, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = xmalloc(cap);
    size_t r;
    while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) buf = xrealloc(buf, cap *= 2);
    }
    *len = n;
    return buf;
}

int cmd_tokenize(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) return usage(argv[0], 0);
    if (!strcmp(argv[0], "detokenize")) return cmd_detokenize(argc, argv);
    args a;
    int rc = 2;
    if (parse_args(argc, argv, &a)) goto out;
    int sources = (a.file != NULL) + (a.jsonl != NULL) + (a.n_pos > 0);
    if ((!a.tok_path && !a.model_dir) || sources != 1 || a.n_pos > 1) {
        if (!a.tok_path && !a.model_dir) fprintf(stderr, "dsv4 tokenize: give the tokenizer with -t FILE or -m DIR (see --help)\n");
        else if (a.n_pos > 1) fprintf(stderr, "dsv4 tokenize: give the text as one argument (quote it)\n");
        else fprintf(stderr, "dsv4 tokenize: give exactly one of TEXT, --file F, --jsonl IN\n");
        rc = 2;
        goto out;
    }
    dsv4_tokenizer *t = load_tokenizer("tokenize", &a);
    rc = 1;
    if (!t) goto out;
    if (a.jsonl) {
        rc = tokenize_jsonl(t, a.jsonl);
    } else if (a.file) {
        char err[512];
        size_t len;
        char *text = strcmp(a.file, "-") ? read_file(a.file, &len, err, sizeof err) : read_stream(stdin, &len);
        if (!text) fprintf(stderr, "dsv4 tokenize: %s\n", err);
        else rc = tokenize_one(t, text, len);
        free(text);
    } else {
        rc = tokenize_one(t, a.pos[0], strlen(a.pos[0]));
    }
    dsv4_tokenizer_free(t);
    if (!rc && fflush(stdout)) { fprintf(stderr, "dsv4 tokenize: write error\n"); rc = 1; }
out:
    free(a.pos);
    return rc;
}

/* Parse "1,2,3", "[1, 2, 3]" or "1 2 3" into ids; -1 on anything else. */
static int parse_ids(const char *s, int32_t **out, size_t *n_out) {
    size_t cap = 64, n = 0;
    int32_t *ids = xmalloc(cap * sizeof *ids);
    const char *p = s;
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    int bracket = *p == '[';
    if (bracket) p++;
    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (!*p || *p == ']') break;
        char *end;
        errno = 0;
        long v = strtol(p, &end, 10);
        if (end == p || errno || v < INT32_MIN || v > INT32_MAX) { free(ids); return -1; }
        if (n == cap) ids = xrealloc(ids, (cap *= 2) * sizeof *ids);
        ids[n++] = (int32_t)v;
        p = end;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p == ',') p++;
        else if (*p && *p != ']') { free(ids); return -1; }
    }
    if (bracket != (*p == ']')) { free(ids); return -1; }
    if (*p == ']') {
        p++;
        while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
        if (*p) { free(ids); return -1; }
    }
    *out = ids;
    *n_out = n;
    return 0;
}

int cmd_detokenize(int argc, char **argv) {
    args a;
    int rc = 2;
    char *joined = NULL;
    int32_t *ids = NULL;
    if (parse_args(argc, argv, &a)) goto out;
    if ((!a.tok_path && !a.model_dir) || (a.n_pos == 0 && !a.file)) {
        if (!a.tok_path && !a.model_dir) fprintf(stderr, "dsv4 detokenize: give the tokenizer with -t FILE or -m DIR (see --help)\n");
        else fprintf(stderr, "dsv4 detokenize: give the ids\n");
        rc = 2;
        goto out;
    }
    rc = 1;
    if (a.file) {
        char err[512];
        size_t len;
        joined = strcmp(a.file, "-") ? read_file(a.file, &len, err, sizeof err) : read_stream(stdin, &len);
        if (!joined) { fprintf(stderr, "dsv4 detokenize: %s\n", err); goto out; }
        joined = xrealloc(joined, len + 1);
        joined[len] = 0;
    } else {
        size_t total = 1;
        for (int i = 0; i < a.n_pos; i++) total += strlen(a.pos[i]) + 1;
        joined = xmalloc(total);
        joined[0] = 0;
        for (int i = 0; i < a.n_pos; i++) { if (i) strcat(joined, " "); strcat(joined, a.pos[i]); }
    }
    size_t n;
    if (parse_ids(joined, &ids, &n)) {
        fprintf(stderr, "dsv4 detokenize: cannot read ids from \"%.60s\" (want 1,2,3 or [1,2,3])\n", joined);
        goto out;
    }
    dsv4_tokenizer *t = load_tokenizer("detokenize", &a);
    if (!t) goto out;
    for (size_t i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= dsv4_tokenizer_vocab_size(t)) {
            fprintf(stderr, "dsv4 detokenize: id %d out of range (vocabulary has %d ids)\n", ids[i],
                    dsv4_tokenizer_vocab_size(t));
            dsv4_tokenizer_free(t);
            goto out;
        }
    char *text;
    size_t len;
    if (dsv4_detokenize(t, ids, n, &text, &len)) {
        fprintf(stderr, "dsv4 detokenize: an id has no token\n");
    } else {
        rc = fwrite(text, 1, len, stdout) == len && !fflush(stdout) ? 0 : 1;
        if (rc) fprintf(stderr, "dsv4 detokenize: write error\n");
        free(text);
    }
    dsv4_tokenizer_free(t);
out:
    free(ids);
    free(joined);
    free(a.pos);
    return rc;
}
