/*
 * linear.c - dispatch of matrix products to the best kernel for the weight
 * format, the numeric mode and the CPU, and the two work drivers of the
 * fast kernels (num/kernels.h):
 *
 *   EXACT          always the reference (num/linear_ref.c): bit-exact by
 *                  definition.
 *   FP32           GEMV for T < kern_gemm_min_t tokens, else FP32 GEMM.
 *                  Weights are dequantised exactly; only the summation
 *                  order differs from the reference.
 *   FAST           activations rounded to BF16 (FP8, FP4 and BF16 weights
 *                  are exact in BF16), BF16 dot products (vdpbf16ps) with
 *                  FP32 accumulation, through the tile kernels for every
 *                  T (batch-invariant: see kern_linear).  F32 weights, and
 *                  CPUs without a BF16 dot product (AVX2), keep FP32
 *                  numerics and the GEMV/GEMM switch.
 *
 * Formats or shapes the fast kernels do not cover (GGUF block types, cols
 * not a multiple of 64) go to the reference.
 *
 * Threads: GEMV splits rows evenly over the pool; GEMM hands out blocks of
 * rows from an atomic counter, each worker dequantising a block x K-slice
 * once into its own buffer and reusing it for every token; the few-token
 * fused products and the int8 ones deal their row chunks out as one run
 * per thread (pool_deal: no shared counter; the runs' ends are stolen).  linear_multi() runs independent products in one
 * job (int8 and fused ones together), so that a layer's small products do
 * not each pay a wake-up, a barrier and a ramp of the memory stream.
 */
#include "num/linear.h"
#include "num/ggml_quants.h"
#include "num/cpu.h"
#include "num/kernels.h"
#include "num/numfmt.h"
#include "num/pool.h"
#include "num/vecops.h"
#include "util/util.h"
#include <ctype.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int kern_gemm_min_t = 16;

/* K slice of the GEMM buffers; the fused GEMV must use the same. */
#define KC_BF16 2048
_Static_assert(KC_BF16 <= KERN_PHASE_MAX, "kern_phase_permute takes K slices of at most KERN_PHASE_MAX");
#define KC_F32 512
int kern_batch_invariant = 1;

const kern_set *kern_for_isa(cpu_isa_level lvl) {
    switch (lvl) {
    case ISA_AVX512: return kern_avx512.gemv ? &kern_avx512 : &kern_c;
    case ISA_AVX2: return kern_avx2.gemv ? &kern_avx2 : &kern_c;
    default: return &kern_c;
    }
}

int kern_supports(const dsv4_weight *w) {
    if (!w || !w->data || w->rows <= 0 || w->cols <= 0 || w->cols % 64) return 0;
    switch (w->type) {
    case W_F32: case W_BF16: return 1;
    case W_FP8: return w->scale && w->scale_cols >= (w->cols + 127) / 128;
    case W_MXFP4: return w->scale && w->scale_cols >= w->cols / 32;
    default: return 0;
    }
}

/* ---- GEMV ----------------------------------------------------------------- */

/* Rows go out in chunks from an atomic counter, so that a thread that
 * was descheduled (or is slower) does not hold everybody up. */
typedef struct {
    const kern_set *ks;
    kern_gemv_args a;
    int chunk, nchunks;
    POOL_COUNTER(next);
} gemv_job;

static void gemv_worker(void *arg, int tid, int nth) {
    (void)tid; (void)nth;
    gemv_job *j = arg;
    for (;;) {
        int c = atomic_fetch_add(&j->next, 1);
        if (c >= j->nchunks) break;
        int lo = c * j->chunk, hi = lo + j->chunk < j->a.w->rows ? lo + j->chunk : j->a.w->rows;
        j->ks->gemv(&j->a, lo, hi);
    }
}

/* MXFP4 kernels pair low nibbles (even columns) with the first half of each
 * 32-block and high nibbles with the second. */
static float *deinterleave32(const float *x, int T, int K) {
    float *xd = malloc((size_t)T * K * sizeof(float));
    if (!xd) return NULL;
    for (int t = 0; t < T; t++)
        for (int b = 0; b < K; b += 32) {
            const float *s = x + (size_t)t * K + b;
            float *d = xd + (size_t)t * K + b;
            for (int i = 0; i < 16; i++) { d[i] = s[2 * i]; d[16 + i] = s[2 * i + 1]; }
        }
    return xd;
}

static void run_gemv(const kern_set *ks, const dsv4_weight *w, const float *x, int T,
                     float *y, dsv4_pool *pool) {
    gemv_job j = {.ks = ks, .a = {.w = w, .x = x, .T = T, .y = y, .ldy = w->rows}};
    float *xd = NULL;
    if (w->type == W_MXFP4) {
        xd = deinterleave32(x, T, w->cols);
        if (!xd) { linear_ref(w, x, T, y, DSV4_MODE_FP32, 0, pool); return; }
        j.a.xd = xd;
    }
    /* About 8 chunks per thread, at least 16 rows (or 32 KiB) each. */
    int nth = pool_size(pool);
    int min_rows = 32768 / w->cols > 16 ? 32768 / w->cols : 16;
    int chunk = (w->rows + 8 * nth - 1) / (8 * nth);
    if (chunk < min_rows) chunk = min_rows;
    j.chunk = chunk;
    j.nchunks = (w->rows + chunk - 1) / chunk;
    atomic_init(&j.next, 0);
    /* Small products are not worth waking the workers. */
    if ((size_t)w->rows * w->cols * T < 65536 || !pool || j.nchunks == 1) gemv_worker(&j, 0, 1);
    else pool_run(pool, gemv_worker, &j);
    free(xd);
}

/* ---- GEMM ----------------------------------------------------------------- */

typedef struct {
    const kern_set *ks;
    const dsv4_weight *w;
    const float *x;
    const uint16_t *xb;      /* BF16 activations (bf16 mode) */
    int T, bf16, rb, kc, ntasks;
    float *y;
    POOL_COUNTER(next);
} gemm_job;

static void gemm_block(gemm_job *j, int r0, int n, void *wbuf) {
    const kern_set *ks = j->ks;
    int K = j->w->cols, rows = j->w->rows;
    const void *xp[8];
    float *cp[8];
    for (int k0 = 0; k0 < K; k0 += j->kc) {
        int kc = K - k0 < j->kc ? K - k0 : j->kc;
        if (j->bf16) {
            ks->deq_bf16(j->w, r0, n, k0, kc, wbuf);
            if (ks->tile_bf16_phased)
                for (int i = 0; i < n; i++) kern_phase_permute((uint16_t *)wbuf + (size_t)i * kc, kc);
        } else {
            ks->deq_f32(j->w, r0, n, k0, kc, wbuf);
        }
        for (int t0 = 0; t0 < j->T; t0 += ks->tm) {
            int ntok = j->T - t0 < ks->tm ? j->T - t0 : ks->tm;
            for (int t = 0; t < ks->tm; t++) {
                int tt = t0 + (t < ntok ? t : 0);
                xp[t] = j->bf16 ? (const void *)(j->xb + (size_t)tt * K + k0)
                                : (const void *)(j->x + (size_t)tt * K + k0);
            }
            for (int i0 = 0; i0 < n; i0 += ks->rm) {
                int nrow = n - i0 < ks->rm ? n - i0 : ks->rm;
                for (int t = 0; t < ks->tm; t++)
                    cp[t] = j->y + (size_t)(t0 + (t < ntok ? t : 0)) * rows + r0 + i0;
                if (j->bf16)
                    ks->tile_bf16((const uint16_t *)wbuf + (size_t)i0 * kc, kc,
                                  (const uint16_t *const *)xp, cp, nrow, ntok, k0 > 0);
                else
                    ks->tile_f32((const float *)wbuf + (size_t)i0 * kc, kc,
                                 (const float *const *)xp, cp, nrow, ntok, k0 > 0);
            }
        }
    }
}

static void gemm_worker(void *arg, int tid, int nth) {
    (void)tid; (void)nth;
    gemm_job *j = arg;
    void *wbuf = NULL;
    for (;;) {
        int task = atomic_fetch_add(&j->next, 1);
        if (task >= j->ntasks) break;
        if (!wbuf) {
            wbuf = malloc((size_t)j->rb * j->kc * (j->bf16 ? 2 : 4));
            if (!wbuf) abort();   /* a few hundred KiB */
        }
        int r0 = task * j->rb, n = j->w->rows - r0 < j->rb ? j->w->rows - r0 : j->rb;
        gemm_block(j, r0, n, wbuf);
    }
    free(wbuf);
}

/* x to BF16 for the GEMM: rows of K values; with `phased`, each K slice
 * of every row in the tile's phase-major order. */
typedef struct { const float *x; uint16_t *xb; long rows; int K, phased; } cvt_job;

static void cvt_worker(void *arg, int tid, int nth) {
    cvt_job *c = arg;
    long q = c->rows / nth, lo = tid * q, hi = tid == nth - 1 ? c->rows : lo + q;
    vec_f32_to_bf16(c->x + lo * c->K, c->xb + lo * c->K, (size_t)(hi - lo) * c->K);
    if (c->phased)
        for (long r = lo; r < hi; r++)
            for (int k0 = 0; k0 < c->K; k0 += KC_BF16)
                kern_phase_permute(c->xb + r * c->K + k0, c->K - k0 < KC_BF16 ? c->K - k0 : KC_BF16);
}

static void run_gemm(const kern_set *ks, const dsv4_weight *w, const float *x, int T,
                     float *y, int bf16, dsv4_pool *pool) {
    int nth = pool_size(pool);
    gemm_job j = {.ks = ks, .w = w, .x = x, .T = T, .y = y, .bf16 = bf16};
    uint16_t *xb = NULL;
    if (bf16) {
        xb = malloc((size_t)T * w->cols * sizeof(uint16_t));
        if (!xb) { j.bf16 = bf16 = 0; }
        else {
            cvt_job c = {x, xb, T, w->cols, ks->tile_bf16_phased};
            if (pool && (long)T * w->cols >= 65536) pool_run(pool, cvt_worker, &c);
            else cvt_worker(&c, 0, 1);
            j.xb = xb;
        }
    }
    /* K slice: the row block's buffer and a tile of tokens stay in cache. */
    j.kc = bf16 ? KC_BF16 : KC_F32;
    /* Row blocks: 64 rows, fewer when that would leave threads idle. */
    int rb = 64;
    while (rb > ks->rm && (w->rows + rb - 1) / rb < 2 * nth) rb /= 2;
    if (rb < ks->rm) rb = ks->rm;
    j.rb = rb;
    j.ntasks = (w->rows + rb - 1) / rb;
    atomic_init(&j.next, 0);
    if (pool && nth > 1 && j.ntasks > 1) pool_run(pool, gemm_worker, &j);
    else gemm_worker(&j, 0, 1);
    free(xb);
}

/* ---- few tokens, batch-invariant (fused GEMV in tile order) -------------- */

typedef struct {
    const kern_set *ks;
    const dsv4_weight *w;
    const float *x;
    const uint16_t *xb;
    int T, bf16, kc;
    int chunk_rows, nchunks;   /* chunk c: rows [c chunk_rows, (c+1) chunk_rows), the last shorter */
    pool_deal deal;            /* run_small's own (linear_multi deals its jobs' chunks together) */
    float *y;
} small_job;

/* Rows per fused-kernel call (kern_set.fused_rm, 0: rm). */
static int fused_rows(const kern_set *ks) { return ks->fused_rm ? ks->fused_rm : ks->rm; }

static void small_rows(small_job *j, int r0, int r1, void *buf) {
    const kern_set *ks = j->ks;
    int K = j->w->cols, rows = j->w->rows;
    const void *xp[8];
    float *cp[8];
    int rstep = ks->fused_f32 ? fused_rows(ks) : ks->rm;
    for (int r = r0; r < r1; r += rstep) {
        int nrow = r1 - r < rstep ? r1 - r : rstep;
        int tg = ks->fused_f32 ? 4 : ks->tm;
        for (int t0 = 0; t0 < j->T; t0 += tg) {
            int ntok = j->T - t0 < tg ? j->T - t0 : tg;
            for (int t = 0; t < 8; t++) {
                int tt = t0 + (t < ntok ? t : 0);
                xp[t] = j->bf16 ? (const void *)(j->xb + (size_t)tt * K) : (const void *)(j->x + (size_t)tt * K);
                cp[t] = j->y + (size_t)tt * rows + r;
            }
            if (ks->fused_f32) {
                if (j->bf16) ks->fused_bf16(j->w, r, nrow, (const uint16_t *const *)xp, cp, ntok, j->kc);
                else ks->fused_f32(j->w, r, nrow, (const float *const *)xp, cp, ntok, j->kc);
                continue;
            }
            /* no fused kernel: dequantise the rows slice by slice */
            for (int k0 = 0; k0 < K; k0 += j->kc) {
                int kc = K - k0 < j->kc ? K - k0 : j->kc;
                const void *xk[8];
                for (int t = 0; t < 8; t++)
                    xk[t] = j->bf16 ? (const void *)((const uint16_t *)xp[t] + k0) : (const void *)((const float *)xp[t] + k0);
                if (j->bf16) {
                    ks->deq_bf16(j->w, r, nrow, k0, kc, buf);
                    ks->tile_bf16(buf, kc, (const uint16_t *const *)xk, cp, nrow, ntok, k0 > 0);
                } else {
                    ks->deq_f32(j->w, r, nrow, k0, kc, buf);
                    ks->tile_f32(buf, kc, (const float *const *)xk, cp, nrow, ntok, k0 > 0);
                }
            }
        }
    }
}

/* Rows [*lo, *hi) of chunk c. */
static void small_chunk(const small_job *j, int c, int *lo, int *hi) {
    *lo = c * j->chunk_rows;
    *hi = *lo + j->chunk_rows < j->w->rows ? *lo + j->chunk_rows : j->w->rows;
}

static void small_worker(void *arg, int tid, int nth) {
    (void)nth;
    small_job *j = arg;
    void *buf = NULL;
    if (!j->ks->fused_f32) {
        buf = malloc((size_t)j->ks->rm * j->kc * 4);
        if (!buf) abort();
    }
    for (int c, lo, hi; (c = pool_deal_take(&j->deal, tid)) >= 0;) {
        small_chunk(j, c, &lo, &hi);
        small_rows(j, lo, hi, buf);
    }
    free(buf);
}

/* Set up (not run) the few-token job of one product. */
static void small_setup(small_job *j, const kern_set *ks, const dsv4_weight *w, const float *x, int T,
                        float *y, int bf16, int nth) {
    *j = (small_job){.ks = ks, .w = w, .x = x, .T = T, .y = y, .bf16 = bf16};
    if (bf16) {
        size_t n = (size_t)T * w->cols;
        uint16_t *xb = malloc(n * sizeof(uint16_t));
        if (!xb) abort();
        vec_f32_to_bf16(x, xb, n);
        j->xb = xb;
    }
    j->kc = bf16 ? KC_BF16 : KC_F32;
    /* chunks of whole row groups of the kernel, 128 Ki weights (at least
     * 16 rows or 32 Ki weights), or an even share for a product too small
     * to give each thread one such chunk (mHC's 24 x 16384 FP32 product:
     * 12 + 12 rows) */
    int rq = ks->fused_f32 ? (ks->fused_align ? ks->fused_align : fused_rows(ks)) : ks->rm;
    int floor_rows = 32768 / w->cols > 16 ? 32768 / w->cols : 16;
    int rows = 131072 / w->cols > floor_rows ? 131072 / w->cols : floor_rows;
    if (rows > w->rows / nth) rows = w->rows / nth;
    rows = rows / rq * rq;
    j->chunk_rows = rows > rq ? rows : rq;
    j->nchunks = (w->rows + j->chunk_rows - 1) / j->chunk_rows;
}

/* Bytes x tokens of chunk c: the weight of its deal. */
static double small_chunk_weight(const small_job *j, int c) {
    int lo, hi;
    small_chunk(j, c, &lo, &hi);
    return (double)weight_bytes(j->w) / j->w->rows * (hi - lo) * j->T;
}

static void small_deal(small_job *j, int nth) {
    double *wt = malloc((size_t)j->nchunks * sizeof(double));
    if (!wt) abort();
    for (int c = 0; c < j->nchunks; c++) wt[c] = small_chunk_weight(j, c);
    if (pool_deal_init(&j->deal, j->nchunks, nth, wt)) abort();
    free(wt);
}

static void run_small(const kern_set *ks, const dsv4_weight *w, const float *x, int T, float *y,
                      int bf16, dsv4_pool *pool) {
    small_job j;
    small_setup(&j, ks, w, x, T, y, bf16, pool_size(pool));
    int par = (size_t)w->rows * w->cols * T >= 65536 && pool && j.nchunks > 1;
    small_deal(&j, par ? pool_size(pool) : 1);
    if (par) pool_run(pool, small_worker, &j);
    else small_worker(&j, 0, 1);
    pool_deal_free(&j.deal);
    free((void *)j.xb);
}

/* Several few-token products in one pool job (linear_multi). */
typedef struct {
    small_job *jobs;
    int n, *first, nchunks;   /* chunks numbered across the jobs: job i from first[i] */
    pool_deal deal;
} small_multi_job;

static void small_multi_worker(void *arg, int tid, int nth) {
    (void)nth;
    small_multi_job *mj = arg;
    void *buf = NULL;
    if (!mj->jobs[0].ks->fused_f32) {
        buf = malloc((size_t)mj->jobs[0].ks->rm * KC_BF16 * 4);
        if (!buf) abort();
    }
    for (int g; (g = pool_deal_take(&mj->deal, tid)) >= 0;) {
        int i = pool_unit_owner(mj->first, mj->n, g), lo, hi;
        small_job *j = &mj->jobs[i];
        small_chunk(j, g - mj->first[i], &lo, &hi);
        small_rows(j, lo, hi, buf);
    }
    free(buf);
}

static void small_multi_setup(small_multi_job *mj, const kern_set *ks, const linear_item *it, int n, int bf16,
                              int nth) {
    *mj = (small_multi_job){.n = n};
    mj->jobs = malloc((size_t)n * sizeof *mj->jobs);
    mj->first = malloc((size_t)n * sizeof(int));
    if (!mj->jobs || !mj->first) abort();
    for (int i = 0; i < n; i++) {
        int use_bf16 = bf16 && ks->tile_bf16 && ks->deq_bf16 && it[i].w->type != W_F32;
        small_setup(&mj->jobs[i], ks, it[i].w, it[i].x, it[i].T, it[i].y, use_bf16, nth);
        mj->first[i] = mj->nchunks;
        mj->nchunks += mj->jobs[i].nchunks;
    }
    double *wt = malloc((size_t)mj->nchunks * sizeof(double));
    if (!wt) abort();
    for (int i = 0; i < n; i++)
        for (int c = 0; c < mj->jobs[i].nchunks; c++) wt[mj->first[i] + c] = small_chunk_weight(&mj->jobs[i], c);
    if (pool_deal_init(&mj->deal, mj->nchunks, nth, wt)) abort();
    free(wt);
}

static void small_multi_free(small_multi_job *mj) {
    for (int i = 0; i < mj->n; i++) free((void *)mj->jobs[i].xb);
    pool_deal_free(&mj->deal);
    free(mj->jobs);
    free(mj->first);
}

static void run_small_multi(const kern_set *ks, const linear_item *it, int n, int bf16, dsv4_pool *pool) {
    small_multi_job mj;
    int nth = pool_size(pool);
    small_multi_setup(&mj, ks, it, n, bf16, nth);
    if (pool && nth > 1 && mj.nchunks > 1) pool_run(pool, small_multi_worker, &mj);
    else small_multi_worker(&mj, 0, 1);
    small_multi_free(&mj);
}

/* ---- int8 activations (FAST mode, AVX-512 VNNI: num/kernels_i8.c) ------- */

/* Several independent products in one pool job (the routed experts of a
 * layer): threads take row chunks of any product from one counter, so
 * there is one wake-up and one barrier instead of one per product, and the
 * memory streams of consecutive products overlap. */
typedef struct {
    const linear_item *it;
    int n;
    uint8_t **xq;            /* per product: T quantised tokens (shared, see run_i8) */
    kern_q8x **xv;           /* per product with T >= I8_GEMM_MIN_T: views of xq, else NULL */
    int *chunk, *first;      /* per product: rows per chunk, first global chunk */
    int nchunks;
    /* quantisation tasks (owner, token): the products that quantise their
     * own input, and the first task of each */
    int *qown, *qfirst, nown, nq;
    size_t buf_bytes;        /* the packed kernel's buffer: for the largest K */
    pool_deal deal;          /* the chunks, numbered across the products */
} i8_job;

static void i8_quant_worker(void *arg, int tid, int nth) {
    i8_job *j = arg;
    for (int g = tid; g < j->nq; g += nth) {
        int o = pool_unit_owner(j->qfirst, j->nown, g), i = j->qown[o], t = g - j->qfirst[o];
        const linear_item *it = &j->it[i];
        int K = it->w->cols;
        kern_q8x_quantize(it->w->type, it->x + (size_t)t * K, K, j->xq[i] + (size_t)t * kern_q8x_bytes(K));
    }
}

/* Tokens from which a product takes the packed-weight int8 kernel (the
 * two int8 kernels give identical results; this is only speed: 2 threads,
 * MXFP4 2048x4096 T=8 0.58 ms packed against 0.48 in two 4-token passes,
 * T=12 0.71 against 0.71, T=16 0.67 against 0.95; Q8_0 4096x4096 T=8
 * 1.35 / 1.35, T=12 1.60 / 2.03). */
#define I8_GEMM_MIN_T 12

/* Chunks of a product: rows / chunk, the last one taking the remainder, so
 * that the kernels' 16-row passes stay inside their own chunk. */
static int i8_nchunks(int rows, int chunk) { return rows / chunk > 0 ? rows / chunk : 1; }

/* Take global chunk *g (-1: none): from this thread's run, and with
 * steal, from another thread's when the own run is done; *item: its
 * product.  Returns its first row (i8_chunk's `after`). */
static kern_i8_next i8_claim(i8_job *j, int tid, int steal, int *g, int *item) {
    *g = steal ? pool_deal_take(&j->deal, tid) : pool_deal_own(&j->deal, tid);
    if (*g < 0) return (kern_i8_next){NULL, 0};
    *item = pool_unit_owner(j->first, j->n, *g);
    return (kern_i8_next){j->it[*item].w, (*g - j->first[*item]) * j->chunk[*item]};
}

static void i8_chunk(i8_job *j, int i, int c, void **buf, kern_i8_next after) {
    const linear_item *it = &j->it[i];
    int K = it->w->cols, rows = it->w->rows;
    int lo = c * j->chunk[i], hi = c == i8_nchunks(rows, j->chunk[i]) - 1 ? rows : lo + j->chunk[i];
    size_t qb = kern_q8x_bytes(K);
    if (j->xv[i]) {
        if (!*buf && !(*buf = aligned_alloc(64, j->buf_bytes))) abort();
        kern_i8_gemm_avx512(it->w, lo, hi - lo, j->xv[i], it->y, (size_t)rows, it->T, *buf);
        return;
    }
    /* the chunk's rows (<= 256 KiB) stay in L2 across token groups */
    for (int t0 = 0; t0 < it->T; t0 += 4) {
        int ntok = it->T - t0 < 4 ? it->T - t0 : 4;
        kern_q8x xv[4];
        const kern_q8x *xp[4];
        float *cp[4];
        for (int t = 0; t < 4; t++) {
            int tt = t0 + (t < ntok ? t : 0);
            kern_q8x_view(j->xq[i] + (size_t)tt * qb, K, &xv[t]);
            xp[t] = &xv[t];
            cp[t] = it->y + (size_t)tt * rows + lo;
        }
        kern_i8_avx512(it->w, lo, hi - lo, xp, cp, ntok, after);
    }
}

/* Each thread claims its next chunk of its own run before it reads the
 * current one, so that the kernel's last pass prefetches the rows this
 * thread reads next (within a run, usually the rows just after).  Chunks
 * of other threads' runs are taken one at a time, when needed: one held
 * ahead there could leave its owner idle. */
static void i8_worker(void *arg, int tid, int nth) {
    (void)nth;
    i8_job *j = arg;
    void *buf = NULL;
    int g, i = 0;
    i8_claim(j, tid, 1, &g, &i);
    while (g >= 0) {
        int gn, in = 0;
        kern_i8_next after = i8_claim(j, tid, 0, &gn, &in);
        i8_chunk(j, i, g - j->first[i], &buf, after);
        if (gn < 0) i8_claim(j, tid, 1, &gn, &in);
        g = gn;
        i = in;
    }
    free(buf);
}

/* A product whose input is the previous product's (w1 and w3 of an
 * expert), in the same layout, reuses its quantised activations. */
static int same_input(const linear_item *a, const linear_item *b) {
    return a->x == b->x && a->T == b->T && a->w->cols == b->w->cols && a->w->type == b->w->type;
}

/* Most weight bytes in one int8 chunk.  With a shared counter each chunk
 * cost a trip of its cache line between the cores (350 ns across AMD
 * CCDs) and a prefetch ramp: slice decode, 2 threads on two CCDs, the
 * experts' w2 in GB/s, 128 KiB chunks 38.6-40.2, 256 KiB 44.6-44.9, 512
 * KiB 42.7-44.6.  Dealt out in runs (pool_deal) they cost neither; the
 * experts in the model alternating with a read probe (bench_inmodel, two
 * CCDs, fraction of the probe, w1 / w2): 64 KiB 0.89-0.91 / 0.88, 128 KiB
 * 0.92 / 0.89, 256 KiB 0.92 / 0.89, 512 KiB 0.92-0.93 / 0.87-0.89. */
#define I8_CHUNK_BYTES (256u << 10)

/* Set up the int8 job of n products and quantise their inputs (in the
 * pool for 8 or more tokens' worth); *par: whether the products are worth
 * the pool. */
static void i8_setup(i8_job *j, const linear_item *it, int n, dsv4_pool *pool, int *par) {
    int nth = pool_size(pool);
    *j = (i8_job){.it = it, .n = n};
    j->xq = malloc((size_t)n * sizeof *j->xq);
    j->xv = calloc((size_t)n, sizeof *j->xv);
    j->chunk = malloc((size_t)n * sizeof(int));
    j->first = malloc((size_t)n * sizeof(int));
    j->qown = malloc((size_t)n * sizeof(int));
    j->qfirst = malloc((size_t)n * sizeof(int));
    if (!j->xq || !j->xv || !j->chunk || !j->first || !j->qown || !j->qfirst) abort();
    size_t work = 0;
    for (int i = 0; i < n; i++) {
        const dsv4_weight *w = it[i].w;
        if (i > 0 && same_input(&it[i], &it[i - 1])) {
            j->xq[i] = j->xq[i - 1];
        } else {
            j->xq[i] = malloc((size_t)it[i].T * kern_q8x_bytes(w->cols));
            if (!j->xq[i]) abort();
            j->qown[j->nown] = i;
            j->qfirst[j->nown++] = j->nq;
            j->nq += it[i].T;
        }
        if (it[i].T >= I8_GEMM_MIN_T) {   /* the packed kernel reads the tokens through views */
            size_t qb = kern_q8x_bytes(w->cols);
            if (!(j->xv[i] = malloc((size_t)it[i].T * sizeof **j->xv))) abort();
            for (int t = 0; t < it[i].T; t++) kern_q8x_view(j->xq[i] + (size_t)t * qb, w->cols, &j->xv[i][t]);
            if (kern_i8_gemm_buf_bytes(w->cols) > j->buf_bytes) j->buf_bytes = kern_i8_gemm_buf_bytes(w->cols);
        }
        /* about 8 chunks per thread and product, multiples of 16 rows
         * (the packed kernel's row group), at least 16 rows and at most
         * I8_CHUNK_BYTES of weights */
        const int cap = (int)(I8_CHUNK_BYTES / kern_i8_row_bytes(w)) / 16 * 16;
        int chunk = (w->rows + 8 * nth - 1) / (8 * nth);
        chunk = (chunk + 15) / 16 * 16;
        if (chunk > cap) chunk = cap;
        if (chunk < 16) chunk = 16;
        j->chunk[i] = chunk;
        j->first[i] = j->nchunks;
        j->nchunks += i8_nchunks(w->rows, chunk);
        work += (size_t)w->rows * w->cols * it[i].T;
    }
    *par = pool && nth > 1 && work >= 65536;
    if (*par && j->nq >= 8) pool_run(pool, i8_quant_worker, j);
    else i8_quant_worker(j, 0, 1);
    double *wt = malloc((size_t)j->nchunks * sizeof(double));
    if (!wt) abort();
    for (int i = 0; i < n; i++) {
        int rows = it[i].w->rows, nc = i8_nchunks(rows, j->chunk[i]);
        for (int c = 0; c < nc; c++) {
            int lo = c * j->chunk[i], hi = c == nc - 1 ? rows : lo + j->chunk[i];
            wt[j->first[i] + c] = (double)kern_i8_row_bytes(it[i].w) * (hi - lo) * it[i].T;
        }
    }
    if (pool_deal_init(&j->deal, j->nchunks, *par ? nth : 1, wt)) abort();
    free(wt);
}

static void i8_free(i8_job *j) {
    for (int o = 0; o < j->nown; o++) free(j->xq[j->qown[o]]);
    for (int i = 0; i < j->n; i++) free(j->xv[i]);
    free(j->xq); free(j->xv); free(j->chunk); free(j->first); free(j->qown); free(j->qfirst);
    pool_deal_free(&j->deal);
}

static void run_i8(const linear_item *it, int n, dsv4_pool *pool) {
    i8_job j;
    int par;
    i8_setup(&j, it, n, pool, &par);
    if (par && j.nchunks > 1) pool_run(pool, i8_worker, &j);
    else i8_worker(&j, 0, 1);
    i8_free(&j);
}

/* int8 products and fused few-token products in one pool job: each thread
 * takes int8 chunks until they run out, then fused ones, with no barrier
 * between (the routed experts, int8, beside the FP8 shared expert). */
typedef struct { i8_job *a; small_multi_job *b; } mixed_job;

static void mixed_worker(void *arg, int tid, int nth) {
    mixed_job *m = arg;
    i8_worker(m->a, tid, nth);
    small_multi_worker(m->b, tid, nth);
}

void kern_i8_linear(const dsv4_weight *w, const float *x, int T, float *y, dsv4_pool *pool) {
    linear_item it = {w, x, T, y, 0};
    run_i8(&it, 1, pool);
}

int kern_i8_available(const kern_set *ks) {
    static int env = -1;
    if (env < 0) {
        const char *e = getenv("DSV4_INT8_ACT");
        env = !(e && *e == '0');
    }
    return env && ks == &kern_avx512 && cpu_get_features()->avx512vnni;
}

void kern_linear(const kern_set *ks, const dsv4_weight *w, const float *x, int T, float *y,
                 int bf16, dsv4_pool *pool) {
    /* Kernel sets with BF16 tiles (FAST mode rounds activations to BF16):
     * few tokens go through the fused GEMV, which does per (row, token)
     * exactly the arithmetic of the GEMM tiles, in FP32 mode too.  A
     * (row, token) result then depends only on that row and that token, so
     * prefill, decode and batched decode give bit-identical products.  Otherwise last-bit differences between a
     * GEMV and a GEMM (also in the FP32 products that FAST mode's model
     * makes: mHC mixes, gate) cross BF16 rounding boundaries of the next
     * activations and grow through the network. */
    /* bf16 == 2: F32 weights may be rounded too (LIN_ROUND_F32) */
    int use_bf16 = bf16 && ks->tile_bf16 && ks->deq_bf16 && (w->type != W_F32 || bf16 == 2);
    /* FAST-mode MXFP4: int8 activations, every T (batch-invariant too) */
    if (bf16 && w->type == W_MXFP4 && kern_i8_supports(w) && kern_i8_available(ks)) {
        kern_i8_linear(w, x, T, y, pool);
        return;
    }
    if (T >= kern_gemm_min_t) run_gemm(ks, w, x, T, y, use_bf16, pool);
    else if (kern_batch_invariant && ks->tile_bf16) run_small(ks, w, x, T, y, use_bf16, pool);
    else run_gemv(ks, w, x, T, y, pool);
}

/* DSV4_GEMM_MIN_T overrides the GEMV/GEMM switch point, DSV4_BATCH_INVARIANT=0
 * turns the few-token path back to the plain GEMV (tuning, benchmarks). */
static void read_env_once(void) {
    static int done;
    if (done) return;
    const char *e = getenv("DSV4_GEMM_MIN_T");
    if (e && atoi(e) > 0) kern_gemm_min_t = atoi(e);
    e = getenv("DSV4_BATCH_INVARIANT");
    if (e && *e == '0') kern_batch_invariant = 0;
    done = 1;
}

/* ---- profile (DSV4_PROFILE=1) ---------------------------------------------
 * Wall time and weight bytes per tensor name, the layer and expert numbers
 * folded ("layers.#.ffn.experts.#.w1"), so that a decode run shows which
 * products stream at memory speed and which do not.  Products are called
 * from one thread (the pool parallelises inside them), so plain counters
 * do; a linear_multi is booked under its first item's name. */
#define PROF_MAX 96
typedef struct { char name[80]; long calls; double sec; double bytes; } prof_row;
static prof_row prof_rows[PROF_MAX];
static int prof_n, prof_depth, prof_on = -1;

static int profile_enabled(void) {
    if (prof_on < 0) {
        const char *e = getenv("DSV4_PROFILE");
        prof_on = e && *e && *e != '0';
    }
    return prof_on;
}

static void prof_add(const dsv4_weight *w, const char *suffix, double sec, double bytes) {
    char key[80];
    const char *s = w->name ? w->name : "(unnamed)";
    size_t k = 0;
    /* layer and expert indices (a whole dot-separated number) become '#';
     * digits inside a name (w1, w3, wq_b) stay */
    for (const char *s0 = s; *s && k + 1 < sizeof key; s++) {
        if (isdigit((unsigned char)*s) && (s == s0 || s[-1] == '.')) {
            while (isdigit((unsigned char)s[1])) s++;
            key[k++] = '#';
        } else key[k++] = *s;
    }
    key[k] = 0;
    if (k > 7 && !strcmp(key + k - 7, ".weight")) key[k - 7] = 0;
    if (suffix) snprintf(key + strlen(key), sizeof key - strlen(key), "%s", suffix);
    int i = 0;
    while (i < prof_n && strcmp(prof_rows[i].name, key)) i++;
    if (i == prof_n) {
        if (prof_n == PROF_MAX) return;
        prof_rows[prof_n] = (prof_row){0};
        snprintf(prof_rows[prof_n++].name, sizeof prof_rows[0].name, "%s", key);
    }
    prof_rows[i].calls++;
    prof_rows[i].sec += sec;
    prof_rows[i].bytes += bytes;
}

void linear_profile_reset(void) { prof_n = 0; }

void linear_profile_report(FILE *f, const char *title) {
    if (!profile_enabled() || !prof_n) return;
    double tsec = 0, tbytes = 0;
    for (int i = 0; i < prof_n; i++) { tsec += prof_rows[i].sec; tbytes += prof_rows[i].bytes; }
    fprintf(f, "products of the %s (DSV4_PROFILE):\n", title);
    fprintf(f, "%-44s %8s %10s %6s %10s %8s\n", "weight", "calls", "ms", "%", "MB", "GB/s");
    for (int i = 0; i < prof_n; i++) {
        const prof_row *r = &prof_rows[i];
        fprintf(f, "%-44s %8ld %10.2f %6.1f %10.1f %8.1f\n", r->name, r->calls, 1e3 * r->sec,
                100.0 * r->sec / tsec, r->bytes / 1e6, r->sec > 0 ? r->bytes / r->sec / 1e9 : 0.0);
    }
    fprintf(f, "%-44s %8s %10.2f %6.1f %10.1f %8.1f\n", "all products", "", 1e3 * tsec, 100.0,
            tbytes / 1e6, tsec > 0 ? tbytes / tsec / 1e9 : 0.0);
}

static void linear_run(const dsv4_weight *w, const float *x, int T, float *y,
                       dsv4_mode mode, int flags, dsv4_pool *pool);

void linear(const dsv4_weight *w, const float *x, int T, float *y,
            dsv4_mode mode, int flags, dsv4_pool *pool) {
    if (!profile_enabled() || prof_depth) { linear_run(w, x, T, y, mode, flags, pool); return; }
    double t0 = now_sec();
    prof_depth++;
    linear_run(w, x, T, y, mode, flags, pool);
    prof_depth--;
    prof_add(w, NULL, now_sec() - t0, (double)weight_bytes(w));
}

static void linear_run(const dsv4_weight *w, const float *x, int T, float *y,
                       dsv4_mode mode, int flags, dsv4_pool *pool) {
    read_env_once();
    /* GGUF block formats have their own kernels (num/ggml_quants.c); FAST
     * mode lets them quantise activations to int8 as llama.cpp does */
    if (mode == DSV4_MODE_FAST && T > 0 && (w->type == W_Q8_0 || w->type == W_GG_MXFP4) &&
        kern_i8_supports(w) && kern_i8_available(kern_for_isa(cpu_isa()))) {
        kern_i8_linear(w, x, T, y, pool);
        return;
    }
    if (mode != DSV4_MODE_EXACT && T > 0 && ggml_linear_supports(w)) {
        ggml_linear(w, x, T, y, mode == DSV4_MODE_FAST, pool);
        return;
    }
    if (mode == DSV4_MODE_EXACT || T <= 0 || !kern_supports(w)) {
        linear_ref(w, x, T, y, mode, flags, pool);
        return;
    }
    kern_linear(kern_for_isa(cpu_isa()), w, x, T, y,
                mode == DSV4_MODE_FAST ? (flags & LIN_ROUND_F32 ? 2 : 1) : 0, pool);
}

static void linear_multi_run(const linear_item *items, int n, dsv4_mode mode, dsv4_pool *pool);

void linear_multi(const linear_item *items, int n, dsv4_mode mode, dsv4_pool *pool) {
    if (!profile_enabled() || prof_depth || n <= 0) { linear_multi_run(items, n, mode, pool); return; }
    double t0 = now_sec(), bytes = 0;
    prof_depth++;
    linear_multi_run(items, n, mode, pool);
    prof_depth--;
    for (int i = 0; i < n; i++) bytes += (double)weight_bytes(items[i].w);
    prof_add(items[0].w, " (multi)", now_sec() - t0, bytes);
}

/* Which driver linear() would hand a product to, where it is one of the
 * two that run several products in one job. */
enum { MULTI_I8, MULTI_SMALL, MULTI_ALONE };

static int multi_kind(const linear_item *it, dsv4_mode mode, const kern_set *ks) {
    const dsv4_weight *w = it->w;
    if (it->T <= 0) return MULTI_ALONE;
    /* int8 activations (FAST, VNNI): GGUF Q8_0/MXFP4, release MXFP4 */
    if (mode == DSV4_MODE_FAST && kern_i8_available(ks) && kern_i8_supports(w) &&
        (w->type != W_MXFP4 || kern_supports(w)))
        return MULTI_I8;
    /* the few-token fused path (FAST/FP32, batch-invariant tiles); F32
     * weights that linear() would round (LIN_ROUND_F32) go alone */
    if (mode != DSV4_MODE_EXACT && kern_batch_invariant && ks->tile_bf16 && it->T < kern_gemm_min_t &&
        kern_supports(w) && !ggml_linear_supports(w) && !(w->type == W_F32 && (it->flags & LIN_ROUND_F32)))
        return MULTI_SMALL;
    return MULTI_ALONE;
}

static void linear_multi_run(const linear_item *items, int n, dsv4_mode mode, dsv4_pool *pool) {
    read_env_once();
    if (n <= 0) return;
    const kern_set *ks = kern_for_isa(cpu_isa());
    int bf16 = mode == DSV4_MODE_FAST, np[3] = {0, 0, 0};
    for (int i = 0; i < n; i++) np[multi_kind(&items[i], mode, ks)]++;
    /* all of one kind (the usual case): no copies */
    if (np[MULTI_I8] == n) { run_i8(items, n, pool); return; }
    if (np[MULTI_SMALL] == n) { run_small_multi(ks, items, n, bf16, pool); return; }
    /* else the int8 ones, then the fused ones, in their order; the rest alone */
    linear_item *part = malloc((size_t)n * sizeof(linear_item));
    if (!part) abort();
    int at[2] = {0, np[MULTI_I8]};
    for (int i = 0; i < n; i++) {
        int k = multi_kind(&items[i], mode, ks);
        if (k == MULTI_ALONE) linear(items[i].w, items[i].x, items[i].T, items[i].y, mode, items[i].flags, pool);
        else part[at[k]++] = items[i];
    }
    const linear_item *i8p = part, *smp = part + np[MULTI_I8];
    if (np[MULTI_I8] && np[MULTI_SMALL]) {
        i8_job a;
        small_multi_job b;
        int par;
        i8_setup(&a, i8p, np[MULTI_I8], pool, &par);
        small_multi_setup(&b, ks, smp, np[MULTI_SMALL], bf16, pool_size(pool));
        mixed_job m = {&a, &b};
        if (pool && pool_size(pool) > 1) pool_run(pool, mixed_worker, &m);
        else mixed_worker(&m, 0, 1);
        i8_free(&a);
        small_multi_free(&b);
    } else if (np[MULTI_I8]) {
        run_i8(i8p, np[MULTI_I8], pool);
    } else if (np[MULTI_SMALL]) {
        run_small_multi(ks, smp, np[MULTI_SMALL], bf16, pool);
    }
    free(part);
}
