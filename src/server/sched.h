/*
 * sched.h - the server's scheduler: one thread owns the engine; requests
 * wait in a bounded queue, up to max_batch of them run at once, prompts are
 * prefilled in chunks between decode steps, and all decoding sequences
 * advance together in one dsv4_forward_batch call per step (weights read
 * once per step for the whole batch).
 *
 * Prefix cache: the state of a sequence cannot be truncated (the
 * compressors fold tokens in), so the cache keeps exact snapshots: the
 * state after each prompt minus its last token, and the state at the end of
 * each finished generation.  A new prompt starts from the longest snapshot
 * whose tokens are a prefix of it (dsv4_seq_copy) and prefills only the
 * rest; a multi-turn chat thus re-reads only the new turn.
 */
#ifndef DSV4_SERVER_SCHED_H
#define DSV4_SERVER_SCHED_H
#include <stdatomic.h>
#include <stdint.h>

#include "server/generate.h"

typedef struct sched sched;

typedef struct sched_opts {
    int max_batch;        /* sequences decoding together (default 8) */
    int max_queue;        /* waiting requests beyond which submit fails */
    int prefill_chunk;    /* prompt tokens per engine call (default 512) */
    int cache_slots;      /* prefix-cache snapshots kept (0 = off) */
} sched_opts;

typedef struct sched_usage {
    int prompt_tokens;
    int cached_tokens;    /* prompt tokens taken from the prefix cache */
    int completion_tokens;
    double t_submit, t_start, t_first, t_end;
} sched_usage;

typedef struct sched_req sched_req;
struct sched_req {
    /* input, set by the submitter */
    int32_t *prompt;      /* owned by the submitter; read until on_done */
    int n_prompt;
    gen_params params;    /* the grammar passes to the scheduler */
    dsv4_dsml_cb on_event;            /* from the scheduler thread */
    void (*on_token)(void *user, double t);   /* each sampled token (timing) */
    void (*on_done)(void *user, gen_finish why, const sched_usage *u, const char *err);
    void *user;
    atomic_int cancel;    /* set by the submitter: finish early */
    /* internal */
    sched_req *next;
    sched_usage usage;
};

typedef struct sched_stats {
    int queued, active, cache_entries;
    long kv_tokens, kv_capacity;
    long cache_hit_tokens, batches, batched_seqs;
} sched_stats;

sched *sched_new(gen_model *gm, const sched_opts *o, char *err, size_t errlen);
/* Stops the thread; queued and running requests end as cancelled. */
void sched_free(sched *s);
/* Queue a request.  Returns 0, or -1 when the queue is full (nothing was
 * taken over).  After 0, on_done is called exactly once. */
int sched_submit(sched *s, sched_req *r);
void sched_get_stats(sched *s, sched_stats *st);

#endif
