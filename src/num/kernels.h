/*
 * kernels.h - the fast matrix kernels behind linear() (num/linear.c), one
 * set per ISA family (portable C, AVX2+FMA+F16C, AVX-512 with BF16).
 *
 * Two shapes of work:
 *   GEMV  few tokens (decode, batched decode): every weight row is read
 *         straight from the mmap, converted in registers and dotted with
 *         up to 4 tokens at a time.  Memory-bound by design.
 *   GEMM  many tokens (prefill): a block of weight rows x a K slice is
 *         dequantised once into a small cache-resident buffer (FP32, or
 *         BF16 in FAST mode) and reused by every token through a register
 *         tile of RM rows x TM tokens.
 *
 * Supported by the fast paths: W_F32, W_BF16, W_FP8, W_MXFP4 with
 * cols % 64 == 0 (FP8 additionally cols % 128 == 0 or a single partial
 * block is fine: scales are looked up per 64 columns).  Everything else is
 * left to linear_ref.
 */
#ifndef DSV4_KERNELS_H
#define DSV4_KERNELS_H
#include <stdint.h>
#include "num/linear.h"
#include "num/cpu.h"

/* GEMV work description. */
typedef struct {
    const dsv4_weight *w;
    const float *x;      /* T x K activations */
    const float *xd;     /* MXFP4 only: x deinterleaved per 32-block:
                            [16 even | 16 odd] values, T x K */
    int T;
    float *y;            /* y[t * ldy + r] */
    int ldy;
} kern_gemv_args;

typedef struct {
    const char *name;
    /* y for rows [r0, r1), all T tokens (in groups of at most 4). */
    void (*gemv)(const kern_gemv_args *a, int r0, int r1);
    /* Dequantise rows [r0, r0+n) x cols [k0, k0+kc) row-major (stride kc),
     * exact values; kc % 64 == 0, k0 % 64 == 0. */
    void (*deq_f32)(const dsv4_weight *w, int r0, int n, int k0, int kc, float *out);
    void (*deq_bf16)(const dsv4_weight *w, int r0, int n, int k0, int kc, uint16_t *out);
    /* Dot-product register tile: for t < ntok, i < nrow:
     *   c[t][i] (+)= sum_{k < kc} w[i*kc + k] * x[t][k]
     * nrow <= rm, ntok <= tm; the x/c pointers of unused slots may repeat
     * valid ones (they are read, never written). kc % 32 == 0. */
    void (*tile_f32)(const float *w, int kc, const float *const *x, float *const *c,
                     int nrow, int ntok, int accum);
    void (*tile_bf16)(const uint16_t *w, int kc, const uint16_t *const *x, float *const *c,
                      int nrow, int ntok, int accum);   /* NULL: no BF16 dot */
    int rm, tm;          /* register tile: rows x tokens */
    /* tile_bf16 reads w and x in phase-major order (kern_phase_permute):
     * its arithmetic keeps four partial sums, 32-column step j into
     * partial j % 4, and with each partial's steps stored together it
     * reads them as four sequential runs instead of every fourth line.
     * Only in sets with fused kernels: the GEMM reorders its buffers, the
     * few-token path's deq + tile (sets without them) does not. */
    int tile_bf16_phased;
    /* Fused GEMV for few tokens: rows [r0, r0+nrow) (nrow <= rm) x ntok
     * (<= 4) tokens over all K, weights converted from the mmap in
     * registers, with per (row, token) exactly the arithmetic of
     * deq + tile with K slices of kc (so results match the GEMM bit for
     * bit).  x[t]: token rows from column 0; c[t]: y row of token t at
     * column r0.  NULL: the driver uses deq + tile on 4-row blocks. */
    void (*fused_f32)(const dsv4_weight *w, int r0, int nrow, const float *const *x,
                      float *const *c, int ntok, int kc);
    void (*fused_bf16)(const dsv4_weight *w, int r0, int nrow, const uint16_t *const *x,
                       float *const *c, int ntok, int kc);
    /* Rows the fused kernels take per call (nrow <= fused_rm; 0: rm).  How
     * many of them a kernel reads in lockstep is its own choice; per (row,
     * token) the arithmetic is unchanged. */
    int fused_rm;
    /* The row granularity of the few-token jobs' chunks (0: fused_rm): a
     * multiple of every row group a fused kernel reads in lockstep (FP8's
     * table path needs its groups inside one 128-row scale block). */
    int fused_align;
    /* Lightning-indexer scores of one query row (FAST mode): for keys
     * j < nb, s[j] = sum over heads h in order of relu(q_h . k_j) * wh[h],
     * each dot one FP32 chain of vdpbf16ps over the d/2 dimension pairs in
     * order, lane = key: no horizontal sums (with the keys as a GEMM's
     * weights, d = 128 columns gave the tiles 4 dot steps per reduction of
     * 13 operations).  Keys in panels of 16 (kern_index_panel_put), q: nh
     * x d BF16; nh % 8 == 0, d % 2 == 0.  NULL: not available. */
    void (*index_scores)(const uint32_t *panels, int nb, const uint16_t *q, const float *wh, int nh, int d,
                         float *s);
} kern_set;

/* Key j (d BF16 values) into the panel layout of index_scores: panel j/16
 * holds its 16 keys as [d/2 dimension pairs][16 keys] of 32 bits. */
static inline void kern_index_panel_put(uint32_t *panels, int j, const uint16_t *key, int d) {
    uint32_t *p = panels + (size_t)(j / 16) * (size_t)(d / 2) * 16 + j % 16;
    for (int i = 0; i < d / 2; i++) p[(size_t)i * 16] = (uint32_t)key[2 * i] | (uint32_t)key[2 * i + 1] << 16;
}
/* uint32_t elements of the panels for n keys */
static inline size_t kern_index_panel_len(int n, int d) { return (size_t)((n + 15) / 16) * 16 * (size_t)(d / 2); }

extern const kern_set kern_c, kern_avx2, kern_avx512;

/* ---- FAST mode, int8 activations (num/kernels_i8.c) ---------------------
 * For weights that are small integers times a block scale: the release's
 * MXFP4, GGUF MXFP4 and Q8_0.  One token's activations are quantised per
 * 32-column block and laid out for the weight format t: q (K bytes, in the
 * order the weight bytes come in), then per block the integer correction
 * of the unsigned weight offset and the scale (K/32 entries each, each
 * stored 4 times: a chunk's 16 entries are the few-token kernel's lanes
 * 4b + r, block b for any row r; block b's value is corr[4 * b]).
 * K % 128 == 0. */
typedef struct {
    const int8_t *q;
    const int32_t *corr;
    const float *scale;
} kern_q8x;
int kern_i8_supports(const dsv4_weight *w);
size_t kern_q8x_bytes(int K);
void kern_q8x_quantize(wtype t, const float *x, int K, void *buf);
void kern_q8x_quantize_ref(wtype t, const float *x, int K, void *buf);   /* portable */
void kern_q8x_view(void *buf, int K, kern_q8x *v);
/* Portable model of one (row, token) product, same arithmetic (tests). */
float kern_i8_dot_ref(const dsv4_weight *w, int r, const kern_q8x *x);
/* Where a thread reads next: the first row of its next chunk (w NULL:
 * nothing). */
typedef struct { const dsv4_weight *w; int row; } kern_i8_next;
/* AVX-512 VNNI, few tokens: c[t][i] = row r0+i . token t, ntok <= 4
 * tokens.  Each pass of 4 rows prefetches the rows 32 KiB on in this
 * thread's stream, their bytes and (MXFP4) their scales, which are a
 * tensor of their own; the last passes prefetch from `after` instead:
 * rows past the end of this call usually belong to another thread, and
 * prefetching them moved them to the wrong core. */
void kern_i8_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *const *x,
                    float *const *c, int ntok, kern_i8_next after);
/* Bytes of one row of an int8-path weight (kern_i8_supports), and the
 * address of row r. */
size_t kern_i8_row_bytes(const dsv4_weight *w);
const void *kern_i8_row_ptr(const dsv4_weight *w, int r);
/* AVX-512 VNNI, many tokens: the same products for rows r0..r0+nrow-1 and
 * T tokens (x[t]; y[t * ldy + r]), 16 rows' weights unpacked once into
 * buf (kern_i8_gemm_buf_bytes(K) bytes, 64-byte aligned: 18 per column, 72
 * KiB at K = 4096, in L2) and reused for every token.  Bit-identical to
 * kern_i8_avx512. */
static inline size_t kern_i8_gemm_buf_bytes(int K) { return (size_t)K / 128 * 36 * 64; }
void kern_i8_gemm_avx512(const dsv4_weight *w, int r0, int nrow, const kern_q8x *x,
                         float *y, size_t ldy, int T, void *buf);
/* 1 if FAST-mode products take the int8 path on this kernel set (AVX-512
 * VNNI present; DSV4_INT8_ACT=0 turns it off). */
int kern_i8_available(const kern_set *ks);
/* y = W x through the int8 path (any T; batch-invariant). */
void kern_i8_linear(const dsv4_weight *w, const float *x, int T, float *y, dsv4_pool *pool);
/* Tests: 1 makes the AVX-512 set take its paths for CPUs without VBMI. */
extern int kern_avx512_no_vbmi;
const kern_set *kern_for_isa(cpu_isa_level lvl);

/* Whether the fast kernels handle this weight (format and shape). */
int kern_supports(const dsv4_weight *w);

/* Fast products used by linear() (num/linear.c); exposed for tests and
 * benchmarks.  bf16 != 0: activations rounded to BF16 and BF16 dot
 * products (FAST mode); bf16 == 2 also rounds F32 weights (LIN_ROUND_F32);
 * 0: FP32 numerics.  ks: kernel set. */
void kern_linear(const kern_set *ks, const dsv4_weight *w, const float *x, int T, float *y,
                 int bf16, dsv4_pool *pool);
/* Tokens from which linear() switches from GEMV to GEMM. */
extern int kern_gemm_min_t;
/* 1 (default): on kernel sets with BF16 tiles every product goes through
 * the tiles, whatever T, so results do not depend on the batch shape
 * (see kern_linear).  0: GEMV below kern_gemm_min_t (tests, benchmarks). */
extern int kern_batch_invariant;

/* Probes (num/kernels_probe.c) for `dsv4 bench`. */
/* Read bandwidth in GB/s: nthreads sum a buffer of `bytes` bytes `reps`
 * times (best pass).  pool NULL: the calling thread alone. */
double kern_probe_bandwidth(dsv4_pool *pool, size_t bytes, int reps);
/* The probe's read loop on one thread: the sum of buf's n 64-bit words
 * (for benchmarks that pair their own timings with probes). */
uint64_t kern_probe_read(const uint64_t *buf, size_t n);
/* Round trip in ns of a cache line between pool threads 0 and 1 (median
 * of several batches of ping-pongs); 0 with fewer than 2 threads. */
double kern_probe_core_round_trip(dsv4_pool *pool);
/* Best GEMM rate (GFLOP/s) of the fastest tile kernel on an in-cache
 * problem, all pool threads. */
double kern_probe_gemm_peak(dsv4_pool *pool, int *bf16_used);

/* Phase-major order of a K slice of kc BF16 values (kc % 32 == 0): the
 * 32-column steps j = 0, 4, 8, ... first, then 1, 5, 9, ..., then 2, ...
 * and 3, ...; each group keeps its steps in increasing order.  In place;
 * kc <= KERN_PHASE_MAX. */
#define KERN_PHASE_MAX 4096
void kern_phase_permute(uint16_t *v, int kc);
/* Where phase p starts (in steps) in a phase-major slice of n steps, and
 * how many steps it has. */
static inline int kern_phase_start(int n, int p) { return p * (n / 4) + (p < n % 4 ? p : n % 4); }
static inline int kern_phase_len(int n, int p) { return n / 4 + (p < n % 4); }

#endif
