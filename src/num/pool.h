/*
 * pool.h - a persistent worker pool.  Threads are created once (model load)
 * and parked between jobs, so a decode step never creates threads.
 *
 * pool_run(p, fn, arg) calls fn(arg, tid, nthreads) on every worker,
 * tid = 0 .. nthreads-1 (tid 0 is the calling thread), and returns when all
 * are done.  Work splitting is the caller's (see pool_range, pool_split).
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

/* Guided split of [0, n) into chunks that workers take from a counter
 * (chunk k for the k-th take): the first chunks hold 1/(2 x threads) of
 * what is left, so they shrink geometrically down to min_size, then stay
 * there.  With equal chunks (1/16 of a product each) the first thread to
 * finish waited on average half a chunk for the last one: in a decode step
 * of the Flash slice 5% of the fused products' time was spent with one
 * core idle (2 threads, measured per pool_run).  Small last chunks bound
 * that wait; large first ones keep the number of takes (each a trip of the
 * counter's cache line between cores) small.  Chunk edges are multiples of
 * align (except at n). */
typedef struct {
    int n, align, min_size;
    int ngeo;       /* geometric chunks */
    int geo_end;    /* where they end */
    int nchunks;
    double q;       /* 1 - 1/(2 x threads) */
} pool_split;

void pool_split_init(pool_split *s, int n, int nth, int align, int min_size);
/* Rows [*lo, *hi) of chunk k (0 <= k < s->nchunks). */
void pool_split_chunk(const pool_split *s, int k, int *lo, int *hi);
#endif
