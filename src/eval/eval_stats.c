/*
 * eval_stats.c - statistics and cost arithmetic of `dsv4 eval`, and the
 * summary.json computed from the records alone.
 *
 * Percentiles use the nearest-rank method: sort the n values, the p-th
 * percentile is the value at 1-based rank ceil(p/100 * n) (at least 1).
 * It always returns an observed value, and is exact on small samples.
 *
 * Costs are integers: prices are micro-dollars (per 1M tokens or per
 * hour) and request costs pico-dollars, so the cost of a request is
 *   in_tokens * price_in + out_tokens * price_out       (pico-USD)
 * exactly, and per-hour costs are wall_us * price_per_hour / 3600 pico-USD
 * (rounded to the nearest pico-dollar once per group).  Dollar amounts are
 * printed from these integers with half-up rounding.
 */
#include "eval/eval.h"
#include "util/util.h"
#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double eval_percentile(double *v, size_t n, double p) {
    if (n == 0) return 0;
    qsort(v, n, sizeof *v, cmp_double);
    /* ceil(p*n/100) computed without float surprises for exact products:
     * p is given with at most 3 decimals in practice. */
    long long pn = llround(p * 1000.0) * (long long)n;        /* p*n*1000 */
    long long rank = pn / 100000 + (pn % 100000 != 0);
    if (rank < 1) rank = 1;
    if ((size_t)rank > n) rank = (long long)n;
    return v[rank - 1];
}

int eval_parse_usd(const char *s, int64_t *uusd) {
    if (!s || !*s) return -1;
    while (*s == ' ') s++;
    if (*s == '$') s++;
    int64_t whole = 0, frac = 0;
    int fd = 0, any = 0;
    const char *p = s;
    for (; isdigit((unsigned char)*p); p++) {
        if (whole > 1000000000LL) return -1;
        whole = whole * 10 + (*p - '0');
        any = 1;
    }
    if (*p == '.') {
        for (p++; isdigit((unsigned char)*p); p++) {
            any = 1;
            if (fd < 6) { frac = frac * 10 + (*p - '0'); fd++; }
            else if (*p != '0') return -1;   /* below a micro-dollar: refuse rather than round */
        }
    }
    if (!any || *p) return -1;
    while (fd < 6) { frac *= 10; fd++; }
    *uusd = whole * 1000000 + frac;
    return 0;
}

int64_t eval_request_cost_pusd(long in_tokens, long out_tokens, int64_t price_in_uusd, int64_t price_out_uusd) {
    /* tokens * (uUSD per 1M tokens) = pUSD: 1e-6 USD / 1e6 tokens = 1e-12 USD per token-unit. */
    return (int64_t)in_tokens * price_in_uusd + (int64_t)out_tokens * price_out_uusd;
}

void eval_format_usd(int64_t pusd, int decimals, char *buf, size_t n) {
    if (decimals < 0) decimals = 0;
    if (decimals > 12) decimals = 12;
    int neg = pusd < 0;
    unsigned long long a = neg ? (unsigned long long)(-(pusd + 1)) + 1 : (unsigned long long)pusd;
    unsigned long long unit = 1;
    for (int i = 0; i < 12 - decimals; i++) unit *= 10;
    unsigned long long q = (a + unit / 2) / unit;
    unsigned long long scale = 1;
    for (int i = 0; i < decimals; i++) scale *= 10;
    if (decimals) snprintf(buf, n, "%s%llu.%0*llu", neg && q ? "-" : "", q / scale, decimals, q % scale);
    else snprintf(buf, n, "%s%llu", neg && q ? "-" : "", q);
}

json_t *eval_read_records(const char *path, char *err, size_t errlen) {
    size_t len;
    char *text = read_file(path, &len, err, errlen);
    if (!text) return NULL;
    json_t *arr = json_array();
    char *p = text;
    while (*p) {
        char *nl = strchr(p, '\n');
        size_t l = nl ? (size_t)(nl - p) : strlen(p);
        if (l) {
            json_t *r = json_loadb(p, l, 0, NULL);
            if (json_is_object(r)) json_array_append_new(arr, r);   /* a torn last line is skipped */
            else json_decref(r);
        }
        if (!nl) break;
        p = nl + 1;
    }
    free(text);
    return arr;
}

/* ---- summary ---------------------------------------------------------------- */

typedef struct { double *v; size_t n, cap; } dvec;
static void dv_push(dvec *d, double x) {
    if (d->n == d->cap) { d->cap = d->cap ? d->cap * 2 : 64; d->v = xrealloc(d->v, d->cap * sizeof *d->v); }
    d->v[d->n++] = x;
}

static double round3(double x) { return round(x * 1000.0) / 1000.0; }

static json_t *dist(dvec *d) {
    json_t *o = json_object();
    json_object_set_new(o, "n", json_integer((json_int_t)d->n));
    if (d->n == 0) return o;
    double sum = 0;
    for (size_t i = 0; i < d->n; i++) sum += d->v[i];
    json_object_set_new(o, "mean", json_real(round3(sum / (double)d->n)));
    json_object_set_new(o, "p50", json_real(eval_percentile(d->v, d->n, 50)));
    json_object_set_new(o, "p95", json_real(eval_percentile(d->v, d->n, 95)));
    json_object_set_new(o, "p99", json_real(eval_percentile(d->v, d->n, 99)));
    json_object_set_new(o, "min", json_real(d->v[0]));
    json_object_set_new(o, "max", json_real(d->v[d->n - 1]));
    return o;
}

static const char *sget(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}
static long long iget(json_t *o, const char *k) { return (long long)json_integer_value(json_object_get(o, k)); }
static double nget(json_t *o, const char *k, int *has) {
    json_t *v = json_object_get(o, k);
    if (has) *has = json_is_number(v);
    return json_number_value(v);
}

static const eval_endpoint *find_ep(const eval_options *o, const char *name) {
    for (int i = 0; o && i < o->n_ep; i++)
        if (!strcmp(o->ep[i].name, name)) return &o->ep[i];
    return NULL;
}

static json_t *usd(int64_t pusd) {
    char b[48];
    eval_format_usd(pusd, 6, b, sizeof b);
    return json_string(b);
}

static double share(long long a, long long n) { return n ? round(1e6 * (double)a / (double)n) / 1e6 : 0; }

/* Counters for one template / category / long-context size. */
static json_t *bucket(json_t *parent, const char *key) {
    json_t *b = json_object_get(parent, key);
    if (!b) {
        b = json_pack("{s:i,s:i,s:i,s:i}", "items", 0, "accepted", 0, "accepted_first", 0, "attempts", 0);
        json_object_set_new(parent, key, b);
    }
    return b;
}
static void bump(json_t *b, const char *k, long long by) {
    json_object_set_new(b, k, json_integer(json_integer_value(json_object_get(b, k)) + by));
}
static void finish_bucket(json_t *b) {
    long long n = iget(b, "items");
    json_object_set_new(b, "rate", json_real(share(iget(b, "accepted"), n)));
    json_object_set_new(b, "rate_first", json_real(share(iget(b, "accepted_first"), n)));
}

static json_t *summarize_group(const eval_options *o, json_t *records, const char *epname, long long conc, double rate) {
    const eval_endpoint *ep = find_ep(o, epname);
    dvec ttft = {0}, itl = {0}, tpot = {0}, e2e = {0}, tps = {0};
    json_t *errors = json_object();
    long long requests = 0, ok_requests = 0, warmups = 0;
    long long in_tok = 0, out_tok = 0, in_first = 0, out_first = 0;
    int64_t token_cost = 0, token_cost_first = 0;
    double e2e_all = 0, e2e_first = 0, wall_ms = 0;
    long long items = 0, acc = 0, acc_first = 0, attempts = 0;
    long long json_items = 0, json_valid = 0, schema_items = 0, schema_valid = 0;
    long long chains = 0, chains_ok = 0, steps = 0, steps_ok = 0;
    json_t *step_pos = json_array();
    json_t *templates = json_object(), *cats = json_object(), *lc = json_object();
    json_t *lc_ttft = json_object(), *lc_dec = json_object(), *lc_in = json_object();
    size_t i; json_t *r;
    json_array_foreach(records, i, r) {
        if (strcmp(sget(r, "ep"), epname) || iget(r, "conc") != conc || nget(r, "rate", NULL) != rate) continue;
        const char *type = sget(r, "type");
        if (!strcmp(type, "run")) { wall_ms += nget(r, "wall_ms", NULL); continue; }
        if (!strcmp(type, "request")) {
            if (json_is_true(json_object_get(r, "warmup"))) { warmups++; continue; }
            requests++;
            long long it = iget(r, "in_tokens"), ot = iget(r, "out_tokens");
            int64_t c = ep ? eval_request_cost_pusd((long)it, (long)ot, ep->price_in_uusd, ep->price_out_uusd) : 0;
            double e = nget(r, "e2e_ms", NULL);
            in_tok += it; out_tok += ot; token_cost += c; e2e_all += e;
            if (iget(r, "attempt") == 1) { in_first += it; out_first += ot; token_cost_first += c; e2e_first += e; }
            const char *ek = sget(r, "error_kind");
            if (strcmp(ek, "ok")) { json_object_set_new(errors, ek, json_integer(json_integer_value(json_object_get(errors, ek)) + 1)); continue; }
            ok_requests++;
            int has;
            double v;
            v = nget(r, "ttft_ms", &has); if (has) dv_push(&ttft, v);
            v = nget(r, "itl_ms", &has); if (has) dv_push(&itl, v);
            v = nget(r, "tpot_ms", &has); if (has) dv_push(&tpot, v);
            dv_push(&e2e, e);
            v = nget(r, "tok_s", &has); if (has) dv_push(&tps, v);
            /* Long-context latency from first attempts only: a retry of the
             * same prompt may be served from a prefix cache. */
            if (iget(r, "lc_size") && iget(r, "attempt") == 1) {
                char k[32];
                snprintf(k, sizeof k, "%lld", iget(r, "lc_size"));
                if (!json_object_get(lc_ttft, k)) {
                    json_object_set_new(lc_ttft, k, json_array());
                    json_object_set_new(lc_dec, k, json_array());
                    json_object_set_new(lc_in, k, json_array());
                }
                v = nget(r, "ttft_ms", &has); if (has) json_array_append_new(json_object_get(lc_ttft, k), json_real(v));
                v = nget(r, "decode_tok_s", &has); if (has) json_array_append_new(json_object_get(lc_dec, k), json_real(v));
                json_array_append_new(json_object_get(lc_in, k), json_integer(it));
            }
            continue;
        }
        if (strcmp(type, "item")) continue;
        items++;
        int a = json_is_true(json_object_get(r, "accepted")), af = json_is_true(json_object_get(r, "accepted_first"));
        long long na = iget(r, "attempts");
        acc += a; acc_first += af; attempts += na;
        json_t *first = json_object_get(r, "first");
        if (json_object_get(first, "json_valid")) { json_items++; json_valid += json_is_true(json_object_get(first, "json_valid")); }
        if (json_object_get(first, "schema_valid")) { schema_items++; schema_valid += json_is_true(json_object_get(first, "schema_valid")); }
        json_t *st = json_object_get(first, "steps");
        if (json_is_array(st)) {
            chains++;
            chains_ok += json_is_true(json_object_get(first, "chain_ok"));
            size_t k; json_t *s;
            json_array_foreach(st, k, s) {
                while (json_array_size(step_pos) <= k) json_array_append_new(step_pos, json_pack("{s:i,s:i}", "n", 0, "ok", 0));
                json_t *pos = json_array_get(step_pos, k);
                bump(pos, "n", 1);
                bump(pos, "ok", json_is_true(s));
                steps++;
                steps_ok += json_is_true(s);
            }
        }
        json_t *buckets[3] = {bucket(templates, sget(r, "template")), bucket(cats, sget(r, "category")), NULL};
        if (iget(r, "lc_size")) {
            char k[32];
            snprintf(k, sizeof k, "%lld", iget(r, "lc_size"));
            buckets[2] = bucket(lc, k);
        }
        for (int b = 0; b < 3; b++) {
            if (!buckets[b]) continue;
            bump(buckets[b], "items", 1);
            bump(buckets[b], "accepted", a);
            bump(buckets[b], "accepted_first", af);
            bump(buckets[b], "attempts", na);
        }
        if (json_object_get(templates, sget(r, "template")) && !json_object_get(buckets[0], "category"))
            json_object_set_new(buckets[0], "category", json_string(sget(r, "category")));
    }

    json_t *g = json_object();
    json_object_set_new(g, "endpoint", json_string(epname));
    if (ep) {
        json_object_set_new(g, "url", json_string(ep->url));
        json_object_set_new(g, "model", json_string(ep->model));
    }
    json_object_set_new(g, "concurrency", json_integer(conc));
    json_object_set_new(g, "request_rate", json_real(rate));
    json_object_set_new(g, "requests", json_integer(requests));
    json_object_set_new(g, "ok_requests", json_integer(ok_requests));
    json_object_set_new(g, "warmup_requests", json_integer(warmups));
    json_object_set_new(g, "errors", errors);
    json_object_set_new(g, "wall_s", json_real(round3(wall_ms / 1000.0)));
    json_object_set_new(g, "output_tok_s_total", json_real(wall_ms > 0 ? round3((double)out_tok / (wall_ms / 1000.0)) : 0));
    json_t *lat = json_object();
    json_object_set_new(lat, "ttft_ms", dist(&ttft));
    json_object_set_new(lat, "itl_ms", dist(&itl));
    json_object_set_new(lat, "tpot_ms", dist(&tpot));
    json_object_set_new(lat, "e2e_ms", dist(&e2e));
    json_object_set_new(lat, "tok_s", dist(&tps));
    json_object_set_new(g, "latency", lat);
    json_object_set_new(g, "acceptance", json_pack("{s:I,s:I,s:I,s:I,s:f,s:f}", "items", (json_int_t)items,
                        "accepted", (json_int_t)acc, "accepted_first", (json_int_t)acc_first, "attempts", (json_int_t)attempts,
                        "rate", share(acc, items), "rate_first", share(acc_first, items)));
    json_object_set_new(g, "json", json_pack("{s:I,s:I,s:f,s:I,s:I,s:f}", "items", (json_int_t)json_items,
                        "valid", (json_int_t)json_valid, "valid_rate", share(json_valid, json_items),
                        "schema_items", (json_int_t)schema_items, "schema_valid", (json_int_t)schema_valid,
                        "schema_rate", share(schema_valid, schema_items)));
    size_t k; json_t *pos;
    json_array_foreach(step_pos, k, pos) json_object_set_new(pos, "rate", json_real(share(iget(pos, "ok"), iget(pos, "n"))));
    json_object_set_new(g, "tools", json_pack("{s:I,s:I,s:f,s:I,s:I,s:f,s:o}", "chains", (json_int_t)chains,
                        "chains_ok", (json_int_t)chains_ok, "chain_rate", share(chains_ok, chains), "steps", (json_int_t)steps,
                        "steps_ok", (json_int_t)steps_ok, "step_rate", share(steps_ok, steps), "by_step", step_pos));

    /* Cost.  Per-hour pricing is spread over requests by their time. */
    int64_t hour_cost = 0, hour_first = 0;
    if (ep && ep->per_hour_uusd) {
        __int128 wall_us = (__int128)llround(wall_ms * 1000.0);
        hour_cost = (int64_t)((wall_us * ep->per_hour_uusd + 1800) / 3600);
        hour_first = e2e_all > 0 ? (int64_t)llround((double)hour_cost * (e2e_first / e2e_all)) : 0;
    }
    int64_t total = token_cost + hour_cost, first = token_cost_first + hour_first;
    json_t *cost = json_object();
    json_object_set_new(cost, "input_tokens", json_integer(in_tok));
    json_object_set_new(cost, "output_tokens", json_integer(out_tok));
    json_object_set_new(cost, "first_try_input_tokens", json_integer(in_first));
    json_object_set_new(cost, "first_try_output_tokens", json_integer(out_first));
    if (ep) {
        char b[48];
        eval_format_usd(ep->price_in_uusd * 1000000, 6, b, sizeof b);
        json_object_set_new(cost, "price_in_per_mtok_usd", json_string(b));
        eval_format_usd(ep->price_out_uusd * 1000000, 6, b, sizeof b);
        json_object_set_new(cost, "price_out_per_mtok_usd", json_string(b));
        eval_format_usd(ep->per_hour_uusd * 1000000, 6, b, sizeof b);
        json_object_set_new(cost, "per_hour_usd", json_string(b));
    }
    json_object_set_new(cost, "total_pusd", json_integer(total));
    json_object_set_new(cost, "total_usd", usd(total));
    json_object_set_new(cost, "first_try_total_pusd", json_integer(first));
    if (acc) {
        int64_t per = (total + acc / 2) / acc;
        json_object_set_new(cost, "per_accepted_pusd", json_integer(per));
        json_object_set_new(cost, "per_accepted_usd", usd(per));
    }
    if (acc_first) {
        int64_t per = (first + acc_first / 2) / acc_first;
        json_object_set_new(cost, "per_accepted_first_try_pusd", json_integer(per));
        json_object_set_new(cost, "per_accepted_first_try_usd", usd(per));
    }
    json_object_set_new(g, "cost", cost);

    json_t *tarr = json_array();
    const char *key; json_t *b;
    json_object_foreach(templates, key, b) {
        finish_bucket(b);
        json_object_set_new(b, "id", json_string(key));
        json_array_append(tarr, b);
    }
    json_object_set_new(g, "templates", tarr);
    json_object_foreach(cats, key, b) finish_bucket(b);
    json_object_set_new(g, "categories", json_incref(cats));

    /* Long context, by size ascending. */
    json_t *larr = json_array();
    json_object_foreach(lc, key, b) {
        finish_bucket(b);
        json_object_set_new(b, "size", json_integer(atoll(key)));
        dvec t = {0}, d = {0}, p = {0};
        size_t j; json_t *x;
        json_array_foreach(json_object_get(lc_ttft, key), j, x) dv_push(&t, json_number_value(x));
        json_array_foreach(json_object_get(lc_dec, key), j, x) dv_push(&d, json_number_value(x));
        json_array_foreach(json_object_get(lc_in, key), j, x) dv_push(&p, (double)json_integer_value(x));
        json_object_set_new(b, "ttft_ms", dist(&t));
        json_object_set_new(b, "decode_tok_s", dist(&d));
        json_object_set_new(b, "prompt_tokens", dist(&p));
        free(t.v); free(d.v); free(p.v);
        size_t at = 0;
        while (at < json_array_size(larr) && iget(json_array_get(larr, at), "size") < atoll(key)) at++;
        json_array_insert(larr, at, b);
    }
    json_object_set_new(g, "long_context", larr);
    json_decref(templates); json_decref(cats); json_decref(lc);
    json_decref(lc_ttft); json_decref(lc_dec); json_decref(lc_in);
    free(ttft.v); free(itl.v); free(tpot.v); free(e2e.v); free(tps.v);
    return g;
}

json_t *eval_summarize(const eval_options *o, const char *suite_name, json_t *records) {
    json_t *sum = json_object();
    json_object_set_new(sum, "version", json_integer(1));
    json_object_set_new(sum, "suite", json_string(suite_name ? suite_name : ""));
    json_object_set_new(sum, "percentile_method", json_string("nearest-rank"));
    if (o) {
        json_object_set_new(sum, "max_attempts", json_integer(o->max_attempts));
        json_object_set_new(sum, "warmup", json_integer(o->warmup));
        json_object_set_new(sum, "timeout_s", json_real(o->timeout_s));
    }
    /* Groups in the order of options (endpoint, level), then any other
     * group found in the records. */
    json_t *seen = json_object(), *groups = json_array();
    char k[300];
    int n_rates = o && o->n_rates > 0 ? o->n_rates : 1;
    for (int e = 0; o && e < o->n_ep; e++)
        for (int l = 0; l < o->n_levels; l++)
            for (int q = 0; q < n_rates; q++) {
                double rate = o->n_rates ? o->rates[q] : 0;
                snprintf(k, sizeof k, "%s|%d|%g", o->ep[e].name, o->levels[l], rate);
                json_object_set_new(seen, k, json_true());
                json_array_append_new(groups, summarize_group(o, records, o->ep[e].name, o->levels[l], rate));
            }
    size_t i; json_t *r;
    json_array_foreach(records, i, r) {
        snprintf(k, sizeof k, "%s|%lld|%g", sget(r, "ep"), iget(r, "conc"), nget(r, "rate", NULL));
        if (json_object_get(seen, k)) continue;
        json_object_set_new(seen, k, json_true());
        json_array_append_new(groups, summarize_group(o, records, sget(r, "ep"), iget(r, "conc"), nget(r, "rate", NULL)));
    }
    json_decref(seen);
    json_object_set_new(sum, "groups", groups);
    return sum;
}
