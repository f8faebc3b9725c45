/*
 * metrics.h - Prometheus counters and histograms of the server (text
 * exposition format 0.0.4).  Thread-safe; cheap enough to call per token.
 */
#ifndef DSV4_SERVER_METRICS_H
#define DSV4_SERVER_METRICS_H
#include <stddef.h>

typedef struct metrics metrics;

metrics *metrics_new(void);
void metrics_free(metrics *m);
void metrics_request(metrics *m, const char *endpoint, int status);
void metrics_tokens(metrics *m, long prompt, long cached, long generated);
void metrics_ttft(metrics *m, double sec);
void metrics_itl(metrics *m, double sec);
void metrics_e2e(metrics *m, double sec);
void metrics_cancelled(metrics *m);
/* Render everything; gauges are passed in (scheduler state). */
char *metrics_render(metrics *m, int queued, int active, long kv_tokens, long kv_capacity,
                     int cache_entries, long batches, long batched_seqs);

#endif
