/*
 * eval_report.c - the outputs people read: report.html (self-contained:
 * inline CSS and SVG charts, no scripts, no network) and the summary table
 * printed in the terminal.  Both are drawn from summary.json plus, for the
 * latency distributions and the raw-record appendix, records.jsonl.
 */
#include "eval/eval.h"
#include "util/util.h"
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef strbuf out;

static void put(out *o, const char *s, size_t n) { strbuf_add(o, s, n); }
static void ps(out *o, const char *s) { strbuf_str(o, s); }
__attribute__((format(printf, 2, 3)))
static void pf(out *o, const char *fmt, ...) {
    char buf[2048];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < sizeof buf) { put(o, buf, (size_t)n); return; }
    char *big = xmalloc((size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    put(o, big, (size_t)n);
    free(big);
}
static void esc(out *o, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '<': ps(o, "&lt;"); break;
        case '>': ps(o, "&gt;"); break;
        case '&': ps(o, "&amp;"); break;
        case '"': ps(o, "&quot;"); break;
        default: put(o, s, 1);
        }
    }
}

static const char *const palette[] = {"#2563eb", "#dc2626", "#16a34a", "#d97706", "#7c3aed", "#0891b2", "#db2777", "#4b5563"};
#define COLOR(i) palette[(size_t)(i) % 8]

static double num(json_t *o, const char *path) {
    /* "a.b.c" lookup */
    char key[64];
    const char *p = path;
    json_t *v = o;
    while (v && *p) {
        const char *dot = strchr(p, '.');
        size_t l = dot ? (size_t)(dot - p) : strlen(p);
        if (l >= sizeof key) return 0;
        memcpy(key, p, l);
        key[l] = 0;
        v = json_object_get(v, key);
        p = dot ? dot + 1 : p + l;
    }
    return json_number_value(v);
}
static const char *str(json_t *o, const char *k) {
    const char *s = json_string_value(json_object_get(o, k));
    return s ? s : "";
}

static void group_label(json_t *g, char *buf, size_t n) {
    if (num(g, "request_rate") > 0)
        snprintf(buf, n, "%s c=%d r=%g/s", str(g, "endpoint"), (int)num(g, "concurrency"), num(g, "request_rate"));
    else
        snprintf(buf, n, "%s c=%d", str(g, "endpoint"), (int)num(g, "concurrency"));
}

static double nice_max(double v) {
    if (v <= 0) return 1;
    double p = pow(10, floor(log10(v)));
    double m = v / p;
    double s = m <= 1 ? 1 : m <= 2 ? 2 : m <= 2.5 ? 2.5 : m <= 5 ? 5 : 10;
    return s * p;
}

static void fmt_val(char *buf, size_t n, double v) {
    if (fabs(v) >= 100 || v == floor(v)) snprintf(buf, n, "%.0f", v);
    else if (fabs(v) >= 10) snprintf(buf, n, "%.1f", v);
    else snprintf(buf, n, "%.3g", v);
}

/* Vertical grouped bars: ncat categories, nser series, vals[s * ncat + c]. */
static void bar_chart(out *o, const char *title, const char *unit, const char **cats, int ncat,
                      const char **series, int nser, const double *vals) {
    int W = 900, H = 300, L = 60, B = 70, T = 30;
    double mx = 0;
    for (int i = 0; i < ncat * nser; i++) if (vals[i] > mx) mx = vals[i];
    mx = nice_max(mx);
    pf(o, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\"><title>", W, H, W, H);
    esc(o, title);
    pf(o, "</title><text x=\"%d\" y=\"18\" class=\"ct\">", L);
    esc(o, title);
    pf(o, " (%s)</text>", unit);
    for (int k = 0; k <= 4; k++) {
        double y = T + (H - T - B) * (1 - k / 4.0);
        char lab[32];
        fmt_val(lab, sizeof lab, mx * k / 4);
        pf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/><text x=\"%d\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%s</text>",
           L, y, W - 10, y, L - 5, y + 4, lab);
    }
    double cw = (double)(W - L - 10) / (ncat ? ncat : 1);
    double bw = cw * 0.8 / (nser ? nser : 1);
    for (int c = 0; c < ncat; c++) {
        for (int s = 0; s < nser; s++) {
            double v = vals[s * ncat + c];
            double h = (H - T - B) * (v / mx);
            double x = L + c * cw + cw * 0.1 + s * bw;
            char lab[32];
            fmt_val(lab, sizeof lab, v);
            pf(o, "<rect x=\"%.1f\" y=\"%.1f\" width=\"%.1f\" height=\"%.1f\" fill=\"%s\"><title>", x, H - B - h, bw * 0.92, h, COLOR(s));
            esc(o, series[s]); ps(o, " / "); esc(o, cats[c]);
            pf(o, ": %s</title></rect>", lab);
            if (bw > 22) pf(o, "<text x=\"%.1f\" y=\"%.1f\" class=\"bv\" text-anchor=\"middle\">%s</text>", x + bw * 0.46, H - B - h - 3, lab);
        }
        pf(o, "<text x=\"%.1f\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">", L + c * cw + cw / 2, H - B + 16);
        esc(o, cats[c]);
        ps(o, "</text>");
    }
    for (int s = 0; s < nser; s++) {
        pf(o, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" class=\"ax\">", L + s * 170, H - 22, COLOR(s), L + s * 170 + 14, H - 13);
        esc(o, series[s]);
        ps(o, "</text>");
    }
    ps(o, "</svg>\n");
}

/* Lines: nser series of npts[s] points (xs, ys flattened with stride maxp). */
static void line_chart(out *o, const char *title, const char *xlab, const char *ylab, const char **series, int nser,
                       const double *xs, const double *ys, const int *npts, int maxp, int logx, double ymax_fixed) {
    int W = 900, H = 300, L = 60, B = 60, T = 30, R = 20;
    double xmin = INFINITY, xmax = -INFINITY, ymax = 0;
    for (int s = 0; s < nser; s++)
        for (int i = 0; i < npts[s]; i++) {
            double x = xs[s * maxp + i], y = ys[s * maxp + i];
            if (logx && x <= 0) continue;
            double lx = logx ? log2(x) : x;
            if (lx < xmin) xmin = lx;
            if (lx > xmax) xmax = lx;
            if (y > ymax) ymax = y;
        }
    if (!isfinite(xmin)) { xmin = 0; xmax = 1; }
    if (xmax == xmin) { xmax = xmin + 1; }
    ymax = ymax_fixed > 0 ? ymax_fixed : nice_max(ymax);
    pf(o, "<svg class=\"chart\" viewBox=\"0 0 %d %d\" width=\"%d\" height=\"%d\" role=\"img\"><title>", W, H, W, H);
    esc(o, title);
    pf(o, "</title><text x=\"%d\" y=\"18\" class=\"ct\">", L);
    esc(o, title);
    ps(o, "</text>");
    for (int k = 0; k <= 4; k++) {
        double y = T + (H - T - B) * (1 - k / 4.0);
        char lab[32];
        fmt_val(lab, sizeof lab, ymax * k / 4);
        pf(o, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" class=\"grid\"/><text x=\"%d\" y=\"%.1f\" class=\"ax\" text-anchor=\"end\">%s</text>",
           L, y, W - R, y, L - 5, y + 4, lab);
    }
    for (int k = 0; k <= 4; k++) {
        double lx = xmin + (xmax - xmin) * k / 4;
        double x = L + (W - L - R) * k / 4.0;
        char lab[32];
        fmt_val(lab, sizeof lab, logx ? pow(2, lx) : lx);
        pf(o, "<text x=\"%.1f\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">%s</text>", x, H - B + 16, lab);
    }
    pf(o, "<text x=\"%d\" y=\"%d\" class=\"ax\" text-anchor=\"middle\">", (W + L) / 2, H - B + 32);
    esc(o, xlab);
    pf(o, "</text><text x=\"14\" y=\"%d\" class=\"ax\" transform=\"rotate(-90 14 %d)\" text-anchor=\"middle\">", (H - B + T) / 2, (H - B + T) / 2);
    esc(o, ylab);
    ps(o, "</text>");
    for (int s = 0; s < nser; s++) {
        pf(o, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"2\" points=\"", COLOR(s));
        for (int i = 0; i < npts[s]; i++) {
            double x = xs[s * maxp + i], y = ys[s * maxp + i];
            if (logx && x <= 0) continue;
            double px = L + (W - L - R) * ((logx ? log2(x) : x) - xmin) / (xmax - xmin);
            double py = T + (H - T - B) * (1 - (y > ymax ? ymax : y) / ymax);
            pf(o, "%.1f,%.1f ", px, py);
        }
        ps(o, "\"/>");
        if (npts[s] <= 40)
            for (int i = 0; i < npts[s]; i++) {
                double x = xs[s * maxp + i], y = ys[s * maxp + i];
                if (logx && x <= 0) continue;
                double px = L + (W - L - R) * ((logx ? log2(x) : x) - xmin) / (xmax - xmin);
                double py = T + (H - T - B) * (1 - (y > ymax ? ymax : y) / ymax);
                pf(o, "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"3\" fill=\"%s\"/>", px, py, COLOR(s));
            }
        pf(o, "<rect x=\"%d\" y=\"%d\" width=\"10\" height=\"10\" fill=\"%s\"/><text x=\"%d\" y=\"%d\" class=\"ax\">", L + s * 170, H - 16, COLOR(s), L + s * 170 + 14, H - 7);
        esc(o, series[s]);
        ps(o, "</text>");
    }
    ps(o, "</svg>\n");
}

static int cmp_d(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Empirical CDF of one latency field per group, from the records. */
static void cdf_chart(out *o, json_t *groups, json_t *records, const char *field, const char *title) {
    int ng = (int)json_array_size(groups);
    if (ng == 0) return;
    const int maxp = 200;
    double *xs = xcalloc((size_t)ng * maxp, sizeof *xs), *ys = xcalloc((size_t)ng * maxp, sizeof *ys);
    int *np = xcalloc((size_t)ng, sizeof *np);
    const char **names = xcalloc((size_t)ng, sizeof *names);
    char (*labs)[96] = xcalloc((size_t)ng, sizeof *labs);
    for (int gi = 0; gi < ng; gi++) {
        json_t *g = json_array_get(groups, (size_t)gi);
        group_label(g, labs[gi], sizeof labs[gi]);
        names[gi] = labs[gi];
        size_t cap = 64, n = 0;
        double *v = xmalloc(cap * sizeof *v);
        size_t i; json_t *r;
        json_array_foreach(records, i, r) {
            if (strcmp(str(r, "type"), "request") || json_is_true(json_object_get(r, "warmup"))) continue;
            if (strcmp(str(r, "ep"), str(g, "endpoint")) || num(r, "conc") != num(g, "concurrency") ||
                num(r, "rate") != num(g, "request_rate")) continue;
            if (strcmp(str(r, "error_kind"), "ok") || !json_is_number(json_object_get(r, field))) continue;
            if (n == cap) { cap *= 2; v = xrealloc(v, cap * sizeof *v); }
            v[n++] = num(r, field);
        }
        qsort(v, n, sizeof *v, cmp_d);
        int pts = n < (size_t)maxp ? (int)n : maxp;
        for (int k = 0; k < pts; k++) {
            size_t idx = n <= (size_t)maxp ? (size_t)k : (size_t)((double)(k + 1) * (double)n / maxp) - 1;
            xs[gi * maxp + k] = v[idx];
            ys[gi * maxp + k] = 100.0 * (double)(idx + 1) / (double)n;
        }
        np[gi] = pts;
        free(v);
    }
    line_chart(o, title, "milliseconds", "% of requests at or below", names, ng, xs, ys, np, maxp, 0, 100);
    free(xs); free(ys); free(np); free(names); free(labs);
}

static void percentile_chart(out *o, json_t *groups, const char *metric, const char *title) {
    int ng = (int)json_array_size(groups);
    if (!ng) return;
    const char *cats[3] = {"p50", "p95", "p99"};
    const char **names = xcalloc((size_t)ng, sizeof *names);
    char (*labs)[96] = xcalloc((size_t)ng, sizeof *labs);
    double *vals = xcalloc((size_t)ng * 3, sizeof *vals);
    char path[96];
    for (int gi = 0; gi < ng; gi++) {
        json_t *g = json_array_get(groups, (size_t)gi);
        group_label(g, labs[gi], sizeof labs[gi]);
        names[gi] = labs[gi];
        for (int c = 0; c < 3; c++) {
            snprintf(path, sizeof path, "latency.%s.%s", metric, cats[c]);
            vals[gi * 3 + c] = num(g, path);
        }
    }
    bar_chart(o, title, "ms", cats, 3, names, ng, vals);
    free(names); free(labs); free(vals);
}

static void cell_usd(out *o, json_t *cost, const char *key) {
    const char *s = json_string_value(json_object_get(cost, key));
    if (s) pf(o, "<td>$%s</td>", s); else ps(o, "<td>-</td>");
}

static void summary_table(out *o, json_t *groups) {
    ps(o, "<table><tr><th>endpoint</th><th>conc.</th><th>rate /s</th><th>requests</th><th>errors</th><th>TTFT p50 / p95 / p99 ms</th>"
           "<th>ITL p50 ms</th><th>E2E p50 / p95 / p99 ms</th><th>tok/s p50</th><th>accepted 1st try</th><th>accepted w/ retries</th>"
           "<th>JSON valid</th><th>schema valid</th><th>tool chains ok</th><th>cost / accepted (1st try)</th><th>cost / accepted (retries)</th><th>total cost</th></tr>\n");
    size_t i; json_t *g;
    json_array_foreach(groups, i, g) {
        long long errs = 0;
        const char *k; json_t *v;
        json_object_foreach(json_object_get(g, "errors"), k, v) errs += json_integer_value(v);
        ps(o, "<tr><td>");
        esc(o, str(g, "endpoint"));
        char rate[16];
        if (num(g, "request_rate") > 0) snprintf(rate, sizeof rate, "%g", num(g, "request_rate"));
        else snprintf(rate, sizeof rate, "-");
        pf(o, "</td><td>%d</td><td>%s</td><td>%d</td><td>%lld</td><td>%.1f / %.1f / %.1f</td><td>%.2f</td><td>%.1f / %.1f / %.1f</td><td>%.1f</td>"
              "<td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td><td>%.1f%%</td>",
           (int)num(g, "concurrency"), rate, (int)num(g, "requests"), errs,
           num(g, "latency.ttft_ms.p50"), num(g, "latency.ttft_ms.p95"), num(g, "latency.ttft_ms.p99"), num(g, "latency.itl_ms.p50"),
           num(g, "latency.e2e_ms.p50"), num(g, "latency.e2e_ms.p95"), num(g, "latency.e2e_ms.p99"), num(g, "latency.tok_s.p50"),
           100 * num(g, "acceptance.rate_first"), 100 * num(g, "acceptance.rate"), 100 * num(g, "json.valid_rate"),
           100 * num(g, "json.schema_rate"), 100 * num(g, "tools.chain_rate"));
        json_t *cost = json_object_get(g, "cost");
        cell_usd(o, cost, "per_accepted_first_try_usd");
        cell_usd(o, cost, "per_accepted_usd");
        cell_usd(o, cost, "total_usd");
        ps(o, "</tr>\n");
    }
    ps(o, "</table>\n");
}

static void template_table(out *o, json_t *groups) {
    json_t *g0 = json_array_get(groups, 0);
    if (!g0) return;
    ps(o, "<table><tr><th>template</th><th>category</th><th>items</th>");
    size_t i; json_t *g;
    char lab[96];
    json_array_foreach(groups, i, g) {
        group_label(g, lab, sizeof lab);
        ps(o, "<th>"); esc(o, lab); ps(o, " 1st / retries</th>");
    }
    ps(o, "</tr>\n");
    size_t t; json_t *tpl;
    json_array_foreach(json_object_get(g0, "templates"), t, tpl) {
        ps(o, "<tr><td>"); esc(o, str(tpl, "id")); ps(o, "</td><td>"); esc(o, str(tpl, "category"));
        pf(o, "</td><td>%d</td>", (int)num(tpl, "items"));
        json_array_foreach(groups, i, g) {
            size_t u; json_t *x, *found = NULL;
            json_array_foreach(json_object_get(g, "templates"), u, x) if (!strcmp(str(x, "id"), str(tpl, "id"))) found = x;
            if (found) pf(o, "<td class=\"%s\">%.0f%% / %.0f%%</td>", num(found, "rate") >= 1 ? "good" : num(found, "rate") > 0 ? "mid" : "bad",
                          100 * num(found, "rate_first"), 100 * num(found, "rate"));
            else ps(o, "<td>-</td>");
        }
        ps(o, "</tr>\n");
    }
    ps(o, "</table>\n");
}

static void acceptance_charts(out *o, json_t *groups) {
    int ng = (int)json_array_size(groups);
    if (!ng) return;
    const char **names = xcalloc((size_t)ng, sizeof *names);
    char (*labs)[96] = xcalloc((size_t)ng, sizeof *labs);
    double vals[2 * EVAL_MAX_ENDPOINTS * EVAL_MAX_LEVELS];
    double cost[2 * EVAL_MAX_ENDPOINTS * EVAL_MAX_LEVELS];
    int n = ng < EVAL_MAX_ENDPOINTS * EVAL_MAX_LEVELS ? ng : EVAL_MAX_ENDPOINTS * EVAL_MAX_LEVELS;
    for (int gi = 0; gi < n; gi++) {
        json_t *g = json_array_get(groups, (size_t)gi);
        group_label(g, labs[gi], sizeof labs[gi]);
        names[gi] = labs[gi];
        vals[gi] = 100 * num(g, "acceptance.rate_first");
        vals[n + gi] = 100 * num(g, "acceptance.rate");
        cost[gi] = num(g, "cost.per_accepted_first_try_pusd") / 1e6;   /* micro-dollars */
        cost[n + gi] = num(g, "cost.per_accepted_pusd") / 1e6;
    }
    const char *ser[2] = {"first try", "with retries"};
    bar_chart(o, "Acceptance rate", "%", names, n, ser, 2, vals);
    bar_chart(o, "Cost per accepted answer", "micro-USD", names, n, ser, 2, cost);
    /* By category. */
    json_t *cats = json_object_get(json_array_get(groups, 0), "categories");
    int nc = (int)json_object_size(cats);
    if (nc) {
        const char **cn = xcalloc((size_t)nc, sizeof *cn);
        double *cv = xcalloc((size_t)(nc * n), sizeof *cv);
        int c = 0;
        const char *k; json_t *v;
        json_object_foreach(cats, k, v) {
            cn[c] = k;
            for (int gi = 0; gi < n; gi++)
                cv[gi * nc + c] = 100 * num(json_object_get(json_object_get(json_array_get(groups, (size_t)gi), "categories"), k), "rate");
            c++;
        }
        bar_chart(o, "Acceptance with retries by category", "%", cn, nc, names, n, cv);
        free(cn); free(cv);
    }
    free(names); free(labs);
}

static void long_context_charts(out *o, json_t *groups) {
    int ng = (int)json_array_size(groups), maxp = EVAL_MAX_SIZES;
    int any = 0;
    for (int gi = 0; gi < ng; gi++) any |= json_array_size(json_object_get(json_array_get(groups, (size_t)gi), "long_context")) > 0;
    if (!any) { ps(o, "<p>No long-context items in this run.</p>\n"); return; }
    double *xs = xcalloc((size_t)ng * maxp, sizeof *xs), *y1 = xcalloc((size_t)ng * maxp, sizeof *y1);
    double *y2 = xcalloc((size_t)ng * maxp, sizeof *y2), *y3 = xcalloc((size_t)ng * maxp, sizeof *y3);
    int *np = xcalloc((size_t)ng, sizeof *np);
    const char **names = xcalloc((size_t)ng, sizeof *names);
    char (*labs)[96] = xcalloc((size_t)ng, sizeof *labs);
    ps(o, "<table><tr><th>endpoint</th><th>context size (tokens)</th><th>prompt tokens (mean)</th><th>items</th><th>needle retrieved (1st try)</th><th>TTFT p50 ms</th><th>decode tok/s p50</th></tr>\n");
    for (int gi = 0; gi < ng; gi++) {
        json_t *g = json_array_get(groups, (size_t)gi);
        group_label(g, labs[gi], sizeof labs[gi]);
        names[gi] = labs[gi];
        size_t i; json_t *s;
        json_array_foreach(json_object_get(g, "long_context"), i, s) {
            if ((int)i >= maxp) break;
            xs[gi * maxp + (int)i] = num(s, "size");
            y1[gi * maxp + (int)i] = num(s, "ttft_ms.p50");
            y2[gi * maxp + (int)i] = 100 * num(s, "rate_first");
            y3[gi * maxp + (int)i] = num(s, "decode_tok_s.p50");
            np[gi] = (int)i + 1;
            ps(o, "<tr><td>"); esc(o, labs[gi]);
            pf(o, "</td><td>%d</td><td>%.0f</td><td>%d</td><td>%.0f%%</td><td>%.1f</td><td>%.1f</td></tr>\n", (int)num(s, "size"),
               num(s, "prompt_tokens.mean"), (int)num(s, "items"), 100 * num(s, "rate_first"), num(s, "ttft_ms.p50"), num(s, "decode_tok_s.p50"));
        }
    }
    ps(o, "</table>\n");
    line_chart(o, "Needle retrieval vs context size", "context size (tokens, log scale)", "% retrieved", names, ng, xs, y2, np, maxp, 1, 100);
    line_chart(o, "TTFT p50 vs context size", "context size (tokens, log scale)", "ms", names, ng, xs, y1, np, maxp, 1, 0);
    line_chart(o, "Decode speed p50 vs context size", "context size (tokens, log scale)", "tokens/s", names, ng, xs, y3, np, maxp, 1, 0);
    free(xs); free(y1); free(y2); free(y3); free(np); free(names); free(labs);
}

static void records_appendix(out *o, json_t *records) {
    size_t n = json_array_size(records), shown = n < 5000 ? n : 5000;
    pf(o, "<details><summary>Failed items (%s)</summary><table><tr><th>endpoint</th><th>conc.</th><th>item</th><th>attempts</th><th>why</th><th>answer</th></tr>\n", "first attempt answers shown");
    size_t i; json_t *r;
    json_array_foreach(records, i, r) {
        if (strcmp(str(r, "type"), "item") || json_is_true(json_object_get(r, "accepted"))) continue;
        ps(o, "<tr><td>"); esc(o, str(r, "ep"));
        pf(o, "</td><td>%d</td><td>", (int)num(r, "conc")); esc(o, str(r, "key"));
        pf(o, "</td><td>%d</td><td>", (int)num(r, "attempts")); esc(o, str(r, "why"));
        ps(o, "</td><td class=\"ans\">"); esc(o, str(r, "answer"));
        ps(o, "</td></tr>\n");
    }
    ps(o, "</table></details>\n");
    pf(o, "<details><summary>Raw records (%zu of %zu JSON lines; all of them are in records.jsonl)</summary><pre>", shown, n);
    for (i = 0; i < shown; i++) {
        char *line = json_dumps(json_array_get(records, i), JSON_COMPACT | JSON_REAL_PRECISION(15));
        if (line) { esc(o, line); ps(o, "\n"); free(line); }
    }
    ps(o, "</pre></details>\n");
}

int eval_write_report(const char *path, json_t *summary, json_t *records, char *err, size_t errlen) {
    out o = {0};
    ps(&o, "");
    json_t *groups = json_object_get(summary, "groups");
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M:%S UTC", gmtime(&now));
    pf(&o, "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>dsv4 eval report</title><style>\n"
           "body{font:14px/1.45 system-ui,sans-serif;margin:24px;color:#111;max-width:1200px}"
           "h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd}"
           "table{border-collapse:collapse;margin:8px 0;font-size:12px}td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}"
           "th{background:#f3f4f6}td:first-child{text-align:left}.good{background:#dcfce7}.mid{background:#fef9c3}.bad{background:#fee2e2}"
           ".chart{display:block;margin:12px 0;max-width:100%%;height:auto}.ct{font-weight:600;font-size:14px}.ax{font-size:11px;fill:#374151}"
           ".bv{font-size:10px;fill:#111}.grid{stroke:#e5e7eb}.ans{text-align:left;max-width:420px;word-break:break-word}"
           "pre{font-size:11px;background:#f9fafb;padding:8px;overflow:auto;max-height:600px}.note{color:#4b5563}\n"
           "</style></head><body>\n<h1>dsv4 eval report</h1>\n<p class=\"note\">Suite: ");
    esc(&o, str(summary, "suite"));
    pf(&o, " &middot; generated %s &middot; up to %d attempt(s) per item &middot; %d warm-up request(s) excluded &middot; "
           "percentiles: nearest-rank &middot; latency over successful, non-warm-up requests</p>\n",
       date, (int)num(summary, "max_attempts"), (int)num(summary, "warmup"));
    ps(&o, "<h2>Endpoints</h2><table><tr><th>name</th><th>URL</th><th>model</th><th>price in / out per 1M tokens</th><th>per hour</th></tr>\n");
    json_t *seen = json_object();
    size_t i; json_t *g;
    json_array_foreach(groups, i, g) {
        if (json_object_get(seen, str(g, "endpoint"))) continue;
        json_object_set_new(seen, str(g, "endpoint"), json_true());
        json_t *c = json_object_get(g, "cost");
        ps(&o, "<tr><td>"); esc(&o, str(g, "endpoint")); ps(&o, "</td><td>"); esc(&o, str(g, "url"));
        ps(&o, "</td><td>"); esc(&o, str(g, "model"));
        pf(&o, "</td><td>$%s / $%s</td><td>$%s</td></tr>\n", str(c, "price_in_per_mtok_usd"), str(c, "price_out_per_mtok_usd"), str(c, "per_hour_usd"));
    }
    json_decref(seen);
    ps(&o, "</table>\n<h2>Summary</h2>\n");
    summary_table(&o, groups);
    ps(&o, "<h2>Latency</h2>\n");
    percentile_chart(&o, groups, "ttft_ms", "Time to first token: p50 / p95 / p99");
    percentile_chart(&o, groups, "e2e_ms", "End-to-end latency: p50 / p95 / p99");
    percentile_chart(&o, groups, "itl_ms", "Inter-token latency: p50 / p95 / p99");
    cdf_chart(&o, groups, records, "e2e_ms", "End-to-end latency distribution (CDF)");
    cdf_chart(&o, groups, records, "ttft_ms", "Time to first token distribution (CDF)");
    ps(&o, "<h2>Correctness and cost</h2>\n");
    acceptance_charts(&o, groups);
    json_array_foreach(groups, i, g) {
        json_t *by = json_object_get(json_object_get(g, "tools"), "by_step");
        if (!json_array_size(by)) continue;
        char lab[96];
        group_label(g, lab, sizeof lab);
        ps(&o, "<p>Tool-call correctness per step ("); esc(&o, lab); ps(&o, "): ");
        size_t k; json_t *s;
        json_array_foreach(by, k, s) pf(&o, "step %zu: %d/%d &nbsp; ", k + 1, (int)num(s, "ok"), (int)num(s, "n"));
        pf(&o, "whole chains: %d/%d</p>\n", (int)num(g, "tools.chains_ok"), (int)num(g, "tools.chains"));
    }
    ps(&o, "<h2>Per template</h2>\n");
    template_table(&o, groups);
    ps(&o, "<h2>Long context</h2>\n");
    long_context_charts(&o, groups);
    ps(&o, "<h2>Records</h2>\n");
    records_appendix(&o, records);
    ps(&o, "</body></html>\n");
    int rc = write_file(path, o.p, o.n, err, errlen);
    free(o.p);
    return rc;
}

void eval_print_table(FILE *f, json_t *summary) {
    json_t *groups = json_object_get(summary, "groups");
    fprintf(f, "%-22s %4s %5s %5s %4s %21s %21s %7s %7s %7s %14s %14s\n", "endpoint", "conc", "rate", "reqs", "err",
            "TTFT p50/p95/p99 ms", "E2E p50/p95/p99 ms", "tok/s", "acc1st", "accRet", "$/acc 1st", "$/acc retries");
    size_t i; json_t *g;
    json_array_foreach(groups, i, g) {
        long long errs = 0;
        const char *k; json_t *v;
        json_object_foreach(json_object_get(g, "errors"), k, v) errs += json_integer_value(v);
        char ttft[48], e2e[48];
        snprintf(ttft, sizeof ttft, "%.0f/%.0f/%.0f", num(g, "latency.ttft_ms.p50"), num(g, "latency.ttft_ms.p95"), num(g, "latency.ttft_ms.p99"));
        snprintf(e2e, sizeof e2e, "%.0f/%.0f/%.0f", num(g, "latency.e2e_ms.p50"), num(g, "latency.e2e_ms.p95"), num(g, "latency.e2e_ms.p99"));
        json_t *c = json_object_get(g, "cost");
        const char *p1 = json_string_value(json_object_get(c, "per_accepted_first_try_usd"));
        const char *p2 = json_string_value(json_object_get(c, "per_accepted_usd"));
        char rate[16];
        if (num(g, "request_rate") > 0) snprintf(rate, sizeof rate, "%g", num(g, "request_rate"));
        else snprintf(rate, sizeof rate, "-");
        fprintf(f, "%-22.22s %4d %5s %5d %4lld %21s %21s %7.1f %6.1f%% %6.1f%% %14s %14s\n", str(g, "endpoint"), (int)num(g, "concurrency"),
                rate, (int)num(g, "requests"), errs, ttft, e2e, num(g, "latency.tok_s.p50"), 100 * num(g, "acceptance.rate_first"),
                100 * num(g, "acceptance.rate"), p1 ? p1 : "-", p2 ? p2 : "-");
    }
}
