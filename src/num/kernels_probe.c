/*
 * kernels_probe.c - machine probes for `dsv4 bench` and bench/:
 *
 *   kern_probe_bandwidth  STREAM-like read bandwidth: every pool thread sums
 *                         its share of a buffer far larger than the caches,
 *                         with software prefetch 16 KiB ahead (as the
 *                         kernels do: without it the probe read 20% less
 *                         than the BF16 head product achieved); the best of
 *                         several passes is reported.  This is the roofline
 *                         that decode speed is compared with.
 *   kern_probe_core_round_trip  how long a cache line takes from one pool
 *                         thread to the other and back.  On cloud VMs it
 *                         tells where the vCPUs sit: about 60 ns when they
 *                         share an L3 (one AMD CCD, one memory link: the
 *                         second thread added little bandwidth, 27-34 GB/s
 *                         for two against 25-30 for one), 300+ ns across
 *                         CCDs (two links: up to 48-58 GB/s, though other
 *                         tenants can hold it at the lower level).  The
 *                         host moves them between the two within minutes.
 *   kern_probe_gemm_peak  the best tile kernel (BF16 dot if the CPU has it,
 *                         else FP32) on an in-cache problem: the ceiling
 *                         for prefill FLOP/s.
 */
#include "num/kernels.h"
#include "num/pool.h"
#include "util/util.h"
#include <stdalign.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

typedef struct {
    const uint64_t *buf;
    size_t n;            /* uint64 words */
    uint64_t sums[256];
} bw_job;

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f")))
static uint64_t sum_avx512(const uint64_t *p, size_t n) {
    __m512i a0 = _mm512_setzero_si512(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const char *pf = (const char *)(p + i) + 16384;
        _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + 64, _MM_HINT_T0);
        _mm_prefetch(pf + 128, _MM_HINT_T0); _mm_prefetch(pf + 192, _MM_HINT_T0);
        a0 = _mm512_add_epi64(a0, _mm512_loadu_si512((const void *)(p + i)));
        a1 = _mm512_add_epi64(a1, _mm512_loadu_si512((const void *)(p + i + 8)));
        a2 = _mm512_add_epi64(a2, _mm512_loadu_si512((const void *)(p + i + 16)));
        a3 = _mm512_add_epi64(a3, _mm512_loadu_si512((const void *)(p + i + 24)));
    }
    /* reduce as unsigned: the intrinsic's signed reduction may overflow */
    uint64_t t[8], s = 0;
    _mm512_storeu_si512((void *)t, _mm512_add_epi64(_mm512_add_epi64(a0, a1), _mm512_add_epi64(a2, a3)));
    for (int k = 0; k < 8; k++) s += t[k];
    for (; i < n; i++) s += p[i];
    return s;
}
__attribute__((target("avx2")))
static uint64_t sum_avx2(const uint64_t *p, size_t n) {
    __m256i a0 = _mm256_setzero_si256(), a1 = a0, a2 = a0, a3 = a0;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const char *pf = (const char *)(p + i) + 16384;
        _mm_prefetch(pf, _MM_HINT_T0); _mm_prefetch(pf + 64, _MM_HINT_T0);
        a0 = _mm256_add_epi64(a0, _mm256_loadu_si256((const __m256i *)(p + i)));
        a1 = _mm256_add_epi64(a1, _mm256_loadu_si256((const __m256i *)(p + i + 4)));
        a2 = _mm256_add_epi64(a2, _mm256_loadu_si256((const __m256i *)(p + i + 8)));
        a3 = _mm256_add_epi64(a3, _mm256_loadu_si256((const __m256i *)(p + i + 12)));
    }
    uint64_t t[4];
    _mm256_storeu_si256((__m256i *)t, _mm256_add_epi64(_mm256_add_epi64(a0, a1), _mm256_add_epi64(a2, a3)));
    uint64_t s = t[0] + t[1] + t[2] + t[3];
    for (; i < n; i++) s += p[i];
    return s;
}
#endif

static uint64_t sum_c(const uint64_t *p, size_t n) {
    uint64_t a[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (int u = 0; u < 8; u++) a[u] += p[i + u];
    uint64_t s = a[0] + a[1] + a[2] + a[3] + a[4] + a[5] + a[6] + a[7];
    for (; i < n; i++) s += p[i];
    return s;
}

uint64_t kern_probe_read(const uint64_t *buf, size_t n) {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    cpu_isa_level l = cpu_isa();
    if (l >= ISA_AVX512) return sum_avx512(buf, n);
    if (l >= ISA_AVX2) return sum_avx2(buf, n);
#endif
    return sum_c(buf, n);
}

static void bw_worker(void *arg, int tid, int nth) {
    bw_job *j = arg;
    size_t q = j->n / (size_t)nth, lo = q * (size_t)tid, hi = tid == nth - 1 ? j->n : lo + q;
    uint64_t s = kern_probe_read(j->buf + lo, hi - lo);
    if (tid < 256) j->sums[tid] = s;
}

/* Fill in parallel too, so that pages land near the threads that read. */
typedef struct { uint64_t *buf; size_t n; } fill_job;
static void fill_worker(void *arg, int tid, int nth) {
    fill_job *f = arg;
    size_t q = f->n / (size_t)nth, lo = q * (size_t)tid, hi = tid == nth - 1 ? f->n : lo + q;
    for (size_t i = lo; i < hi; i++) f->buf[i] = i * 0x9e3779b97f4a7c15ull;
}

double kern_probe_bandwidth(dsv4_pool *pool, size_t bytes, int reps) {
    size_t n = bytes / 8;
    uint64_t *buf = NULL;
    if (posix_memalign((void **)&buf, 2u << 20, n * 8)) return 0;
    fill_job f = {buf, n};
    pool_run(pool, fill_worker, &f);
    bw_job j = {.buf = buf, .n = n};
    double best = 0;
    pool_run(pool, bw_worker, &j);      /* warm-up: TLB, page state */
    for (int r = 0; r < reps; r++) {
        double t0 = now_sec();
        pool_run(pool, bw_worker, &j);
        double dt = now_sec() - t0;
        double gbs = (double)n * 8 / dt / 1e9;
        if (gbs > best) best = gbs;
    }
    free(buf);
    return best;
}

/* ---- core-to-core round trip ------------------------------------------------ */

#define RT_BATCH 2000
#define RT_BATCHES 9

typedef struct {
    alignas(64) atomic_int flag;     /* its own cache line: the ball */
    alignas(64) double ns[RT_BATCHES];
} rt_job;

/* Threads 0 and 1 hand the ball back and forth: 0 writes odd values, 1
 * even ones.  A wait gives up after a second (a descheduled vCPU), which
 * leaves that batch at 0 and out of the median. */
static void rt_worker(void *arg, int tid, int nth) {
    rt_job *j = arg;
    if (nth < 2 || tid > 1) return;
    int v = 0;
    for (int b = 0; b < RT_BATCHES; b++) {
        double t0 = now_sec();
        for (int i = 0; i < RT_BATCH; i++) {
            int want = tid == 0 ? v : v + 1;
            long spins = 0;
            while (atomic_load_explicit(&j->flag, memory_order_acquire) != want)
                if (++spins % 65536 == 0 && now_sec() - t0 > 1.0) return;
            atomic_store_explicit(&j->flag, want + 1, memory_order_release);
            v += 2;
        }
        if (tid == 0) j->ns[b] = (now_sec() - t0) / RT_BATCH * 1e9;
    }
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double kern_probe_core_round_trip(dsv4_pool *pool) {
    if (pool_size(pool) < 2) return 0;
    rt_job *j = aligned_alloc(64, sizeof *j);
    if (!j) return 0;
    memset(j, 0, sizeof *j);
    atomic_init(&j->flag, 0);
    pool_run(pool, rt_worker, j);
    double v[RT_BATCHES];
    int n = 0;
    for (int b = 0; b < RT_BATCHES; b++)
        if (j->ns[b] > 0) v[n++] = j->ns[b];
    free(j);
    if (!n) return 0;
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return v[n / 2];
}

/* ---- GEMM peak ------------------------------------------------------------ */

typedef struct {
    const kern_set *ks;
    int bf16, kc, rows, toks, iters;
} peak_job;

static void peak_worker(void *arg, int tid, int nth) {
    (void)tid; (void)nth;
    peak_job *p = arg;
    const kern_set *ks = p->ks;
    int es = p->bf16 ? 2 : 4;
    char *w = calloc((size_t)p->rows * p->kc, (size_t)es);
    char *x = calloc((size_t)p->toks * p->kc, (size_t)es);
    float *c = calloc((size_t)p->toks * p->rows, sizeof(float));
    if (!w || !x || !c) { free(w); free(x); free(c); return; }
    /* small nonzero values (0x3f80 = 1.0 in BF16; FP32 1.0 = 0x3f800000) */
    for (size_t i = 0; i < (size_t)p->rows * p->kc; i++) {
        if (p->bf16) ((uint16_t *)w)[i] = 0x3c00; else ((float *)w)[i] = 0.01f;
    }
    for (size_t i = 0; i < (size_t)p->toks * p->kc; i++) {
        if (p->bf16) ((uint16_t *)x)[i] = 0x3c00; else ((float *)x)[i] = 0.01f;
    }
    const void *xp[8];
    float *cp[8];
    for (int it = 0; it < p->iters; it++)
        for (int t0 = 0; t0 < p->toks; t0 += ks->tm) {
            for (int t = 0; t < ks->tm; t++) xp[t] = x + (size_t)(t0 + t) * p->kc * es;
            for (int i0 = 0; i0 < p->rows; i0 += ks->rm) {
                for (int t = 0; t < ks->tm; t++) cp[t] = c + (size_t)(t0 + t) * p->rows + i0;
                if (p->bf16)
                    ks->tile_bf16((const uint16_t *)(w + (size_t)i0 * p->kc * es), p->kc,
                                  (const uint16_t *const *)xp, cp, ks->rm, ks->tm, 1);
                else
                    ks->tile_f32((const float *)(w + (size_t)i0 * p->kc * es), p->kc,
                                 (const float *const *)xp, cp, ks->rm, ks->tm, 1);
            }
        }
    free(w); free(x); free(c);
}

double kern_probe_gemm_peak(dsv4_pool *pool, int *bf16_used) {
    const kern_set *ks = kern_for_isa(cpu_isa());
    peak_job p = {.ks = ks, .bf16 = ks->tile_bf16 != NULL && ks != &kern_c};
    p.kc = p.bf16 ? 1024 : 512;
    p.rows = 64;
    p.toks = ks->tm * 8;
    if (bf16_used) *bf16_used = p.bf16;
    double flop_per_iter = 2.0 * p.rows * p.toks * p.kc;
    p.iters = 2;
    pool_run(pool, peak_worker, &p);    /* warm-up */
    /* Aim for about 0.3 s per measurement. */
    double t0 = now_sec();
    pool_run(pool, peak_worker, &p);
    double dt = now_sec() - t0;
    p.iters = (int)(0.3 / (dt / 2 + 1e-9));
    if (p.iters < 2) p.iters = 2;
    if (p.iters > 100000) p.iters = 100000;
    double best = 0;
    for (int r = 0; r < 3; r++) {
        t0 = now_sec();
        pool_run(pool, peak_worker, &p);
        dt = now_sec() - t0;
        double g = flop_per_iter * p.iters * pool_size(pool) / dt / 1e9;
        if (g > best) best = g;
    }
    return best;
}
