/*
 * pool.c - see pool.h.  A generation counter under a mutex wakes the
 * workers; they spin briefly before sleeping so that back-to-back kernel
 * calls in a decode step do not pay a futex round trip each.  Both the
 * workers and the caller waiting for them yield the CPU after a short
 * spin: when the machine is oversubscribed a pure spin would burn the
 * time slice that the thread being waited for needs.
 */
#include "num/pool.h"
#include <stdint.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct dsv4_pool {
    int n;
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    atomic_uint gen;
    atomic_int pending;
    atomic_int quit;
    pool_fn fn;
    void *arg;
};

typedef struct { dsv4_pool *p; int tid; } worker_arg;

static void *worker_main(void *a) {
    worker_arg *wa = a;
    dsv4_pool *p = wa->p;
    int tid = wa->tid;
    free(wa);
    unsigned seen = 0;
    for (;;) {
        unsigned g;
        int spins = 0;
        while ((g = atomic_load(&p->gen)) == seen && !atomic_load(&p->quit)) {
            if (++spins < 20000) {
                if (spins > 2000) sched_yield();
                continue;
            }
            pthread_mutex_lock(&p->mu);
            while (atomic_load(&p->gen) == seen && !atomic_load(&p->quit))
                pthread_cond_wait(&p->wake, &p->mu);
            pthread_mutex_unlock(&p->mu);
        }
        if (atomic_load(&p->quit)) return NULL;
        seen = g;
        p->fn(p->arg, tid, p->n);
        atomic_fetch_sub(&p->pending, 1);
    }
}

dsv4_pool *pool_new(int n_threads) {
    if (n_threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        n_threads = c > 0 ? (int)c : 1;
    }
    dsv4_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->n = n_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    p->threads = calloc((size_t)n_threads, sizeof(pthread_t));
    for (int i = 1; i < n_threads; i++) {
        worker_arg *wa = malloc(sizeof *wa);
        wa->p = p; wa->tid = i;
        if (pthread_create(&p->threads[i], NULL, worker_main, wa) != 0) {
            free(wa);
            p->n = i;   /* run with what we have */
            break;
        }
    }
    return p;
}

void pool_free(dsv4_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    atomic_store(&p->quit, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    for (int i = 1; i < p->n; i++) pthread_join(p->threads[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->threads);
    free(p);
}

int pool_size(const dsv4_pool *p) { return p ? p->n : 1; }

void pool_run(dsv4_pool *p, pool_fn fn, void *arg) {
    if (!p || p->n == 1) { fn(arg, 0, 1); return; }
    p->fn = fn;
    p->arg = arg;
    atomic_store(&p->pending, p->n - 1);
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->gen, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    fn(arg, 0, p->n);
    /* spin: jobs are short; yield if they are not */
    for (int spins = 0; atomic_load(&p->pending) > 0; spins++)
        if (spins > 2000) sched_yield();
}

/* ---- dealt runs -------------------------------------------------------------- */

static _Atomic uint64_t *deal_run(const pool_deal *d, int t) {
    return (_Atomic uint64_t *)((char *)d->mem + 64 * (size_t)t);
}

static uint64_t run_word(uint32_t front, uint32_t end) { return (uint64_t)front | (uint64_t)end << 32; }

int pool_deal_init(pool_deal *d, int n, int nth, const double *weight) {
    if (nth < 1) nth = 1;
    if (n < 0) n = 0;
    *d = (pool_deal){.n = n, .nth = nth, .mem = aligned_alloc(64, 64 * (size_t)nth)};
    if (!d->mem) return -1;
    double total = 0;
    for (int i = 0; i < n; i++) total += weight ? weight[i] : 1.0;
    /* run t ends at the unit edge nearest to t+1 nths of the weight */
    double cum = 0;
    int at = 0, start = 0;
    for (int t = 0; t < nth; t++) {
        double target = total * (t + 1) / nth;
        while (at < n) {
            double w = weight ? weight[at] : 1.0;
            if (t < nth - 1 && cum + w - target > target - cum) break;   /* nearer without it */
            cum += w;
            at++;
        }
        if (t == nth - 1) at = n;
        atomic_init(deal_run(d, t), run_word((uint32_t)start, (uint32_t)at));
        start = at;
    }
    return 0;
}

void pool_deal_free(pool_deal *d) {
    free(d->mem);
    d->mem = NULL;
}

int pool_deal_start(const pool_deal *d, int t) {
    return (int)(uint32_t)atomic_load(deal_run(d, t));
}

int pool_deal_own(pool_deal *d, int tid) {
    _Atomic uint64_t *r = deal_run(d, tid % d->nth);
    uint64_t v = atomic_load(r);
    for (;;) {
        uint32_t f = (uint32_t)v, e = (uint32_t)(v >> 32);
        if (f >= e) return -1;
        if (atomic_compare_exchange_weak(r, &v, run_word(f + 1, e))) return (int)f;
    }
}

int pool_deal_take(pool_deal *d, int tid) {
    int u = pool_deal_own(d, tid);
    for (int k = 1; u < 0 && k < d->nth; k++) {
        _Atomic uint64_t *r = deal_run(d, (tid + k) % d->nth);
        uint64_t v = atomic_load(r);
        for (;;) {
            uint32_t f = (uint32_t)v, e = (uint32_t)(v >> 32);
            if (f >= e) break;
            if (atomic_compare_exchange_weak(r, &v, run_word(f, e - 1))) { u = (int)(e - 1); break; }
        }
    }
    return u;
}
