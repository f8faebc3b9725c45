/*
 * ops.h - the small numeric building blocks of the forward pass, with the
 * rounding points of EXACT mode made explicit: where the reference holds a
 * tensor in BF16, exact mode rounds with bf16_round (rnd), the other modes
 * keep FP32.
 */
#ifndef DSV4_OPS_H
#define DSV4_OPS_H
#include "model/model.h"
#include "num/numfmt.h"
#include <math.h>

/* One row of the batch: a token of some sequence at some position.  Rows of
 * one sequence are contiguous and in position order (a "segment"). */
typedef struct row_info {
    dsv4_seq *seq;
    int pos;
    int seg_first;    /* index of the first row of this row's segment */
    int32_t id;       /* token id (hash routing) */
} row_info;

static inline int exact_mode(const dsv4_model *m) { return m->mode == DSV4_MODE_EXACT; }
static inline float rnd(int exact, float x) { return exact ? bf16_round(x) : x; }
static inline void rnd_vec(int exact, float *x, size_t n) {
    if (exact) for (size_t i = 0; i < n; i++) x[i] = bf16_round(x[i]);
}

/* mean(x^2) as the reference's FP32 reduction gives it: squares rounded to
 * FP32, summed accurately (torch sums in cascades; a double accumulator
 * reproduces its correctly rounded result far more often than a
 * sequential float sum), the mean divided in FP32. */
static inline float mean_square(const float *x, int n) {
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)(x[i] * x[i]);
    return (float)s / (float)n;
}

/* y = w * x / rms(x) in FP32, rounded to BF16 in exact mode (RMSNorm). */
void rmsnorm(const float *x, const float *w, int n, float eps, float *y, int exact);
/* Rotate the interleaved pairs of x[0..rd) by angle pos*freq[i] (inverse:
 * by -pos*freq[i]). */
void rope(float *x, int rd, const float *freq, int pos, int inverse, int exact);
/* The same with the cos/sin pairs of one position precomputed
 * (rope_table fills cs[rd]: cos, sin interleaved). */
void rope_table(const float *freq, int rd, int pos, float *cs);
void rope_apply(float *x, int rd, const float *cs, int inverse, int exact);
/* Normalised Walsh-Hadamard transform of n (power of two) values. */
void hadamard(float *x, int n, int exact);
/* Stable top-k: indices of the k largest scores, descending, ties to the
 * lower index.  k <= n. */
void topk_desc(const float *score, int n, int k, int *out);

/* The attention sub-block for rows [0, T) (model/attention.c). */
void attention_forward(dsv4_model *m, int li, row_info *rows, int T, const float *x, float *out);
/* Per-sequence state helpers (model/attention.c). */
void layer_state_reset(const dsv4_model *m, int li, layer_state *ls);

#endif
