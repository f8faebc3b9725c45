/*
 * pool.h - a persistent worker pool.  Threads are created once (model load)
 * and parked between jobs, so a decode step never creates threads.
 *
 * pool_run(p, fn, arg) calls fn(arg, tid, nthreads) on every worker,
 * tid = 0 .. nthreads-1 (tid 0 is the calling thread), and returns when all
 * are done.  Work splitting is the caller's (see pool_range, pool_deal).
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
/* Jobs that number the work units of several items consecutively (item i
 * owns units first[i] .. first[i+1]-1, first ascending): the item that
 * owns unit g (the last i with first[i] <= g; n >= 1). */
static inline int pool_unit_owner(const int *first, int n, int g) {
    int lo = 0, hi = n - 1;
    while (lo < hi) {
        int mid = (lo + hi + 1) / 2;
        if (first[mid] <= g) lo = mid; else hi = mid - 1;
    }
    return lo;
}

/* Work units [0, n) dealt out as one contiguous run per thread, the runs
 * of about equal weight (bytes of the units, or equal): each thread takes
 * the units of its own run in order, from a word on a cache line of its
 * own, and when its run is done takes units from the back of the other
 * threads' runs.  Cores then trade cache lines only at the end of a job
 * (a shared counter moved a line between the cores at every take: about
 * 350 ns a trip between AMD CCDs), each thread reads one sequential
 * stream whose next chunk its kernel can prefetch into, and the units can
 * be small, which bounds the wait for the last one. */
typedef struct {
    int n, nth;
    void *mem;      /* nth lines: per thread, its run as front | end << 32 */
} pool_deal;
/* weight: n entries or NULL (equal).  Returns 0, or -1 without memory. */
int pool_deal_init(pool_deal *d, int n, int nth, const double *weight);
void pool_deal_free(pool_deal *d);
/* The next unit of thread tid's own run, or -1 when the run is done. */
int pool_deal_own(pool_deal *d, int tid);
/* The own run's next unit, else the last unit left in another thread's
 * run, or -1 when no unit is left. */
int pool_deal_take(pool_deal *d, int tid);
/* First unit of thread t's run as dealt (tests). */
int pool_deal_start(const pool_deal *d, int t);
#endif
