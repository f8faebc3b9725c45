/*
 * eval_suite.c - suite files for `dsv4 eval`.
 *
 * A suite is a list of prompt templates, written either as JSON lines (one
 * template object per line; blank lines and lines starting with '#' are
 * skipped) or as one JSON array / {"templates": [...]} object.  Each
 * template has an id, a prompt (or full messages) with {{variables}}, a
 * dataset of rows that fill them, and an acceptance check.  Expansion turns
 * every (template, row) - and for long-context templates every (size,
 * depth) too - into one item: the exact conversation to send and the check
 * with its variables filled.  docs/eval.md documents the format.
 */
#include "eval/eval.h"
#include "util/util.h"
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

extern const char eval_default_suite_text[];
const char *eval_default_suite(void) { return eval_default_suite_text; }

/* ---- {{variable}} filling ---------------------------------------------- */

/* The row's value for a variable as text (strings raw, others as JSON). */
static char *var_text(json_t *row, const char *name, size_t len) {
    char key[128];
    if (len >= sizeof key) return NULL;
    memcpy(key, name, len);
    key[len] = 0;
    json_t *v = row ? json_object_get(row, key) : NULL;
    if (!v) return NULL;
    if (json_is_string(v)) return xstrdup(json_string_value(v));
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
}

static json_t *fill_string(const char *s, json_t *row) {
    size_t sl = strlen(s);
    /* A string that is exactly one variable keeps the value's JSON type. */
    if (sl > 4 && !strncmp(s, "{{", 2) && !strcmp(s + sl - 2, "}}") && !strstr(s + 2, "{{")) {
        char key[128];
        size_t kl = sl - 4;
        if (kl < sizeof key) {
            memcpy(key, s + 2, kl);
            key[kl] = 0;
            json_t *v = row ? json_object_get(row, key) : NULL;
            if (v) return json_deep_copy(v);
        }
    }
    strbuf b = {0};
    strbuf_add(&b, "", 0);
    const char *p = s;
    while (*p) {
        const char *open = strstr(p, "{{");
        if (!open) { strbuf_add(&b, p, strlen(p)); break; }
        const char *close = strstr(open + 2, "}}");
        if (!close) { strbuf_add(&b, p, strlen(p)); break; }
        char *val = var_text(row, open + 2, (size_t)(close - open - 2));
        strbuf_add(&b, p, (size_t)(open - p));
        if (val) { strbuf_add(&b, val, strlen(val)); free(val); }
        else strbuf_add(&b, open, (size_t)(close + 2 - open)); /* unknown: left as is */
        p = close + 2;
    }
    json_t *r = json_string(b.p);
    if (!r) r = json_string("");  /* invalid UTF-8 from a row: empty */
    free(b.p);
    return r;
}

json_t *eval_fill(json_t *v, json_t *row) {
    if (!v) return NULL;
    if (json_is_string(v)) return fill_string(json_string_value(v), row);
    if (json_is_array(v)) {
        json_t *a = json_array();
        size_t i; json_t *e;
        json_array_foreach(v, i, e) json_array_append_new(a, eval_fill(e, row));
        return a;
    }
    if (json_is_object(v)) {
        json_t *o = json_object();
        const char *k; json_t *e;
        json_object_foreach(v, k, e) json_object_set_new(o, k, eval_fill(e, row));
        return o;
    }
    return json_incref(v);
}

/* ---- haystacks ----------------------------------------------------------- */

static const char *const filler_words[] = {
    "the", "report", "notes", "that", "quarterly", "shipments", "from", "the", "northern",
    "warehouse", "were", "delayed", "by", "weather", "while", "the", "finance", "team",
    "reviewed", "supplier", "contracts", "and", "updated", "the", "forecast", "for",
    "customer", "demand", "in", "several", "regions", "engineers", "measured", "latency",
    "across", "services", "after", "the", "migration", "a", "committee", "approved",
    "the", "budget", "for", "training", "new", "staff", "on", "safety", "procedures",
    "during", "the", "spring", "maintenance", "window", "inventory", "levels", "remained",
    "stable", "despite", "higher", "orders", "overall",
};

char *eval_haystack(int tokens, uint32_t seed) {
    /* The filler is common English words, each about one token in the
     * usual BPE vocabularies (with its leading space), and one token per
     * sentence end; so tokens are counted as words + periods. */
    strbuf b = {0};
    strbuf_add(&b, "", 0);
    uint32_t x = seed ? seed : 1;
    const size_t nw = sizeof filler_words / sizeof filler_words[0];
    int count = 0;
    while (count < tokens) {
        x = x * 1664525u + 1013904223u;
        int len = 8 + (int)((x >> 24) % 7), rem = tokens - count;
        if (rem == 1) {   /* room for one word, not a sentence */
            if (b.n) strbuf_add(&b, " ", 1);
            strbuf_add(&b, "Overall", 7);
            break;
        }
        if (len > rem - 1) len = rem - 1;
        for (int i = 0; i < len; i++) {
            x = x * 1664525u + 1013904223u;
            const char *w = filler_words[(x >> 16) % nw];
            if (i == 0) {
                char cap[32];
                snprintf(cap, sizeof cap, "%s", w);
                cap[0] = (char)toupper((unsigned char)cap[0]);
                if (b.n) strbuf_add(&b, " ", 1);
                strbuf_add(&b, cap, strlen(cap));
            } else {
                strbuf_add(&b, " ", 1);
                strbuf_add(&b, w, strlen(w));
            }
        }
        strbuf_add(&b, ".", 1);
        count += len + 1;
    }
    return b.p;
}

/* Insert needle into text at the sentence boundary nearest depth (0..1). */
static char *insert_needle(const char *text, const char *needle, double depth) {
    size_t n = strlen(text);
    size_t at = (size_t)(depth * (double)n);
    if (at > n) at = n;
    while (at > 0 && at < n && !(at >= 2 && text[at - 2] == '.' && text[at - 1] == ' ')) at++;
    strbuf b = {0};
    strbuf_add(&b, text, at);
    if (at == n && n && text[n - 1] != ' ') strbuf_add(&b, " ", 1);
    strbuf_add(&b, needle, strlen(needle));
    strbuf_add(&b, " ", 1);
    strbuf_add(&b, text + at, n - at);
    return b.p;
}

/* ---- loading --------------------------------------------------------------- */

static int parse_templates(const char *text, json_t **out, char *err, size_t errlen) {
    const char *p = text;
    while (*p && isspace((unsigned char)*p)) p++;
    json_error_t je;
    if (*p == '[' || *p == '{') {
        /* One JSON document, unless it is JSON lines starting with '{'. */
        json_t *doc = json_loads(p, 0, &je);
        if (doc && json_is_array(doc)) { *out = doc; return 0; }
        if (doc && json_object_get(doc, "templates")) {
            json_t *t = json_incref(json_object_get(doc, "templates"));
            json_decref(doc);
            if (!json_is_array(t)) { json_decref(t); return errf(err, errlen, "suite: \"templates\" must be an array"); }
            *out = t;
            return 0;
        }
        json_decref(doc);
        if (*p == '[') return errf(err, errlen, "suite: line %d: %s", je.line, je.text);
    }
    json_t *arr = json_array();
    int lineno = 0;
    while (*p || lineno == 0) {
        lineno++;
        const char *nl = strchr(p, '\n');
        size_t len = nl ? (size_t)(nl - p) : strlen(p);
        const char *q = p;
        while (q < p + len && isspace((unsigned char)*q)) q++;
        if (q < p + len && *q != '#') {
            json_t *t = json_loadb(q, (size_t)(p + len - q), 0, &je);
            if (!t || !json_is_object(t)) {
                json_decref(t);
                json_decref(arr);
                return errf(err, errlen, "suite: line %d: %s", lineno, t ? "not a JSON object" : je.text);
            }
            json_array_append_new(arr, t);
        }
        if (!nl) break;
        p = nl + 1;
    }
    *out = arr;
    return 0;
}

static json_t *load_rows(json_t *t, const char *base_dir, char *err, size_t errlen) {
    json_t *data = json_object_get(t, "data");
    if (data) {
        if (!json_is_array(data) || json_array_size(data) == 0) {
            errf(err, errlen, "\"data\" must be a non-empty array of objects");
            return NULL;
        }
        return json_incref(data);
    }
    const char *file = json_string_value(json_object_get(t, "data_file"));
    json_t *rows = json_array();
    if (!file) { json_array_append_new(rows, json_object()); return rows; }
    char path[1024];
    if (file[0] == '/' || !base_dir) snprintf(path, sizeof path, "%s", file);
    else path_join(path, sizeof path, base_dir, file);
    char *text = read_file(path, NULL, err, errlen);
    if (!text) { json_decref(rows); return NULL; }
    json_t *parsed = NULL;
    if (parse_templates(text, &parsed, err, errlen) < 0) { free(text); json_decref(rows); return NULL; }
    free(text);
    json_decref(rows);
    if (json_array_size(parsed) == 0) { json_decref(parsed); errf(err, errlen, "%s: no rows", path); return NULL; }
    return parsed;
}

static json_t *build_messages(json_t *t, json_t *row) {
    json_t *msgs = json_object_get(t, "messages");
    if (json_is_array(msgs)) return eval_fill(msgs, row);
    json_t *m = json_array();
    json_t *sys = json_object_get(t, "system");
    if (json_is_string(sys))
        json_array_append_new(m, json_pack("{s:s,s:o}", "role", "system", "content", eval_fill(sys, row)));
    json_array_append_new(m, json_pack("{s:s,s:o}", "role", "user", "content",
                                       eval_fill(json_object_get(t, "prompt"), row)));
    return m;
}

static json_t *default_response_format(json_t *t, json_t *check, const char *id) {
    json_t *rf = json_object_get(t, "response_format");
    if (rf) return json_is_object(rf) ? json_incref(rf) : NULL;   /* false/null: none */
    const char *type = json_string_value(json_object_get(check, "type"));
    if (!type) return NULL;
    if (!strcmp(type, "json_schema")) {
        char name[64];
        size_t j = 0;
        for (const char *c = id; *c && j + 1 < sizeof name; c++)
            name[j++] = (isalnum((unsigned char)*c) || *c == '_' || *c == '-') ? *c : '_';
        name[j] = 0;
        return json_pack("{s:s,s:{s:s,s:b,s:O}}", "type", "json_schema", "json_schema", "name", name,
                         "strict", 1, "schema", json_object_get(check, "schema"));
    }
    if (!strcmp(type, "json")) return json_pack("{s:s}", "type", "json_object");
    return NULL;
}

static const char *const check_types[] = {"exact", "contains", "regex", "json", "json_schema",
                                          "tool_chain", "needle", NULL};

static int validate_template(json_t *t, size_t idx, char *err, size_t errlen) {
    const char *id = json_string_value(json_object_get(t, "id"));
    if (!id || !*id) return errf(err, errlen, "template %zu: missing \"id\"", idx + 1);
    if (!json_is_string(json_object_get(t, "prompt")) && !json_is_array(json_object_get(t, "messages")))
        return errf(err, errlen, "template %s: needs \"prompt\" or \"messages\"", id);
    json_t *check = json_object_get(t, "check");
    const char *type = json_string_value(json_object_get(check, "type"));
    if (!type) return errf(err, errlen, "template %s: missing \"check\": {\"type\": ...}", id);
    int known = 0;
    for (int i = 0; check_types[i]; i++) known |= !strcmp(type, check_types[i]);
    if (!known) return errf(err, errlen, "template %s: unknown check type \"%s\"", id, type);
    if (!strcmp(type, "json_schema") && !json_is_object(json_object_get(check, "schema")))
        return errf(err, errlen, "template %s: json_schema check needs \"schema\"", id);
    if (!strcmp(type, "tool_chain")) {
        json_t *steps = json_object_get(check, "steps");
        if (!json_is_array(steps) || !json_array_size(steps))
            return errf(err, errlen, "template %s: tool_chain check needs \"steps\"", id);
        if (!json_is_array(json_object_get(t, "tools")))
            return errf(err, errlen, "template %s: tool_chain template needs \"tools\"", id);
        size_t i; json_t *s;
        json_array_foreach(steps, i, s)
            if (!json_is_string(json_object_get(s, "tool")))
                return errf(err, errlen, "template %s: step %zu needs \"tool\"", id, i + 1);
    }
    if (!strcmp(type, "regex") && !json_is_string(json_object_get(check, "pattern")))
        return errf(err, errlen, "template %s: regex check needs \"pattern\"", id);
    json_t *lc = json_object_get(t, "long_context");
    if (lc && !json_is_object(lc)) return errf(err, errlen, "template %s: \"long_context\" must be an object", id);
    return 0;
}

static void add_item(eval_suite *s, size_t *cap, eval_item *it) {
    if (s->n_items == *cap) {
        *cap = *cap ? *cap * 2 : 64;
        s->items = xrealloc(s->items, *cap * sizeof *s->items);
    }
    s->items[s->n_items++] = *it;
}

static void make_item(eval_suite *s, size_t *cap, json_t *t, json_t *row, const char *key,
                      int lc_size, double depth) {
    eval_item it;
    memset(&it, 0, sizeof it);
    snprintf(it.key, sizeof it.key, "%s", key);
    it.template_id = json_string_value(json_object_get(t, "id"));
    it.category = json_string_value(json_object_get(t, "category"));
    if (!it.category) it.category = "other";
    it.messages = build_messages(t, row);
    json_t *tools = json_object_get(t, "tools");
    it.tools = tools ? eval_fill(tools, row) : NULL;
    it.check = eval_fill(json_object_get(t, "check"), row);
    it.response_format = default_response_format(t, it.check, it.template_id);
    json_t *mt = json_object_get(t, "max_tokens");
    it.max_tokens = json_is_integer(mt) ? (int)json_integer_value(mt) : 256;
    json_t *temp = json_object_get(t, "temperature");
    it.temperature = json_is_number(temp) ? json_number_value(temp) : 0.0;
    it.lc_size = lc_size;
    it.lc_depth = depth;
    add_item(s, cap, &it);
}

static int expand_template(eval_suite *s, size_t *cap, json_t *t, const char *base_dir,
                           const int *sizes, int n_sizes, int max_context, char *err, size_t errlen) {
    const char *id = json_string_value(json_object_get(t, "id"));
    json_t *rows = load_rows(t, base_dir, err, errlen);
    if (!rows) {
        char inner[200];
        snprintf(inner, sizeof inner, "%s", err);
        return errf(err, errlen, "template %s: %s", id, inner);
    }
    json_t *lc = json_object_get(t, "long_context");
    size_t r; json_t *row;
    json_array_foreach(rows, r, row) {
        if (!json_is_object(row)) { json_decref(rows); return errf(err, errlen, "template %s: row %zu is not an object", id, r + 1); }
        char key[200];
        if (!lc) {
            if (json_array_size(rows) == 1) snprintf(key, sizeof key, "%s", id);
            else snprintf(key, sizeof key, "%s#%zu", id, r + 1);
            make_item(s, cap, t, row, key, 0, 0);
            continue;
        }
        int own[EVAL_MAX_SIZES], n_own = 0;
        json_t *js = json_object_get(lc, "sizes");
        size_t k; json_t *e;
        json_array_foreach(js, k, e) if (json_is_integer(e) && n_own < EVAL_MAX_SIZES) own[n_own++] = (int)json_integer_value(e);
        if (n_own == 0) own[n_own++] = 1024;
        const int *use = n_sizes > 0 ? sizes : own;
        int n_use = n_sizes > 0 ? n_sizes : n_own;
        double depths[8]; int nd = 0;
        json_array_foreach(json_object_get(lc, "depths"), k, e) if (json_is_number(e) && nd < 8) depths[nd++] = json_number_value(e);
        if (nd == 0) depths[nd++] = 0.5;
        json_t *needle = eval_fill(json_object_get(lc, "needle"), row);
        const char *hay_file = json_string_value(json_object_get(lc, "haystack_file"));
        char *doc_text = NULL;
        if (hay_file) {
            char path[1024];
            if (hay_file[0] == '/' || !base_dir) snprintf(path, sizeof path, "%s", hay_file);
            else path_join(path, sizeof path, base_dir, hay_file);
            doc_text = read_file(path, NULL, err, errlen);
            if (!doc_text) { json_decref(needle); json_decref(rows); return -1; }
        }
        for (int si = 0; si < n_use; si++) {
            if (use[si] <= 0 || (max_context > 0 && use[si] > max_context)) continue;
            for (int di = 0; di < nd; di++) {
                /* `size` is the context the item uses: the haystack leaves
                 * room for the answer (max_tokens), the question and chat
                 * template (64) and tokenizers that split the filler a
                 * little finer than one token per word (size/64). */
                json_t *jmt = json_object_get(t, "max_tokens");
                int answer = json_is_integer(jmt) ? (int)json_integer_value(jmt) : 256;
                int hay_tokens = use[si] - answer - 64 - use[si] / 64;
                if (hay_tokens < 16) hay_tokens = 16;
                char *hay;
                if (doc_text) {
                    size_t want = (size_t)hay_tokens * 4, dl = strlen(doc_text);
                    hay = xmalloc(want + 1);
                    for (size_t i = 0; i < want; i++) hay[i] = dl ? doc_text[i % dl] : ' ';
                    hay[want] = 0;
                } else {
                    /* Distinct per template, row and size, so that no two items
                     * share a prefix an endpoint could cache. */
                    uint32_t seed = 2166136261u;
                    for (const char *c = id; *c; c++) seed = (seed ^ (unsigned char)*c) * 16777619u;
                    hay = eval_haystack(hay_tokens, seed ^ (uint32_t)(r * 7919 + (size_t)use[si] * 31));
                }
                char *doc = insert_needle(hay, json_is_string(needle) ? json_string_value(needle) : "", depths[di]);
                free(hay);
                json_t *row2 = json_deep_copy(row);
                json_object_set_new(row2, "document", json_string(doc));
                free(doc);
                if (json_array_size(rows) == 1) snprintf(key, sizeof key, "%s@%d/%.2f", id, use[si], depths[di]);
                else snprintf(key, sizeof key, "%s#%zu@%d/%.2f", id, r + 1, use[si], depths[di]);
                make_item(s, cap, t, row2, key, use[si], depths[di]);
                json_decref(row2);
            }
        }
        free(doc_text);
        json_decref(needle);
    }
    json_decref(rows);
    return 0;
}

int eval_suite_parse(eval_suite *s, const char *text, const char *base_dir, int limit,
                     const int *sizes, int n_sizes, int max_context, char *err, size_t errlen) {
    if (!s->name[0]) snprintf(s->name, sizeof s->name, "suite");
    json_t *all;
    if (parse_templates(text, &all, err, errlen) < 0) return -1;
    size_t n = json_array_size(all);
    if (n == 0) { json_decref(all); return errf(err, errlen, "suite has no templates"); }
    if (limit > 0 && (size_t)limit < n) {
        json_t *cut = json_array();
        for (size_t i = 0; i < (size_t)limit; i++) json_array_append(cut, json_array_get(all, i));
        json_decref(all);
        all = cut;
        n = (size_t)limit;
    }
    s->templates = all;
    /* Ids must be unique: records are keyed by them for resume. */
    for (size_t i = 0; i < n; i++) {
        json_t *t = json_array_get(all, i);
        if (validate_template(t, i, err, errlen) < 0) { eval_suite_free(s); return -1; }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(json_string_value(json_object_get(t, "id")),
                        json_string_value(json_object_get(json_array_get(all, j), "id")))) {
                errf(err, errlen, "template id \"%s\" appears twice", json_string_value(json_object_get(t, "id")));
                eval_suite_free(s);
                return -1;
            }
    }
    size_t cap = 0;
    for (size_t i = 0; i < n; i++)
        if (expand_template(s, &cap, json_array_get(all, i), base_dir, sizes, n_sizes, max_context, err, errlen) < 0) {
            eval_suite_free(s);
            return -1;
        }
    if (s->n_items == 0) { eval_suite_free(s); return errf(err, errlen, "suite expands to no items (all long-context sizes above --max-context?)"); }
    return 0;
}

int eval_suite_load(eval_suite *s, const char *path, int limit, const int *sizes, int n_sizes,
                    int max_context, char *err, size_t errlen) {
    memset(s, 0, sizeof *s);
    if (!path) {
        snprintf(s->name, sizeof s->name, "default (built-in)");
        return eval_suite_parse(s, eval_default_suite(), NULL, limit, sizes, n_sizes, max_context, err, errlen);
    }
    char *text = read_file(path, NULL, err, errlen);
    if (!text) return -1;
    snprintf(s->name, sizeof s->name, "%s", path);
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) *slash = 0; else snprintf(dir, sizeof dir, ".");
    int rc = eval_suite_parse(s, text, dir, limit, sizes, n_sizes, max_context, err, errlen);
    free(text);
    return rc;
}

void eval_suite_free(eval_suite *s) {
    for (size_t i = 0; i < s->n_items; i++) {
        json_decref(s->items[i].messages);
        json_decref(s->items[i].tools);
        json_decref(s->items[i].response_format);
        json_decref(s->items[i].check);
    }
    free(s->items);
    s->items = NULL;
    s->n_items = 0;
    json_decref(s->templates);
    s->templates = NULL;
}
