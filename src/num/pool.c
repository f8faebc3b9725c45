/*
 * pool.c - see pool.h.  A generation counter under a mutex wakes the
 * workers; they spin briefly before sleeping so that back-to-back kernel
 * calls in a decode step do not pay a futex round trip each.  Both the
 * workers and the caller waiting for them yield the CPU after a short
 * spin: when the machine is oversubscribed a pure spin would burn the
 * time slice that the thread being waited for needs.
 */
#include "num/pool.h"
#include <math.h>
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

/* ---- guided split ---------------------------------------------------------- */

static int split_geo_start(const pool_split *s, int k) {
    int at = (int)((double)s->n * (1.0 - pow(s->q, k)));
    return at / s->align * s->align;
}

void pool_split_init(pool_split *s, int n, int nth, int align, int min_size) {
    if (align < 1) align = 1;
    if (nth < 1) nth = 1;
    if (min_size < align) min_size = align;
    min_size = (min_size + align - 1) / align * align;
    *s = (pool_split){.n = n, .align = align, .min_size = min_size, .q = 1.0 - 1.0 / (2.0 * nth)};
    /* geometric chunks while one (what is left / (2 nth)) is at least twice
     * min_size, so that rounding its edges to align keeps it >= min_size */
    /* chunk k holds about n q^k (1 - q): the last k with 2 min_size */
    int k = 0;
    double first = (double)n * (1.0 - s->q);
    if (first >= 2.0 * min_size) k = 1 + (int)floor(log(2.0 * min_size / first) / log(s->q));
    while (k > 0 && split_geo_start(s, k) - split_geo_start(s, k - 1) < 2 * min_size) k--;
    s->ngeo = k;
    s->geo_end = split_geo_start(s, k);
    s->nchunks = k + (n - s->geo_end + min_size - 1) / min_size;
    if (s->nchunks < 1) s->nchunks = 1;
}

void pool_split_chunk(const pool_split *s, int k, int *lo, int *hi) {
    if (k < s->ngeo) {
        *lo = split_geo_start(s, k);
        *hi = split_geo_start(s, k + 1);
        return;
    }
    long a = s->geo_end + (long)(k - s->ngeo) * s->min_size, b = a + s->min_size;
    *lo = a < s->n ? (int)a : s->n;
    *hi = b < s->n ? (int)b : s->n;
}
