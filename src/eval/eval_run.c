/*
 * eval_run.c - the runner of `dsv4 eval`.
 *
 * For every endpoint and every concurrency level ("group") it sends the
 * warm-up requests (recorded, excluded from statistics), then runs the
 * suite's items on C worker threads.  An item is up to max_attempts
 * attempts: an attempt is one request, or for a tool chain a conversation
 * in which the harness plays the tools from the scripted step results,
 * and it stops at the first accepted attempt.  Every HTTP request and
 * every finished item is appended to records.jsonl at once (flushed), so
 * an interrupted run loses only the items in flight; --resume drops their
 * partial request records and runs only items that have no item record.
 * A request rate, when given, spaces request starts evenly over time
 * (across all workers of the group).
 */
#include "eval/eval.h"
#include "util/util.h"
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t g_stop;
void eval_interrupt(void) { g_stop = 1; }

typedef struct {
    const eval_options *o;
    const eval_suite *s;
    const eval_endpoint *ep;
    int conc;
    double rate;            /* requests/s, 0 = unpaced */
    FILE *rec;
    pthread_mutex_t mu;
    size_t *todo, n_todo, next;
    double t0;              /* group start (monotonic seconds) */
    double next_start;      /* request-rate pacing */
    size_t done, accepted, errors, total_all, done_before;
    const char *label;
} group;

/* ---- records --------------------------------------------------------------- */

static void write_record(group *g, json_t *rec) {
    char *line = json_dumps(rec, JSON_COMPACT | JSON_REAL_PRECISION(10));
    if (!line) return;
    pthread_mutex_lock(&g->mu);
    fputs(line, g->rec);
    fputc('\n', g->rec);
    fflush(g->rec);
    pthread_mutex_unlock(&g->mu);
    free(line);
}

static double ms(double s) { return (double)(long long)(s * 1e6 + 0.5) / 1e3; } /* microsecond resolution */

static json_t *request_record(group *g, const eval_item *it, int attempt, int turn, int warmup,
                              double t_start, const eval_response *r) {
    json_t *j = json_object();
    json_object_set_new(j, "type", json_string("request"));
    json_object_set_new(j, "ep", json_string(g->ep->name));
    json_object_set_new(j, "conc", json_integer(g->conc));
    if (g->rate > 0) json_object_set_new(j, "rate", json_real(g->rate));
    json_object_set_new(j, "key", json_string(it->key));
    json_object_set_new(j, "template", json_string(it->template_id));
    json_object_set_new(j, "attempt", json_integer(attempt));
    json_object_set_new(j, "turn", json_integer(turn));
    json_object_set_new(j, "warmup", json_boolean(warmup));
    json_object_set_new(j, "start_ms", json_real(ms(t_start - g->t0)));
    json_object_set_new(j, "status", json_integer(r->http_status));
    json_object_set_new(j, "error_kind", json_string(eval_err_name(r->kind)));
    if (r->error[0]) json_object_set_new(j, "error", json_string(r->error));
    json_object_set_new(j, "e2e_ms", json_real(ms(r->e2e_s)));
    if (r->chunks > 0) {
        json_object_set_new(j, "ttft_ms", json_real(ms(r->ttft_s)));
        if (r->chunks > 1) json_object_set_new(j, "itl_ms", json_real(ms((r->last_s - r->ttft_s) / (r->chunks - 1))));
        if (r->out_tokens > 1 && r->e2e_s > r->ttft_s)
            json_object_set_new(j, "tpot_ms", json_real(ms((r->e2e_s - r->ttft_s) / (double)(r->out_tokens - 1))));
        if (r->e2e_s > 0) json_object_set_new(j, "tok_s", json_real((double)(long long)(r->out_tokens / r->e2e_s * 1000 + 0.5) / 1000));
        if (r->out_tokens > 1 && r->last_s > r->ttft_s)
            json_object_set_new(j, "decode_tok_s",
                                json_real((double)(long long)((r->out_tokens - 1) / (r->last_s - r->ttft_s) * 1000 + 0.5) / 1000));
    }
    json_object_set_new(j, "in_tokens", json_integer(r->in_tokens));
    json_object_set_new(j, "out_tokens", json_integer(r->out_tokens));
    json_object_set_new(j, "usage", json_boolean(r->usage_given));
    json_object_set_new(j, "chunks", json_integer(r->chunks));
    if (r->finish_reason[0]) json_object_set_new(j, "finish", json_string(r->finish_reason));
    if (it->lc_size) json_object_set_new(j, "lc_size", json_integer(it->lc_size));
    return j;
}

/* ---- one request ------------------------------------------------------------- */

static void pace(group *g) {
    if (g->rate <= 0) return;
    pthread_mutex_lock(&g->mu);
    double now = now_sec();
    double at = g->next_start > now ? g->next_start : now;
    g->next_start = at + 1.0 / g->rate;
    pthread_mutex_unlock(&g->mu);
    double wait = at - now_sec();
    if (wait > 0) {
        struct timespec ts = {(time_t)wait, (long)((wait - (double)(time_t)wait) * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static json_t *request_body(const eval_item *it, json_t *messages) {
    json_t *b = json_object();
    json_object_set(b, "messages", messages);
    json_object_set_new(b, "max_tokens", json_integer(it->max_tokens));
    json_object_set_new(b, "temperature", json_real(it->temperature));
    if (it->tools) json_object_set(b, "tools", it->tools);
    if (it->response_format) json_object_set(b, "response_format", it->response_format);
    return b;
}

static int send_one(group *g, const eval_item *it, json_t *messages, int attempt, int turn, int warmup,
                    eval_response *r) {
    pace(g);
    json_t *body = request_body(it, messages);
    double t_start = now_sec();
    int rc = eval_http_chat(g->ep, body, g->o->timeout_s, r);
    json_decref(body);
    json_t *rec = request_record(g, it, attempt, turn, warmup, t_start, r);
    write_record(g, rec);
    json_decref(rec);
    return rc;
}

/* ---- attempts ------------------------------------------------------------------ */

typedef struct {
    int accepted;
    int error_kind;
    char why[320];
    char *answer;
    eval_check_result cr;
    json_t *steps;          /* tool chains: per-step booleans */
    int chain_ok;
} attempt_result;

static json_t *tool_schema(const eval_item *it, const char *name) {
    size_t i; json_t *t;
    json_array_foreach(it->tools, i, t) {
        json_t *fn = json_object_get(t, "function");
        const char *n = json_string_value(json_object_get(fn, "name"));
        if (n && !strcmp(n, name)) {
            json_t *p = json_object_get(fn, "parameters");
            return p ? p : json_true();
        }
    }
    return NULL;
}

/* Judge one tool call against the expected step; returns the text the
 * harness answers with (a new string). */
static char *play_step(const eval_item *it, json_t *step, json_t *call, int *ok, char *why, size_t whylen) {
    json_t *fn = json_object_get(call, "function");
    const char *name = json_string_value(json_object_get(fn, "name"));
    const char *args_text = json_string_value(json_object_get(fn, "arguments"));
    const char *want = json_string_value(json_object_get(step, "tool"));
    *ok = 0;
    if (!step) {
        snprintf(why, whylen, "unexpected extra tool call %s", name ? name : "?");
        return xstrdup("{\"error\": \"no such step\"}");
    }
    if (!name || strcmp(name, want)) {
        snprintf(why, whylen, "step called %s, expected %s", name ? name : "?", want);
        return xstrdup("{\"error\": \"wrong tool for this step\"}");
    }
    json_t *args = json_loads(args_text && *args_text ? args_text : "{}", 0, NULL);
    if (!json_is_object(args)) {
        json_decref(args);
        snprintf(why, whylen, "%s: arguments are not a JSON object", name);
        return xstrdup("{\"error\": \"arguments are not valid JSON\"}");
    }
    char sv[160];
    json_t *schema = tool_schema(it, name);
    if (!schema) snprintf(why, whylen, "%s is not among the tools offered", name);
    else if (!eval_schema_validate(schema, args, sv, sizeof sv)) snprintf(why, whylen, "%s arguments: %s", name, sv);
    else if (!eval_json_subset(json_object_get(step, "args"), args)) snprintf(why, whylen, "%s: arguments differ from expected", name);
    else *ok = 1;
    json_decref(args);
    json_t *res = json_object_get(step, "result");
    if (json_is_string(res)) return xstrdup(json_string_value(res));
    if (!res) return xstrdup("{\"ok\": true}");
    char *t = json_dumps(res, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
    return t ? t : xstrdup("null");
}

static void run_tool_chain(group *g, const eval_item *it, int attempt, attempt_result *ar) {
    json_t *steps = json_object_get(it->check, "steps");
    size_t n_steps = json_array_size(steps), si = 0;
    json_t *msgs = json_deep_copy(it->messages);
    ar->steps = json_array();
    int all_ok = 1;
    for (int turn = 0; turn < (int)n_steps + 3 && !ar->error_kind; turn++) {
        eval_response r;
        if (send_one(g, it, msgs, attempt, turn, 0, &r) < 0) {
            ar->error_kind = r.kind;
            snprintf(ar->why, sizeof ar->why, "%s", r.error);
            eval_response_free(&r);
            break;
        }
        if (json_array_size(r.tool_calls) == 0) {
            free(ar->answer);
            ar->answer = xstrdup(r.content);
            if (si < n_steps) {
                all_ok = 0;
                if (!ar->why[0]) snprintf(ar->why, sizeof ar->why, "answered after %zu of %zu tool steps", si, n_steps);
            }
            json_t *final = json_object_get(it->check, "final");
            if (final) {
                eval_check_text(final, r.content, &ar->cr);
                if (!ar->cr.accepted) {
                    all_ok = 0;
                    if (!ar->why[0]) snprintf(ar->why, sizeof ar->why, "final answer: %s", ar->cr.why);
                }
            }
            eval_response_free(&r);
            ar->chain_ok = all_ok && si == n_steps;
            ar->accepted = ar->chain_ok;
            break;
        }
        json_t *asst = json_pack("{s:s,s:O}", "role", "assistant", "tool_calls", r.tool_calls);
        json_object_set_new(asst, "content", r.content[0] ? json_string(r.content) : json_null());
        json_array_append_new(msgs, asst);
        size_t i; json_t *call;
        json_array_foreach(r.tool_calls, i, call) {
            int ok;
            char why[300] = "";
            char *result = play_step(it, si < n_steps ? json_array_get(steps, si) : NULL, call, &ok, why, sizeof why);
            if (si < n_steps) json_array_append_new(ar->steps, json_boolean(ok));
            if (!ok) { all_ok = 0; if (!ar->why[0]) snprintf(ar->why, sizeof ar->why, "%s", why); }
            si++;
            const char *id = json_string_value(json_object_get(call, "id"));
            json_array_append_new(msgs, json_pack("{s:s,s:s,s:s}", "role", "tool", "tool_call_id", id ? id : "",
                                                  "content", result));
            free(result);
        }
        eval_response_free(&r);
        if (si > n_steps + 1) break;  /* runaway tool calling */
    }
    while (json_array_size(ar->steps) < n_steps) json_array_append_new(ar->steps, json_false());
    if (!ar->answer) ar->answer = xstrdup("");
    if (!ar->accepted && !ar->why[0]) snprintf(ar->why, sizeof ar->why, "tool chain did not finish");
    json_decref(msgs);
}

static void run_attempt(group *g, const eval_item *it, int attempt, attempt_result *ar) {
    memset(ar, 0, sizeof *ar);
    const char *type = json_string_value(json_object_get(it->check, "type"));
    if (type && !strcmp(type, "tool_chain")) { run_tool_chain(g, it, attempt, ar); return; }
    eval_response r;
    if (send_one(g, it, it->messages, attempt, 0, 0, &r) < 0) {
        ar->error_kind = r.kind;
        snprintf(ar->why, sizeof ar->why, "%s", r.error);
        ar->answer = xstrdup(r.content);
        /* JSON validity is judged on answers only: a failed request is an
         * error, not invalid JSON. */
        eval_response_free(&r);
        return;
    }
    ar->answer = xstrdup(r.content);
    eval_check_text(it->check, r.content, &ar->cr);
    ar->accepted = ar->cr.accepted;
    if (!ar->accepted) snprintf(ar->why, sizeof ar->why, "%s", ar->cr.why);
    eval_response_free(&r);
}

static void run_item(group *g, const eval_item *it) {
    json_t *rec = json_object();
    json_object_set_new(rec, "type", json_string("item"));
    json_object_set_new(rec, "ep", json_string(g->ep->name));
    json_object_set_new(rec, "conc", json_integer(g->conc));
    if (g->rate > 0) json_object_set_new(rec, "rate", json_real(g->rate));
    json_object_set_new(rec, "key", json_string(it->key));
    json_object_set_new(rec, "template", json_string(it->template_id));
    json_object_set_new(rec, "category", json_string(it->category));
    json_object_set_new(rec, "check", json_incref(json_object_get(it->check, "type")));
    if (it->lc_size) {
        json_object_set_new(rec, "lc_size", json_integer(it->lc_size));
        json_object_set_new(rec, "lc_depth", json_real(it->lc_depth));
    }
    int attempts = 0, accepted = 0;
    attempt_result ar;
    memset(&ar, 0, sizeof ar);
    for (int a = 1; a <= g->o->max_attempts; a++) {
        if (a > 1) { free(ar.answer); json_decref(ar.steps); }
        run_attempt(g, it, a, &ar);
        attempts = a;
        if (a == 1) {
            json_t *first = json_object();
            json_object_set_new(first, "accepted", json_boolean(ar.accepted));
            json_object_set_new(first, "error_kind", json_string(eval_err_name(ar.error_kind)));
            if (ar.cr.is_json) {
                json_object_set_new(first, "json_valid", json_boolean(ar.cr.json_valid));
                const char *type = json_string_value(json_object_get(it->check, "type"));
                if (type && !strcmp(type, "json_schema")) json_object_set_new(first, "schema_valid", json_boolean(ar.cr.schema_valid));
            }
            if (ar.steps) {
                json_object_set(first, "steps", ar.steps);
                json_object_set_new(first, "chain_ok", json_boolean(ar.chain_ok));
            }
            json_object_set_new(rec, "first", first);
        }
        if (ar.accepted) { accepted = 1; break; }
        if (g_stop) break;
    }
    json_object_set_new(rec, "attempts", json_integer(attempts));
    json_object_set_new(rec, "accepted", json_boolean(accepted));
    json_object_set_new(rec, "accepted_first", json_boolean(accepted && attempts == 1));
    json_object_set_new(rec, "error_kind", json_string(eval_err_name(ar.error_kind)));
    if (!accepted && ar.why[0]) json_object_set_new(rec, "why", json_string(ar.why));
    char ans[301];
    snprintf(ans, sizeof ans, "%s", ar.answer ? ar.answer : "");
    size_t al = strlen(ans);
    if (al == sizeof ans - 1)   /* cut on a character boundary */
        while (al && ((unsigned char)ans[al - 1] & 0xC0) == 0x80) ans[--al] = 0;
    if (al && (unsigned char)ans[al - 1] >= 0xC0) ans[--al] = 0;
    json_t *js = json_string(ans);
    if (!js) js = json_string("(answer is not valid UTF-8)");  /* a cut in the middle of a character */
    json_object_set_new(rec, "answer", js);
    /* An item cut short by an interrupt is not complete: no item record,
     * so --resume runs it again. */
    int complete = accepted || attempts == g->o->max_attempts;
    if (complete) write_record(g, rec);
    json_decref(rec);
    pthread_mutex_lock(&g->mu);
    if (complete) g->done++;
    g->accepted += accepted;
    g->errors += ar.error_kind != 0;
    pthread_mutex_unlock(&g->mu);
    free(ar.answer);
    json_decref(ar.steps);
}

/* ---- workers and progress ---------------------------------------------------- */

static void draw_progress(group *g, int final) {
    if (!g->o->progress) return;
    size_t done = g->done_before + g->done, total = g->total_all;
    int width = 30, fill = total ? (int)(done * (size_t)width / total) : width;
    char bar[64];
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '#' : '.';
    bar[width] = 0;
    double el = now_sec() - g->t0;
    fprintf(stderr, "\r%-16.16s c=%-3d [%s] %zu/%zu  accepted %zu  errors %zu  %.1fs%s", g->label, g->conc, bar,
            done, total, g->accepted, g->errors, el, final ? "\n" : "   ");
    fflush(stderr);
}

static void *worker(void *arg) {
    group *g = arg;
    for (;;) {
        pthread_mutex_lock(&g->mu);
        if (g_stop || g->next >= g->n_todo) { pthread_mutex_unlock(&g->mu); break; }
        size_t idx = g->todo[g->next++];
        pthread_mutex_unlock(&g->mu);
        run_item(g, &g->s->items[idx]);
        pthread_mutex_lock(&g->mu);
        draw_progress(g, 0);
        pthread_mutex_unlock(&g->mu);
    }
    return NULL;
}

static void warm_up(group *g) {
    for (int i = 0; i < g->o->warmup && !g_stop; i++) {
        const eval_item *it = &g->s->items[(size_t)i % g->s->n_items];
        eval_response r;
        send_one(g, it, it->messages, 0, 0, 1, &r);
        eval_response_free(&r);
    }
}

/* ---- resume ------------------------------------------------------------------------ */

static void done_key(char *buf, size_t n, const char *ep, long long conc, double rate, const char *key) {
    snprintf(buf, n, "%s|%lld|%g|%s", ep, conc, rate, key);
}

/* Keep the records of finished items (and warm-up / run records), drop the
 * requests of items an interrupt cut short, and return the finished set. */
static json_t *prepare_resume(const char *path, char *err, size_t errlen) {
    json_t *done = json_object();
    if (access(path, F_OK) != 0) return done;
    json_t *recs = eval_read_records(path, err, errlen);
    if (!recs) { json_decref(done); return NULL; }
    char k[512];
    size_t i; json_t *r;
    json_array_foreach(recs, i, r) {
        if (strcmp(json_string_value(json_object_get(r, "type")) ? json_string_value(json_object_get(r, "type")) : "", "item")) continue;
        done_key(k, sizeof k, json_string_value(json_object_get(r, "ep")) ? json_string_value(json_object_get(r, "ep")) : "",
                 (long long)json_integer_value(json_object_get(r, "conc")), json_number_value(json_object_get(r, "rate")),
                 json_string_value(json_object_get(r, "key")) ? json_string_value(json_object_get(r, "key")) : "");
        json_object_set_new(done, k, json_true());
    }
    char tmp[1200];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) { json_decref(recs); json_decref(done); errf(err, errlen, "%s: %s", tmp, strerror(errno)); return NULL; }
    json_array_foreach(recs, i, r) {
        const char *type = json_string_value(json_object_get(r, "type"));
        if (type && !strcmp(type, "request") && !json_is_true(json_object_get(r, "warmup"))) {
            done_key(k, sizeof k, json_string_value(json_object_get(r, "ep")) ? json_string_value(json_object_get(r, "ep")) : "",
                     (long long)json_integer_value(json_object_get(r, "conc")), json_number_value(json_object_get(r, "rate")),
                     json_string_value(json_object_get(r, "key")) ? json_string_value(json_object_get(r, "key")) : "");
            if (!json_object_get(done, k)) continue;
        }
        char *line = json_dumps(r, JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (line) { fputs(line, f); fputc('\n', f); free(line); }
    }
    int bad = fclose(f) != 0;
    json_decref(recs);
    if (bad || rename(tmp, path) != 0) { json_decref(done); errf(err, errlen, "%s: cannot rewrite for resume", path); return NULL; }
    return done;
}

/* ---- the run ------------------------------------------------------------------------ */

int eval_run(const eval_options *o, const eval_suite *s, char *err, size_t errlen) {
    g_stop = 0;
    char path[1100];
    path_join(path, sizeof path, o->out_dir, "records.jsonl");
    json_t *done = o->resume ? prepare_resume(path, err, errlen) : json_object();
    if (!done) return -1;
    FILE *rec = fopen(path, o->resume ? "a" : "w");
    if (!rec) { json_decref(done); return errf(err, errlen, "%s: %s", path, strerror(errno)); }

    size_t total_all = 0, done_all = 0;
    char k[512];
    int n_rates = o->n_rates > 0 ? o->n_rates : 1;
    for (int e = 0; e < o->n_ep; e++)
        for (int l = 0; l < o->n_levels; l++)
            for (int q = 0; q < n_rates; q++)
                for (size_t i = 0; i < s->n_items; i++) {
                    total_all++;
                    done_key(k, sizeof k, o->ep[e].name, o->levels[l], o->n_rates ? o->rates[q] : 0, s->items[i].key);
                    done_all += json_object_get(done, k) != NULL;
                }

    int interrupted = 0;
    for (int e = 0; e < o->n_ep && !g_stop; e++) {
        for (int lq = 0; lq < o->n_levels * n_rates && !g_stop; lq++) {
            int l = lq / n_rates, q = lq % n_rates;
            group g;
            memset(&g, 0, sizeof g);
            g.o = o; g.s = s; g.ep = &o->ep[e]; g.conc = o->levels[l]; g.rec = rec;
            g.rate = o->n_rates ? o->rates[q] : 0;
            g.label = o->ep[e].name;
            pthread_mutex_init(&g.mu, NULL);
            g.todo = xmalloc(s->n_items * sizeof *g.todo);
            for (size_t i = 0; i < s->n_items; i++) {
                done_key(k, sizeof k, g.ep->name, g.conc, g.rate, s->items[i].key);
                if (!json_object_get(done, k)) g.todo[g.n_todo++] = i;
            }
            g.total_all = total_all;
            g.done_before = done_all;
            if (g.n_todo) {
                g.t0 = now_sec();
                warm_up(&g);
                g.t0 = now_sec();
                g.next_start = g.t0;
                int nt = g.conc < (int)g.n_todo ? g.conc : (int)g.n_todo;
                pthread_t *th = xmalloc((size_t)nt * sizeof *th);
                int started = 0;
                for (int t = 0; t < nt; t++)
                    if (pthread_create(&th[t], NULL, worker, &g) == 0) started++;
                    else break;
                if (started == 0) worker(&g);
                for (int t = 0; t < started; t++) pthread_join(th[t], NULL);
                free(th);
                draw_progress(&g, 1);
                json_t *run = json_pack("{s:s,s:s,s:i,s:f,s:i,s:b}", "type", "run", "ep", g.ep->name, "conc", g.conc,
                                        "wall_ms", ms(now_sec() - g.t0), "items", (int)g.done, "interrupted", (int)g_stop);
                if (g.rate > 0) json_object_set_new(run, "rate", json_real(g.rate));
                write_record(&g, run);
                json_decref(run);
            }
            done_all += g.done;
            free(g.todo);
            pthread_mutex_destroy(&g.mu);
        }
    }
    interrupted = g_stop != 0;
    fclose(rec);
    json_decref(done);
    return interrupted ? 1 : 0;
}
