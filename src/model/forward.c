/*
 * forward.c - the DeepSeek-V4 forward pass, llama2.c style:
 *
 *   H = 4 copies of embed[id]                        (mHC streams)
 *   for each block:  attention sub-block, MoE sub-block, each wrapped in
 *                    hc_pre (Sinkhorn-mixed reduction) / hc_post (expansion)
 *   logits = head . RMSNorm(hc_head(H))
 *
 * A call processes a batch of rows (tokens); a row belongs to a sequence at
 * a position.  A prefill is one sequence's consecutive rows, a batched
 * decode is one row from each of several sequences; either way every
 * weight matrix is streamed once per call.
 */
#include "model/ops.h"
#include "num/kernels.h"
#include "num/vecops.h"
#include "util/util.h"
#include <float.h>
#include <stdlib.h>
#include <string.h>

void model_profile_reset(dsv4_model *m) {
    memset(m->prof_s, 0, (size_t)(m->cfg.n_layers + 2) * sizeof(double));
    m->prof_calls = 0;
}

/* ---- sequences -------------------------------------------------------------- */

dsv4_seq *dsv4_seq_new(dsv4_model *m, int max_ctx, char *err, size_t errlen) {
    const dsv4_config *c = &m->cfg;
    if (max_ctx <= 0) max_ctx = c->max_position_embeddings < 65536 ? (int)c->max_position_embeddings : 65536;
    if (max_ctx > c->max_position_embeddings) {
        errf(err, errlen, "context %d exceeds max_position_embeddings %ld", max_ctx, c->max_position_embeddings);
        return NULL;
    }
    dsv4_seq *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->cap = max_ctx;
    int nl = c->n_layers + c->n_mtp_layers, hd = c->head_dim, ihd = c->index_head_dim;
    s->ls = xcalloc((size_t)nl, sizeof(layer_state));
    for (int i = 0; i < nl; i++) {
        const layer_w *l = &m->layers[i];
        layer_state *ls = &s->ls[i];
        ls->ring = xmalloc((size_t)c->window_size * hd * sizeof(float));
        if (l->ratio) {
            ls->ckv = xcalloc((size_t)(max_ctx / l->ratio + 1) * hd, sizeof(float));
            size_t st = (size_t)l->comp.coff * l->ratio * l->comp.coff * hd;
            ls->kv_state = xmalloc(st * sizeof(float));
            ls->sc_state = xmalloc(st * sizeof(float));
        }
        if (l->has_indexer) {
            ls->ikv = xcalloc((size_t)(max_ctx / 4 + 1) * ihd, sizeof(float));
            ls->ikv_pan = xcalloc(kern_index_panel_len(max_ctx / 4 + 1, ihd), sizeof(uint32_t));
            ls->ikv_state = xmalloc((size_t)8 * 2 * ihd * sizeof(float));
            ls->isc_state = xmalloc((size_t)8 * 2 * ihd * sizeof(float));
        }
    }
    dsv4_seq_reset(s);
    return s;
}

void dsv4_seq_free(dsv4_seq *s) {
    if (!s) return;
    int nl = s->m->cfg.n_layers + s->m->cfg.n_mtp_layers;
    for (int i = 0; i < nl; i++) {
        layer_state *ls = &s->ls[i];
        free(ls->ring); free(ls->ckv); free(ls->kv_state); free(ls->sc_state);
        free(ls->ikv); free(ls->ikv_pan); free(ls->ikv_state); free(ls->isc_state);
    }
    free(s->ls);
    free(s->streams);
    free(s);
}

void dsv4_seq_reset(dsv4_seq *s) {
    int nl = s->m->cfg.n_layers + s->m->cfg.n_mtp_layers;
    for (int i = 0; i < nl; i++) layer_state_reset(s->m, i, &s->ls[i]);
    s->pos = 0;
    s->mtp_pos = 0;
}

int dsv4_seq_pos(const dsv4_seq *s) { return s->pos; }
int dsv4_seq_capacity(const dsv4_seq *s) { return s->cap; }

void seq_keep_streams(dsv4_seq *s, int on) {
    const dsv4_config *c = &s->m->cfg;
    s->keep_streams = on;
    if (on && !s->streams) s->streams = xmalloc((size_t)s->cap * c->hc_mult * c->dim * sizeof(float));
}

int dsv4_seq_copy(dsv4_seq *dst, const dsv4_seq *src) {
    const dsv4_model *m = src->m;
    const dsv4_config *c = &m->cfg;
    if (dst->m != src->m || dst->cap < src->pos) return -1;
    int nl = c->n_layers + c->n_mtp_layers, hd = c->head_dim, ihd = c->index_head_dim;
    for (int i = 0; i < nl; i++) {
        const layer_w *l = &m->layers[i];
        const layer_state *a = &src->ls[i];
        layer_state *b = &dst->ls[i];
        memcpy(b->ring, a->ring, (size_t)c->window_size * hd * sizeof(float));
        if (l->ratio) {
            memcpy(b->ckv, a->ckv, (size_t)(src->pos / l->ratio) * hd * sizeof(float));
            size_t st = (size_t)l->comp.coff * l->ratio * l->comp.coff * hd * sizeof(float);
            memcpy(b->kv_state, a->kv_state, st);
            memcpy(b->sc_state, a->sc_state, st);
        }
        if (l->has_indexer) {
            memcpy(b->ikv, a->ikv, (size_t)(src->pos / 4) * ihd * sizeof(float));
            b->ikv_pan_n = 0;
            memcpy(b->ikv_state, a->ikv_state, (size_t)16 * ihd * sizeof(float));
            memcpy(b->isc_state, a->isc_state, (size_t)16 * ihd * sizeof(float));
        }
    }
    dst->pos = src->pos;
    dst->mtp_pos = src->mtp_pos;
    if (src->keep_streams && src->streams) {
        seq_keep_streams(dst, 1);
        memcpy(dst->streams, src->streams, (size_t)src->pos * c->hc_mult * c->dim * sizeof(float));
    }
    return 0;
}

/* Pretend ctx tokens were processed: random window ring, compressed
 * entries, indexer keys and compressor state of the right shapes and scale
 * (unit-RMS vectors, as after the norms), so long contexts can be timed
 * without a long prefill.  The numbers are meaningless; the costs are real. */
int seq_fill_random(dsv4_seq *s, int ctx, uint64_t seed) {
    const dsv4_model *m = s->m;
    const dsv4_config *c = &m->cfg;
    if (ctx < 0 || ctx > s->cap) return -1;
    uint64_t st = seed * 0x9E3779B97F4A7C15ull + 1;
#define RNDF() (st ^= st << 13, st ^= st >> 7, st ^= st << 17, (float)((int64_t)(st >> 11) % 2000001 - 1000000) * 1.7e-6f)
    int hd = c->head_dim, ihd = c->index_head_dim;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_w *l = &m->layers[i];
        layer_state *ls = &s->ls[i];
        for (size_t k = 0; k < (size_t)c->window_size * hd; k++) ls->ring[k] = RNDF();
        if (l->ratio) {
            for (size_t k = 0; k < (size_t)(ctx / l->ratio) * hd; k++) ls->ckv[k] = RNDF();
            size_t n = (size_t)l->comp.coff * l->ratio * l->comp.coff * hd;
            for (size_t k = 0; k < n; k++) { ls->kv_state[k] = RNDF(); ls->sc_state[k] = RNDF(); }
        }
        if (l->has_indexer) {
            for (size_t k = 0; k < (size_t)(ctx / 4) * ihd; k++) ls->ikv[k] = RNDF();
            ls->ikv_pan_n = 0;
            for (size_t k = 0; k < (size_t)16 * ihd; k++) { ls->ikv_state[k] = RNDF(); ls->isc_state[k] = RNDF(); }
        }
    }
#undef RNDF
    s->pos = ctx;
    s->mtp_pos = ctx;
    return 0;
}

/* ---- mHC (spec 6) -------------------------------------------------------------- */

static dsv4_weight f32_matrix(const float *data, int rows, int cols) {
    dsv4_weight w = {.type = W_F32, .rows = rows, .cols = cols, .data = data, .name = "hc_fn"};
    return w;
}

/* mixes[T][mix] = (fn . flat(H)) * rsqrt(mean(flat^2) + eps), FP32. */
/* ---- parallel loops over rows ------------------------------------------- */

/* fn(ctx, lo, hi) over [0, n) split across the pool; the per-element
 * arithmetic is the caller's and does not depend on the split.  Small
 * loops (work = elements x cost) stay on the calling thread. */
typedef void (*range_fn)(void *ctx, int lo, int hi);
typedef struct { range_fn fn; void *ctx; int n; } par_job;

static void par_worker(void *arg, int tid, int nth) {
    par_job *j = arg;
    int lo, hi;
    pool_range(j->n, tid, nth, &lo, &hi);
    if (lo < hi) j->fn(j->ctx, lo, hi);
}

static void par_for(dsv4_model *m, int n, size_t work, range_fn fn, void *ctx) {
    if (!m->pool || n < 2 || work < ((size_t)1 << 18)) { fn(ctx, 0, n); return; }
    par_job j = {fn, ctx, n};
    pool_run(m->pool, par_worker, &j);
}

static void hc_mixes(dsv4_model *m, const float *fn, int mix, const float *H, int T, float *mixes) {
    const dsv4_config *c = &m->cfg;
    int n = c->hc_mult * c->dim;
    dsv4_weight w = f32_matrix(fn, mix, n);
    linear(&w, H, T, mixes, m->mode == DSV4_MODE_EXACT ? DSV4_MODE_EXACT : DSV4_MODE_FP32, 0, m->pool);
    for (int t = 0; t < T; t++) {
        float r = 1.0f / sqrtf(mean_square(H + (size_t)t * n, n) + c->norm_eps);
        for (int i = 0; i < mix; i++) mixes[(size_t)t * mix + i] *= r;
    }
}

static float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

/* pre[hc], post[hc], comb[hc][hc] from one row of mixes (hc_split_sinkhorn). */
static void hc_split_sinkhorn(const dsv4_config *c, const float *mx, const float *scale, const float *base,
                              float *pre, float *post, float *comb) {
    int hc = c->hc_mult;
    float eps = c->hc_eps;
    for (int i = 0; i < hc; i++) {
        pre[i] = sigmoidf(mx[i] * scale[0] + base[i]) + eps;
        post[i] = 2.0f * sigmoidf(mx[hc + i] * scale[1] + base[hc + i]);
    }
    for (int j = 0; j < hc; j++) {
        float *row = comb + j * hc, mxv = -INFINITY, sum = 0.0f;
        for (int k = 0; k < hc; k++) {
            row[k] = mx[2 * hc + j * hc + k] * scale[2] + base[2 * hc + j * hc + k];
            mxv = fmaxf(mxv, row[k]);
        }
        for (int k = 0; k < hc; k++) { row[k] = expf(row[k] - mxv); sum += row[k]; }
        for (int k = 0; k < hc; k++) row[k] = row[k] / sum + eps;
    }
    for (int it = 0; it < c->hc_sinkhorn_iters; it++) {
        if (it > 0)
            for (int j = 0; j < hc; j++) {
                float s = 0.0f;
                for (int k = 0; k < hc; k++) s += comb[j * hc + k];
                for (int k = 0; k < hc; k++) comb[j * hc + k] /= s + eps;
            }
        for (int k = 0; k < hc; k++) {
            float s = 0.0f;
            for (int j = 0; j < hc; j++) s += comb[j * hc + k];
            for (int j = 0; j < hc; j++) comb[j * hc + k] /= s + eps;
        }
    }
}

/* hc_pre for all rows: x[t] = sum_i pre_i H[t][i] (BF16 in exact mode). */
typedef struct {
    const dsv4_config *c;
    const float *mixes, *scale, *base, *H;
    float *x, *post, *comb;
    int ex;
} hc_pre_job;

static void hc_pre_rows(void *ctx, int lo, int hi) {
    hc_pre_job *j = ctx;
    const dsv4_config *c = j->c;
    int hc = c->hc_mult, D = c->dim, mix = (2 + hc) * hc;
    for (int t = lo; t < hi; t++) {
        float pre[16];
        hc_split_sinkhorn(c, j->mixes + (size_t)t * mix, j->scale, j->base, pre, j->post + (size_t)t * hc,
                          j->comb + (size_t)t * hc * hc);
        const float *h = j->H + (size_t)t * hc * D;
        float *xt = j->x + (size_t)t * D;
        for (int d = 0; d < D; d++) {
            float s = 0.0f;
            for (int i = 0; i < hc; i++) s += pre[i] * h[(size_t)i * D + d];
            xt[d] = rnd(j->ex, s);
        }
    }
}

static void hc_pre(dsv4_model *m, const float *fn, const float *scale, const float *base, const float *H, int T,
                   float *x, float *post, float *comb) {
    const dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, D = c->dim, mix = (2 + hc) * hc;
    float *mixes = xmalloc((size_t)T * mix * sizeof(float));
    hc_mixes(m, fn, mix, H, T, mixes);
    hc_pre_job j = {c, mixes, scale, base, H, x, post, comb, exact_mode(m)};
    par_for(m, T, (size_t)T * hc * D, hc_pre_rows, &j);
    free(mixes);
}

/* hc_post: H'[k] = post_k f + sum_j comb[j][k] H[j]. */
typedef struct {
    const dsv4_config *c;
    const float *f, *post, *comb;
    float *H;
    int ex;
} hc_post_job;

/* In place (vec_hc_post reads a block's old rows before it writes any),
 * then EXACT mode's rounding of the new rows, which nothing reads before
 * it: the bits of rounding each element as it is computed.  config.c caps
 * hc_mult at 16, vec_hc_post's limit. */
static void hc_post_rows(void *ctx, int lo, int hi) {
    hc_post_job *j = ctx;
    int hc = j->c->hc_mult, D = j->c->dim;
    for (int t = lo; t < hi; t++) {
        float *h = j->H + (size_t)t * hc * D;
        const float *pt = j->post + (size_t)t * hc, *ct = j->comb + (size_t)t * hc * hc, *ft = j->f + (size_t)t * D;
        vec_hc_post(h, ft, pt, ct, hc, D);
        rnd_vec(j->ex, h, (size_t)hc * D);
    }
}

static void hc_post(dsv4_model *m, const float *f, float *H, int T, const float *post, const float *comb) {
    const dsv4_config *c = &m->cfg;
    hc_post_job j = {c, f, post, comb, H, exact_mode(m)};
    par_for(m, T, (size_t)T * c->hc_mult * c->hc_mult * c->dim, hc_post_rows, &j);
}

/* ---- MoE (spec 5) ---------------------------------------------------------------- */

static float softplusf(float x) { return x > 20.0f ? x : log1pf(expf(x)); }

/* h = bf16(silu(clamp(g)) * clamp(u) * weight) over n rows of I, into g. */
typedef struct {
    float *g;
    const float *u, *weights;
    int I, ex, fast;
    float lim;
} swiglu_job;

static void swiglu_range(void *ctx, int lo, int hi) {
    swiglu_job *j = ctx;
    int I = j->I;
    float lim = j->lim;
    for (int t = lo; t < hi; t++) {
        float *g = j->g + (size_t)t * I;
        /* FAST mode: vectorised with its own exp (num/vecops.c); the
         * routing weight 1.0f for the shared expert multiplies exactly */
        vec_swiglu(g, j->u + (size_t)t * I, I, lim, j->weights ? j->weights[t] : 1.0f, j->fast);
        rnd_vec(j->ex, g, (size_t)I);
    }
}

static void swiglu_rows(dsv4_model *m, float *g, const float *u, int n, const float *weights) {
    const dsv4_config *c = &m->cfg;
    swiglu_job j = {g, u, weights, c->moe_inter_dim, exact_mode(m), m->mode == DSV4_MODE_FAST, c->swiglu_limit};
    par_for(m, n, (size_t)n * c->moe_inter_dim * 8, swiglu_range, &j);
}

/* y[who[i]] += og[i] for the gathered rows in order (ascending expert, as
 * the reference sums them), a range of columns per thread. */
typedef struct { float *y; const float *og; const int *who; int n, D; } moe_sum_job;

static void moe_sum_cols(void *ctx, int lo, int hi) {
    moe_sum_job *j = ctx;
    for (int i = 0; i < j->n; i++)
        for (int d = lo; d < hi; d++) j->y[(size_t)j->who[i] * j->D + d] += j->og[(size_t)i * j->D + d];
}

static void moe_forward(dsv4_model *m, int li, const row_info *rows, int T, const float *x, float *y) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int E = c->n_routed_experts, K = c->n_activated_experts, D = c->dim, I = c->moe_inter_dim, ex = exact_mode(m);
    float *logit = xmalloc((size_t)T * E * sizeof(float));
    int *idx = xmalloc((size_t)T * K * sizeof(int));
    float *wts = xmalloc((size_t)T * K * sizeof(float));
    linear(&l->gate, x, T, logit, m->mode == DSV4_MODE_EXACT ? DSV4_MODE_EXACT : DSV4_MODE_FP32, 0, m->pool);
    float *sel = xmalloc((size_t)E * sizeof(float));
    for (int t = 0; t < T; t++) {
        float *a = logit + (size_t)t * E;
        for (int e = 0; e < E; e++) a[e] = sqrtf(softplusf(a[e]));
        int *it = idx + (size_t)t * K;
        if (l->is_hash) {
            for (int k = 0; k < K; k++) it[k] = l->tid2eid[(size_t)rows[t].id * K + k];
        } else {
            for (int e = 0; e < E; e++) sel[e] = a[e] + (l->gate_bias ? l->gate_bias[e] : 0.0f);
            topk_desc(sel, E, K, it);
        }
        float sum = 0.0f;
        for (int k = 0; k < K; k++) sum += a[it[k]];
        for (int k = 0; k < K; k++) wts[(size_t)t * K + k] = a[it[k]] / sum * c->route_scale;
    }
    free(sel);
    /* routed experts: each expert's rows gathered (in token order), all the
     * experts' products of a stage in one job (linear_multi), with the
     * shared expert's products of that stage in the same job, then summed
     * in ascending expert order as the reference sums them, the shared
     * expert's output last.  The shared expert's rows follow the gathered
     * ones in g, u and og (rows n .. n+T). */
    memset(y, 0, (size_t)T * D * sizeof(float));
    int P = T * K;   /* (token, expert) pairs */
    int S = l->has_shared ? T : 0;
    float *xg = xmalloc((size_t)P * D * sizeof(float)), *og = xmalloc((size_t)(P + S) * D * sizeof(float));
    float *g = xmalloc((size_t)(P + S) * I * sizeof(float)), *u = xmalloc((size_t)(P + S) * I * sizeof(float));
    float *wg = xmalloc((size_t)(P + S) * sizeof(float));
    int *who = xmalloc((size_t)P * sizeof(int)), *start = xmalloc((size_t)(E + 1) * sizeof(int));
    linear_item *items = xmalloc((size_t)(2 * E + 2) * sizeof(linear_item));
    int n = 0;
    for (int e = 0; e < E; e++) {
        start[e] = n;
        for (int t = 0; t < T; t++)
            for (int k = 0; k < K; k++)
                if (idx[(size_t)t * K + k] == e) {
                    memcpy(xg + (size_t)n * D, x + (size_t)t * D, (size_t)D * sizeof(float));
                    wg[n] = wts[(size_t)t * K + k];
                    who[n++] = t;
                }
    }
    start[E] = n;
    int ni = 0;
    for (int e = 0; e < E; e++) {
        int r0 = start[e], cnt = start[e + 1] - r0;
        if (!cnt) continue;
        items[ni++] = (linear_item){&l->w1[e], xg + (size_t)r0 * D, cnt, g + (size_t)r0 * I, 0};
        items[ni++] = (linear_item){&l->w3[e], xg + (size_t)r0 * D, cnt, u + (size_t)r0 * I, 0};
    }
    if (S) {
        items[ni++] = (linear_item){&l->sw1, x, T, g + (size_t)n * I, 0};
        items[ni++] = (linear_item){&l->sw3, x, T, u + (size_t)n * I, 0};
        /* the shared expert has no routing weight: times 1.0f, exactly */
        for (int t = 0; t < T; t++) wg[n + t] = 1.0f;
    }
    linear_multi(items, ni, m->mode, m->pool);
    swiglu_rows(m, g, u, n + S, wg);   /* every gathered row and the shared rows at once */
    ni = 0;
    for (int e = 0; e < E; e++) {
        int r0 = start[e], cnt = start[e + 1] - r0;
        if (!cnt) continue;
        items[ni++] = (linear_item){&l->w2[e], g + (size_t)r0 * I, cnt, og + (size_t)r0 * D, 0};
    }
    if (S) items[ni++] = (linear_item){&l->sw2, g + (size_t)n * I, T, og + (size_t)n * D, 0};
    linear_multi(items, ni, m->mode, m->pool);
    moe_sum_job sj = {y, og, who, n, D};
    par_for(m, D, (size_t)n * D, moe_sum_cols, &sj);
    if (S) {
        const float *os = og + (size_t)n * D;
        for (size_t i = 0; i < (size_t)T * D; i++) y[i] += os[i];
    }
    rnd_vec(ex, y, (size_t)T * D);
    free(xg); free(og); free(g); free(u); free(wg); free(who); free(start); free(items);
    free(logit); free(idx); free(wts);
}

/* ---- block and head ------------------------------------------------------------- */

#define TRACE(what, x, cols) do { if (tr) { char nm_[64]; snprintf(nm_, sizeof nm_, "layer%d." what, li); \
    trace_rows(tr, nm_, x, T, cols); } } while (0)

static void block_forward(dsv4_model *m, int li, row_info *rows, int T, float *H) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int hc = c->hc_mult, D = c->dim, ex = exact_mode(m);
    trace *tr = rows[0].seq->trace;
    float *x = xmalloc((size_t)T * D * sizeof(float)), *f = xmalloc((size_t)T * D * sizeof(float));
    float *post = xmalloc((size_t)T * hc * sizeof(float)), *comb = xmalloc((size_t)T * hc * hc * sizeof(float));

    hc_pre(m, l->hc_attn_fn, l->hc_attn_scale, l->hc_attn_base, H, T, x, post, comb);
    for (int t = 0; t < T; t++) rmsnorm(x + (size_t)t * D, l->attn_norm, D, c->norm_eps, x + (size_t)t * D, ex);
    TRACE("hc_attn_post", post, hc);
    TRACE("hc_attn_comb", comb, hc * hc);
    TRACE("attn_in", x, D);
    attention_forward(m, li, rows, T, x, f);
    TRACE("attn_out", f, D);
    hc_post(m, f, H, T, post, comb);
    TRACE("h_mid", H, hc * D);

    hc_pre(m, l->hc_ffn_fn, l->hc_ffn_scale, l->hc_ffn_base, H, T, x, post, comb);
    for (int t = 0; t < T; t++) rmsnorm(x + (size_t)t * D, l->ffn_norm, D, c->norm_eps, x + (size_t)t * D, ex);
    TRACE("hc_ffn_post", post, hc);
    TRACE("hc_ffn_comb", comb, hc * hc);
    TRACE("ffn_in", x, D);
    moe_forward(m, li, rows, T, x, f);
    TRACE("ffn_out", f, D);
    hc_post(m, f, H, T, post, comb);
    TRACE("h_out", H, hc * D);
    free(x); free(f); free(post); free(comb);
}

/* logits[n][V] for the given stream rows: head . RMSNorm(hc_head(H)). */
static void head_forward(dsv4_model *m, const float *H, int n, const float *fn, const float *scale, const float *base,
                         const float *norm, float *logits, trace *trace_on) {
    const dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, D = c->dim, ex = exact_mode(m);
    float *mixes = xmalloc((size_t)n * hc * sizeof(float)), *y = xmalloc((size_t)n * D * sizeof(float));
    hc_mixes(m, fn, hc, H, n, mixes);
    for (int t = 0; t < n; t++) {
        float pre[16];
        for (int i = 0; i < hc; i++) pre[i] = sigmoidf(mixes[(size_t)t * hc + i] * scale[0] + base[i]) + c->hc_eps;
        for (int d = 0; d < D; d++) {
            float s = 0.0f;
            for (int i = 0; i < hc; i++) s += pre[i] * H[((size_t)t * hc + i) * D + d];
            y[(size_t)t * D + d] = rnd(ex, s);
        }
        if (trace_on) trace_rows(trace_on, "final_hc_head", y + (size_t)t * D, 1, D);
        rmsnorm(y + (size_t)t * D, norm, D, c->norm_eps, y + (size_t)t * D, ex);
    }
    linear(&m->head, y, n, logits, m->mode, 0, m->pool);
    free(mixes); free(y);
}

static void embed_rows(dsv4_model *m, const row_info *rows, int T, float *H) {
    const dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, D = c->dim;
    for (int t = 0; t < T; t++) {
        float *h = H + (size_t)t * hc * D;
        weight_row_f32(&m->embed, rows[t].id, h);
        for (int i = 1; i < hc; i++) memcpy(h + (size_t)i * D, h, (size_t)D * sizeof(float));
    }
}

/* Run rows through the main model; logits for rows flagged in want (or all
 * if want == NULL) go to logits in row order. */
static void forward_rows(dsv4_model *m, row_info *rows, int T, const unsigned char *want, float *logits) {
    const dsv4_config *c = &m->cfg;
    int hc = c->hc_mult, D = c->dim;
    float *H = xmalloc((size_t)T * hc * D * sizeof(float));
    double t0 = now_sec();
    embed_rows(m, rows, T, H);
    m->prof_s[c->n_layers + 1] += now_sec() - t0;
    if (rows[0].seq->trace) {
        float *e = xmalloc((size_t)T * D * sizeof(float));
        for (int t = 0; t < T; t++) memcpy(e + (size_t)t * D, H + (size_t)t * hc * D, (size_t)D * sizeof(float));
        trace_rows(rows[0].seq->trace, "embed", e, T, D);
        free(e);
    }
    for (int li = 0; li < c->n_layers; li++) {
        t0 = now_sec();
        block_forward(m, li, rows, T, H);
        m->prof_s[li] += now_sec() - t0;
    }
    t0 = now_sec();
    for (int t = 0; t < T; t++)
        if (rows[t].seq->keep_streams)
            memcpy(rows[t].seq->streams + (size_t)rows[t].pos * hc * D, H + (size_t)t * hc * D, (size_t)hc * D * sizeof(float));
    if (logits) {
        int n = 0;
        float *sel = xmalloc((size_t)T * hc * D * sizeof(float));
        for (int t = 0; t < T; t++)
            if (!want || want[t]) memcpy(sel + (size_t)n++ * hc * D, H + (size_t)t * hc * D, (size_t)hc * D * sizeof(float));
        if (n) head_forward(m, sel, n, m->hc_head_fn, m->hc_head_scale, m->hc_head_base, m->norm, logits, rows[0].seq->trace);
        free(sel);
    }
    m->prof_s[c->n_layers] += now_sec() - t0;
    m->prof_calls++;
    free(H);
}

static int check_ids(const dsv4_model *m, const int32_t *ids, int n, char *err, size_t errlen) {
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= m->cfg.vocab_size)
            return errf(err, errlen, "token id %d out of range (vocab %d)", ids[i], m->cfg.vocab_size);
    return 0;
}

int dsv4_forward(dsv4_seq *s, const int32_t *ids, int n, float *logits, int all_logits, char *err, size_t errlen) {
    dsv4_model *m = s->m;
    if (n <= 0) return errf(err, errlen, "no tokens to process");
    if (check_ids(m, ids, n, err, errlen)) return -1;
    if (s->pos + n > s->cap) return errf(err, errlen, "context full: %d + %d tokens exceed the sequence capacity %d", s->pos, n, s->cap);
    row_info *rows = xmalloc((size_t)n * sizeof(row_info));
    for (int t = 0; t < n; t++) rows[t] = (row_info){s, s->pos + t, 0, ids[t]};
    unsigned char *want = NULL;
    if (logits && !all_logits) {
        want = xcalloc((size_t)n, 1);
        want[n - 1] = 1;
    }
    forward_rows(m, rows, n, want, logits);
    s->pos += n;
    free(want);
    free(rows);
    return 0;
}

int dsv4_forward_batch(dsv4_seq **seqs, const int32_t *ids, int nseq, float *logits, char *err, size_t errlen) {
    if (nseq <= 0) return errf(err, errlen, "empty batch");
    dsv4_model *m = seqs[0]->m;
    if (check_ids(m, ids, nseq, err, errlen)) return -1;
    for (int i = 0; i < nseq; i++) {
        if (seqs[i]->m != m) return errf(err, errlen, "batch mixes models");
        if (seqs[i]->pos + 1 > seqs[i]->cap) return errf(err, errlen, "context full in batch entry %d", i);
        for (int j = 0; j < i; j++)
            if (seqs[j] == seqs[i]) return errf(err, errlen, "a sequence appears twice in one batch");
    }
    row_info *rows = xmalloc((size_t)nseq * sizeof(row_info));
    for (int i = 0; i < nseq; i++) rows[i] = (row_info){seqs[i], seqs[i]->pos, i, ids[i]};
    forward_rows(m, rows, nseq, NULL, logits);
    for (int i = 0; i < nseq; i++) seqs[i]->pos++;
    free(rows);
    return 0;
}

/* ---- MTP (spec 7) ------------------------------------------------------------------ */

int dsv4_mtp_logits(dsv4_seq *s, const int32_t *next_ids, int n, float *out, char *err, size_t errlen) {
    dsv4_model *m = s->m;
    const dsv4_config *c = &m->cfg;
    if (!c->n_mtp_layers) return errf(err, errlen, "this model has no MTP layer");
    if (!s->keep_streams) return errf(err, errlen, "MTP needs the sequence's streams (seq_keep_streams)");
    if (check_ids(m, next_ids, n, err, errlen)) return -1;
    int p0 = s->mtp_pos;
    if (n <= 0 || p0 + n > s->pos) return errf(err, errlen, "MTP positions %d..%d not yet processed by the main model", p0, p0 + n - 1);
    int hc = c->hc_mult, D = c->dim, li = c->n_layers, ex = exact_mode(m);
    const layer_w *l = &m->layers[li];
    row_info *rows = xmalloc((size_t)n * sizeof(row_info));
    for (int t = 0; t < n; t++) rows[t] = (row_info){s, p0 + t, 0, next_ids[t]};
    float *e = xmalloc((size_t)n * D * sizeof(float)), *ep = xmalloc((size_t)n * D * sizeof(float));
    float *hs = xmalloc((size_t)n * hc * D * sizeof(float)), *H = xmalloc((size_t)n * hc * D * sizeof(float));
    for (int t = 0; t < n; t++) {
        weight_row_f32(&m->embed, next_ids[t], e + (size_t)t * D);
        rmsnorm(e + (size_t)t * D, l->enorm, D, c->norm_eps, e + (size_t)t * D, ex);
        for (int i = 0; i < hc; i++)
            rmsnorm(s->streams + ((size_t)(p0 + t) * hc + i) * D, l->hnorm, D, c->norm_eps, hs + ((size_t)t * hc + i) * D, ex);
    }
    linear(&l->e_proj, e, n, ep, m->mode, 0, m->pool);
    linear(&l->h_proj, hs, n * hc, H, m->mode, 0, m->pool);
    for (int t = 0; t < n; t++)
        for (int i = 0; i < hc; i++)
            for (int d = 0; d < D; d++) {
                float *h = &H[((size_t)t * hc + i) * D + d];
                *h = rnd(ex, *h + ep[(size_t)t * D + d]);
            }
    block_forward(m, li, rows, n, H);
    head_forward(m, H, n, l->hc_head_fn, l->hc_head_scale, l->hc_head_base, l->norm, out, NULL);
    s->mtp_pos += n;
    free(rows); free(e); free(ep); free(hs); free(H);
    return 0;
}
