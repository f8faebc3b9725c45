/*
 * pool.h - a persistent worker pool.  Threads are created once (model load)
 * and parked between jobs, so a decode step never creates threads.
 *
 * pool_run(p, fn, arg) calls fn(arg, tid, nthreads) on every worker,
 * tid = 0 .. nthreads-1 (tid 0 is the calling thread), and returns when all
 * are done.  Work splitting is the caller's (see pool_range).
 */
#ifndef DSV4_POOL_H
#define DSV4_POOL_H

typedef struct dsv4_pool dsv4_pool;
typedef void (*pool_fn)(void *arg, int tid, int nthreads);

dsv4_pool *pool_new(int n_threads);   /* 0 = online CPUs */
void pool_free(dsv4_pool *p);
int pool_size(const dsv4_pool *p);
void pool_run(dsv4_pool *p, pool_fn fn, void *arg);

/* A work counter on a cache line of its own, for job structs that the
 * workers read while they take work from the counter: each take moves the
 * counter's line to the taking core, and any field beside it would have to
 * follow it back on the next read (about 350 ns a trip between AMD CCDs,
 * measured by `dsv4 bench`).  Padding instead of alignas, so that jobs in
 * malloc'd arrays are fine too. */
#define POOL_COUNTER(name) char name##_pad0[64]; atomic_int name; char name##_pad1[64]

/* Even split of [0, n) for worker tid: [*lo, *hi). */
static inline void pool_range(int n, int tid, int nth, int *lo, int *hi) {
    long q = n / nth, r = n % nth;
    *lo = (int)(tid * q + (tid < r ? tid : r));
    *hi = (int)(*lo + q + (tid < r ? 1 : 0));
}
#endif
