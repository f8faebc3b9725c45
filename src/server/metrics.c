/*
 * metrics.c - Prometheus metrics of the server (see metrics.h).
 */
#include "server/metrics.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

#define NB 14
static const double bounds[NB] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30};

typedef struct { long b[NB]; long count; double sum; } histo;

typedef struct { char endpoint[32]; int status; long n; } reqcount;

struct metrics {
    pthread_mutex_t mu;
    reqcount req[64];
    int n_req;
    long prompt, cached, generated, cancelled;
    histo ttft, itl, e2e;
};

metrics *metrics_new(void) {
    metrics *m = xcalloc(1, sizeof *m);
    pthread_mutex_init(&m->mu, NULL);
    return m;
}

void metrics_free(metrics *m) {
    if (!m) return;
    pthread_mutex_destroy(&m->mu);
    free(m);
}

void metrics_request(metrics *m, const char *endpoint, int status) {
    pthread_mutex_lock(&m->mu);
    int i;
    for (i = 0; i < m->n_req; i++)
        if (m->req[i].status == status && !strcmp(m->req[i].endpoint, endpoint)) break;
    if (i == m->n_req && m->n_req < 64) {
        snprintf(m->req[i].endpoint, sizeof m->req[i].endpoint, "%s", endpoint);
        m->req[i].status = status;
        m->n_req++;
    }
    if (i < 64) m->req[i].n++;
    pthread_mutex_unlock(&m->mu);
}

void metrics_tokens(metrics *m, long prompt, long cached, long generated) {
    pthread_mutex_lock(&m->mu);
    m->prompt += prompt; m->cached += cached; m->generated += generated;
    pthread_mutex_unlock(&m->mu);
}

static void observe(metrics *m, histo *h, double v) {
    pthread_mutex_lock(&m->mu);
    for (int i = 0; i < NB; i++) if (v <= bounds[i]) h->b[i]++;
    h->count++;
    h->sum += v;
    pthread_mutex_unlock(&m->mu);
}

void metrics_ttft(metrics *m, double s) { observe(m, &m->ttft, s); }
void metrics_itl(metrics *m, double s) { observe(m, &m->itl, s); }
void metrics_e2e(metrics *m, double s) { observe(m, &m->e2e, s); }
void metrics_cancelled(metrics *m) {
    pthread_mutex_lock(&m->mu);
    m->cancelled++;
    pthread_mutex_unlock(&m->mu);
}

typedef struct { char *p; size_t n, cap; } sbuf;

static void sb_printf(sbuf *b, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        va_start(ap, fmt);
        int k = vsnprintf(b->p + b->n, b->cap - b->n, fmt, ap);
        va_end(ap);
        if (k >= 0 && (size_t)k < b->cap - b->n) { b->n += (size_t)k; return; }
        b->cap = b->cap * 2 + (size_t)(k > 0 ? k : 0) + 256;
        b->p = xrealloc(b->p, b->cap);
    }
}

static void render_histo(sbuf *b, const char *name, const char *help, const histo *h) {
    sb_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < NB; i++) sb_printf(b, "%s_bucket{le=\"%g\"} %ld\n", name, bounds[i], h->b[i]);
    sb_printf(b, "%s_bucket{le=\"+Inf\"} %ld\n%s_sum %.6f\n%s_count %ld\n", name, h->count, name, h->sum, name, h->count);
}

char *metrics_render(metrics *m, int queued, int active, long kv_tokens, long kv_capacity,
                     int cache_entries, long batches, long batched_seqs) {
    sbuf b = {xmalloc(4096), 0, 4096};
    pthread_mutex_lock(&m->mu);
    sb_printf(&b, "# HELP dsv4_requests_total HTTP requests by endpoint and status.\n# TYPE dsv4_requests_total counter\n");
    for (int i = 0; i < m->n_req; i++)
        sb_printf(&b, "dsv4_requests_total{endpoint=\"%s\",code=\"%d\"} %ld\n", m->req[i].endpoint, m->req[i].status, m->req[i].n);
    sb_printf(&b, "# HELP dsv4_prompt_tokens_total Prompt tokens of finished requests.\n# TYPE dsv4_prompt_tokens_total counter\ndsv4_prompt_tokens_total %ld\n", m->prompt);
    sb_printf(&b, "# HELP dsv4_prompt_tokens_cached_total Prompt tokens reused from the prefix cache.\n# TYPE dsv4_prompt_tokens_cached_total counter\ndsv4_prompt_tokens_cached_total %ld\n", m->cached);
    sb_printf(&b, "# HELP dsv4_generation_tokens_total Generated tokens.\n# TYPE dsv4_generation_tokens_total counter\ndsv4_generation_tokens_total %ld\n", m->generated);
    sb_printf(&b, "# HELP dsv4_requests_cancelled_total Generations cancelled (client gone).\n# TYPE dsv4_requests_cancelled_total counter\ndsv4_requests_cancelled_total %ld\n", m->cancelled);
    render_histo(&b, "dsv4_time_to_first_token_seconds", "Time from request arrival to the first generated token.", &m->ttft);
    render_histo(&b, "dsv4_inter_token_latency_seconds", "Time between consecutive generated tokens of a request.", &m->itl);
    render_histo(&b, "dsv4_request_duration_seconds", "Time from request arrival to the last token.", &m->e2e);
    pthread_mutex_unlock(&m->mu);
    sb_printf(&b, "# HELP dsv4_queue_length Requests waiting for a batch slot.\n# TYPE dsv4_queue_length gauge\ndsv4_queue_length %d\n", queued);
    sb_printf(&b, "# HELP dsv4_active_requests Requests in the running batch.\n# TYPE dsv4_active_requests gauge\ndsv4_active_requests %d\n", active);
    sb_printf(&b, "# HELP dsv4_kv_tokens Tokens held in sequence state (running and prefix cache).\n# TYPE dsv4_kv_tokens gauge\ndsv4_kv_tokens %ld\n", kv_tokens);
    sb_printf(&b, "# HELP dsv4_kv_capacity_tokens Token capacity of all sequence slots.\n# TYPE dsv4_kv_capacity_tokens gauge\ndsv4_kv_capacity_tokens %ld\n", kv_capacity);
    sb_printf(&b, "# HELP dsv4_kv_usage_ratio kv_tokens / kv_capacity_tokens.\n# TYPE dsv4_kv_usage_ratio gauge\ndsv4_kv_usage_ratio %.6f\n",
              kv_capacity ? (double)kv_tokens / (double)kv_capacity : 0.0);
    sb_printf(&b, "# HELP dsv4_prefix_cache_entries Snapshots in the prefix cache.\n# TYPE dsv4_prefix_cache_entries gauge\ndsv4_prefix_cache_entries %d\n", cache_entries);
    sb_printf(&b, "# HELP dsv4_decode_steps_total Batched decode steps.\n# TYPE dsv4_decode_steps_total counter\ndsv4_decode_steps_total %ld\n", batches);
    sb_printf(&b, "# HELP dsv4_decode_sequences_total Sequences advanced by decode steps (sum of batch sizes).\n# TYPE dsv4_decode_sequences_total counter\ndsv4_decode_sequences_total %ld\n", batched_seqs);
    return b.p;
}
