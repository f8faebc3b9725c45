/*
 * attention.c - V4 hybrid attention (spec section 4): the query and KV
 * paths, the gated-pooling compressors (CSA ratio 4 with overlap, HCA any
 * other ratio), the lightning indexer with true top-k selection, sparse
 * attention with a per-head sink over (window + selected compressed
 * entries), inverse RoPE and the grouped low-rank output projection.
 *
 * Cost per token is bounded by window + top-k (CSA) or the compressed block
 * count (HCA), never by the raw context length, except for the indexer's
 * scoring pass over the compressed keys (context/4 dot products).
 */
#include "model/ops.h"
#include "num/cpu.h"
#include "num/kernels.h"
#include "num/vecops.h"
#include "util/util.h"
#include <float.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* ---- small ops ---------------------------------------------------------- */

void rmsnorm(const float *x, const float *w, int n, float eps, float *y, int exact) {
    float r = 1.0f / sqrtf(mean_square(x, n) + eps);
    for (int i = 0; i < n; i++) y[i] = rnd(exact, w[i] * (x[i] * r));
}

void rope_table(const float *freq, int rd, int pos, float *cs) {
    for (int i = 0; i < rd / 2; i++) {
        float ang = (float)pos * freq[i];     /* FP32 angle, as torch.outer */
        cs[2 * i] = cosf(ang);
        cs[2 * i + 1] = sinf(ang);
    }
}

void rope_apply(float *x, int rd, const float *cs, int inverse, int exact) {
    for (int i = 0; i < rd / 2; i++) {
        float c = cs[2 * i], s = inverse ? -cs[2 * i + 1] : cs[2 * i + 1];
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = rnd(exact, a * c - b * s);
        x[2 * i + 1] = rnd(exact, a * s + b * c);
    }
}

void rope(float *x, int rd, const float *freq, int pos, int inverse, int exact) {
    for (int i = 0; i < rd / 2; i++) {
        float ang = (float)pos * freq[i];
        float c = cosf(ang), s = sinf(ang);
        if (inverse) s = -s;
        float a = x[2 * i], b = x[2 * i + 1];
        x[2 * i] = rnd(exact, a * c - b * s);
        x[2 * i + 1] = rnd(exact, a * s + b * c);
    }
}

/* Computed in double (exact for BF16 inputs up to n = 2^16) and rounded
 * once, like the reference's exact transform. */
void hadamard(float *x, int n, int exact) {
    double buf[1024], *v = n <= 1024 ? buf : xmalloc((size_t)n * sizeof(double));
    for (int i = 0; i < n; i++) v[i] = x[i];
    for (int h = 1; h < n; h *= 2)
        for (int i = 0; i < n; i += 2 * h)
            for (int j = i; j < i + h; j++) {
                double a = v[j], b = v[j + h];
                v[j] = a + b;
                v[j + h] = a - b;
            }
    double s = 1.0 / sqrt((double)n);
    for (int i = 0; i < n; i++) x[i] = exact ? bf16_to_f32(f32_to_bf16_from_double(v[i] * s)) : (float)(v[i] * s);
    if (v != buf) free(v);
}

/* Order of the top-k: higher score first, equal scores by lower index. */
static int topk_before(const float *s, int a, int b) { return s[a] > s[b] || (s[a] == s[b] && a < b); }

/* Quickselect: rearrange idx[lo..hi] so that the k elements that come
 * first in topk order occupy idx[lo..lo+k). */
static void topk_select(const float *s, int *idx, int lo, int hi, int k) {
    while (hi > lo) {
        int mid = lo + (hi - lo) / 2, p = idx[mid];
        /* median of three as the pivot */
        if (topk_before(s, idx[lo], p) != topk_before(s, idx[lo], idx[hi])) p = idx[lo];
        else if (topk_before(s, idx[hi], p) != topk_before(s, idx[hi], idx[lo])) p = idx[hi];
        int i = lo, j = hi;
        while (i <= j) {
            while (topk_before(s, idx[i], p)) i++;
            while (topk_before(s, p, idx[j])) j--;
            if (i <= j) { int t = idx[i]; idx[i] = idx[j]; idx[j] = t; i++; j--; }
        }
        if (lo + k - 1 <= j) hi = j;
        else if (lo + k - 1 >= i) { k -= i - lo; lo = i; }
        else return;
    }
}

/* Merge sort of idx[0..n) in topk order (qsort has no context argument,
 * and a global would not be thread-safe). */
static void topk_sort(const float *s, int *idx, int *tmp, int n) {
    if (n < 2) return;
    int h = n / 2;
    topk_sort(s, idx, tmp, h);
    topk_sort(s, idx + h, tmp, n - h);
    int i = 0, j = h, o = 0;
    while (i < h && j < n) tmp[o++] = topk_before(s, idx[j], idx[i]) ? idx[j++] : idx[i++];
    while (i < h) tmp[o++] = idx[i++];
    while (j < n) tmp[o++] = idx[j++];
    memcpy(idx, tmp, (size_t)n * sizeof(int));
}

void topk_desc(const float *score, int n, int k, int *out) {
    /* Long lists without NaN (the indexer at long context: 16k blocks at
     * 64k tokens, k = 512): quickselect then sort the k, O(n + k log k)
     * against the insertion's O(n + k^2 log(n/k)); the same order. */
    if (n > 4096 && k > 16) {
        int nan = 0;
        for (int i = 0; i < n && !nan; i++) nan = score[i] != score[i];
        if (!nan) {
            int *idx = xmalloc((size_t)2 * n * sizeof(int));
            for (int i = 0; i < n; i++) idx[i] = i;
            if (k < n) topk_select(score, idx, 0, n - 1, k);
            topk_sort(score, idx, idx + n, k < n ? k : n);
            memcpy(out, idx, (size_t)(k < n ? k : n) * sizeof(int));
            free(idx);
            return;
        }
    }
    /* selection by repeated insertion into a sorted k-list: k is small
     * (experts) or the list is short */
    int cnt = 0;
    for (int i = 0; i < n; i++) {
        float v = score[i];
        if (cnt == k && !(v > score[out[k - 1]])) continue;
        int j = cnt < k ? cnt++ : k - 1;
        while (j > 0 && v > score[out[j - 1]]) { out[j] = out[j - 1]; j--; }
        out[j] = i;
    }
}

/* ---- per-sequence state -------------------------------------------------- */

void layer_state_reset(const dsv4_model *m, int li, layer_state *ls) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int hd = c->head_dim, win = c->window_size;
    memset(ls->ring, 0, (size_t)win * hd * sizeof(float));
    if (l->ratio) {
        int n = l->comp.coff * l->ratio * l->comp.coff * hd;
        for (int i = 0; i < n; i++) { ls->kv_state[i] = 0.0f; ls->sc_state[i] = -INFINITY; }
    }
    if (l->has_indexer) {
        int n = 8 * 2 * c->index_head_dim;
        for (int i = 0; i < n; i++) { ls->ikv_state[i] = 0.0f; ls->isc_state[i] = -INFINITY; }
        ls->ikv_pan_n = 0;
    }
}

/* ---- compressor (spec 4.4) ----------------------------------------------- */

/* Pool one completed block j from the state into out[d] (FP32): per
 * channel, a softmax over the block's candidate scores weights their KV
 * values.  tmp: room for 3 * (2 * ratio) floats. */
static void compressor_pool(const compressor_w *cw, const float *kvs, const float *scs, float *out, float *tmp) {
    int r = cw->ratio, d = cw->d, w2 = cw->coff * d, nc = cw->overlap ? 2 * r : r;
    float *sc = tmp, *kv = tmp + nc, *e = tmp + 2 * nc;
    for (int c = 0; c < d; c++) {
        for (int i = 0; i < nc; i++) {
            /* overlap: rows 0..r-1 carry the previous block's A half
             * (channel c), rows r..2r-1 the current block's B half (d+c) */
            int ch = cw->overlap && i >= r ? d + c : c;
            sc[i] = scs[(size_t)i * w2 + ch];
            kv[i] = kvs[(size_t)i * w2 + ch];
        }
        float mx = -INFINITY;
        for (int i = 0; i < nc; i++) mx = fmaxf(mx, sc[i]);
        float sum = 0.0f;
        for (int i = 0; i < nc; i++) { e[i] = expf(sc[i] - mx); sum += e[i]; }
        float acc = 0.0f;
        for (int i = 0; i < nc; i++) acc += kv[i] * (e[i] / sum);
        out[c] = acc;
    }
}

/* Finish a pooled entry: BF16, RMSNorm, RoPE at the block's first position,
 * then the QAT round trip (FP8 for the main KV, Hadamard + FP4 for the
 * indexer keys). */
static void compressor_finish(const dsv4_model *m, const compressor_w *cw, float *v, int block_pos) {
    int ex = exact_mode(m), d = cw->d, rd = m->cfg.rope_head_dim;
    rnd_vec(ex, v, (size_t)d);
    rmsnorm(v, cw->norm, d, m->cfg.norm_eps, v, ex);
    rope(v + d - rd, rd, m->rope_freq_comp, block_pos, 0, ex);
    if (cw->rotate) {
        hadamard(v, d, ex);
        if (ex) fp4_roundtrip(v, d, 32);
    } else if (ex) {
        fp8_roundtrip(v, d - rd, 64);
    }
}

/* Run the compressor over rows [0,T), given its projections of the rows
 * (kvp = wkv x, scp = wgate x: x_projections): the per-token state machine
 * (identical to the reference's decode step, and mathematically to its
 * prefill).  Completed blocks go to the cache of the row's sequence: cache
 * rows of width d, state in ls_kv/ls_sc selected by `indexer`. */
static void compressor_run(dsv4_model *m, int li, const compressor_w *cw, int indexer, row_info *rows, int T,
                           const float *kvp, const float *scp) {
    int r = cw->ratio, d = cw->d, w2 = cw->coff * d;
    float *tmp = xmalloc((size_t)d * sizeof(float)), *ptmp = xmalloc((size_t)6 * r * sizeof(float));
    for (int t = 0; t < T; t++) {
        layer_state *ls = &rows[t].seq->ls[li];
        float *kvs = indexer ? ls->ikv_state : ls->kv_state;
        float *scs = indexer ? ls->isc_state : ls->sc_state;
        float *cache = indexer ? ls->ikv : ls->ckv;
        int p = rows[t].pos, s = p % r, slot = cw->overlap ? r + s : s;
        for (int c = 0; c < w2; c++) {
            kvs[(size_t)slot * w2 + c] = kvp[(size_t)t * w2 + c];
            scs[(size_t)slot * w2 + c] = scp[(size_t)t * w2 + c] + cw->ape[(size_t)s * w2 + c];
        }
        if ((p + 1) % r) continue;
        int j = p / r;
        compressor_pool(cw, kvs, scs, tmp, ptmp);
        if (cw->overlap) {
            memcpy(kvs, kvs + (size_t)r * w2, (size_t)r * w2 * sizeof(float));
            memcpy(scs, scs + (size_t)r * w2, (size_t)r * w2 * sizeof(float));
        }
        compressor_finish(m, cw, tmp, j * r);
        memcpy(cache + (size_t)j * d, tmp, (size_t)d * sizeof(float));
        if (indexer && j < ls->ikv_pan_n) ls->ikv_pan_n = j;   /* row j rewritten */
    }
    free(tmp);
    free(ptmp);
}

/* ---- lightning indexer (spec 4.5) ----------------------------------------- */

/* Whether the indexer scores go through kern_set.index_scores (FAST mode,
 * AVX-512 BF16), else through a product over the keys and a ReLU-weighted
 * sum. */
static int indexer_fused(const dsv4_model *m, const kern_set *ks, int ID) {
    return m->mode == DSV4_MODE_FAST && ks->index_scores && ks->deq_bf16 && ID % 64 == 0 &&
           m->cfg.index_n_heads % 8 == 0;
}

/* FAST mode on kernel sets with index_scores: the keys rounded to BF16 by
 * the kernel set's own conversion (as the product path rounds them: it
 * also flushes subnormals) in index_scores' panels, converted once per key
 * (ls->ikv_pan_n).  Returns the panels of keys [0, nb), or NULL where the
 * product path applies. */
static const uint32_t *indexer_key_panels(dsv4_model *m, layer_state *ls, int nb, int ID) {
    const kern_set *ks = kern_for_isa(cpu_isa());
    if (!indexer_fused(m, ks, ID)) return NULL;
    if (ls->ikv_pan_n < nb) {
        int j0 = ls->ikv_pan_n;
        dsv4_weight kw = {.type = W_F32, .rows = nb, .cols = ID, .data = ls->ikv, .name = "indexer keys"};
        uint16_t *rows = xmalloc((size_t)(nb - j0) * ID * sizeof(uint16_t));
        ks->deq_bf16(&kw, j0, nb - j0, 0, ID, rows);   /* all new keys in one call */
        for (int j = j0; j < nb; j++) kern_index_panel_put(ls->ikv_pan, j, rows + (size_t)(j - j0) * ID, ID);
        free(rows);
        ls->ikv_pan_n = nb;
    }
    return ls->ikv_pan;
}

/* The fused score kernel's job: (row, 256 keys) units of a chunk of rows,
 * taken from a counter. */
#define ISCORE_KEYS 256
typedef struct {
    const kern_set *ks;
    const uint32_t **pan;    /* per row: its sequence's key panels */
    const uint16_t *qb;      /* [n][IH][ID] BF16 queries */
    const float *w;          /* [n][IH] head weights */
    const int *nb;           /* per row: keys */
    const size_t *off;       /* per row: where its scores start */
    const int *ufirst;       /* per row: first unit */
    float *scores;
    int n, IH, ID, nunits;
    POOL_COUNTER(next);
} iscore_job;

static void iscore_worker(void *arg, int tid, int nth) {
    (void)tid; (void)nth;
    iscore_job *j = arg;
    for (;;) {
        int u = atomic_fetch_add(&j->next, 1);
        if (u >= j->nunits) break;
        int r = pool_unit_owner(j->ufirst, j->n, u), k0 = (u - j->ufirst[r]) * ISCORE_KEYS;
        int k1 = k0 + ISCORE_KEYS < j->nb[r] ? k0 + ISCORE_KEYS : j->nb[r];
        j->ks->index_scores(j->pan[r] + kern_index_panel_len(k0, j->ID), k1 - k0,
                            j->qb + (size_t)r * j->IH * j->ID, j->w + (size_t)r * j->IH, j->IH, j->ID,
                            j->scores + j->off[r] + k0);
    }
}

/* Row t's top-k blocks by score (nb of them scored) into sel/nsel, and its
 * trace record. */
static void select_row(dsv4_model *m, int li, row_info *rows, int t, float *score, int nb, int *sel, int *nsel,
                       int k_max) {
    const dsv4_config *c = &m->cfg;
    int k = nb < c->index_topk ? nb : c->index_topk;
    if (k > k_max) k = k_max;
    topk_desc(score, nb, k, sel + (size_t)t * k_max);
    nsel[t] = k;
    if (rows[t].seq->trace) {
        /* as the reference hooks record it: topk ids, -1 = none */
        float ids[4096];
        for (int i = 0; i < c->index_topk && i < 4096; i++) ids[i] = i < k ? (float)sel[(size_t)t * k_max + i] : -1.0f;
        char nm[64];
        snprintf(nm, sizeof nm, "layer%d.indexer_selected_blocks", li);
        trace_rows(rows[t].seq->trace, nm, ids, 1, c->index_topk < 4096 ? c->index_topk : 4096);
    }
}

/* The scores of rows [0, T) through kern_set.index_scores, in chunks of
 * rows of at most ~16M scores, one pool job per chunk; then each row's
 * selection.  q: [T][IH][ID] queries, w: [T][IH] head weights. */
static void indexer_scores_fused(dsv4_model *m, int li, row_info *rows, int T, const float *q, const float *w,
                                 int *sel, int *nsel, int k_max) {
    const dsv4_config *c = &m->cfg;
    const kern_set *ks = kern_for_isa(cpu_isa());
    int IH = c->index_n_heads, ID = c->index_head_dim;
    for (int t0 = 0; t0 < T;) {
        int t1 = t0;
        size_t total = 0;
        while (t1 < T && (t1 == t0 || total + (size_t)((rows[t1].pos + 1) / 4) <= ((size_t)16 << 20)))
            total += (size_t)((rows[t1++].pos + 1) / 4);
        int n = t1 - t0;
        const uint32_t **pan = xmalloc((size_t)n * sizeof *pan);
        int *nb = xmalloc((size_t)n * sizeof(int)), *ufirst = xmalloc((size_t)n * sizeof(int));
        size_t *off = xmalloc((size_t)n * sizeof(size_t));
        uint16_t *qb = xmalloc((size_t)n * IH * ID * sizeof(uint16_t));
        float *scores = xmalloc((total ? total : 1) * sizeof(float));
        int nunits = 0;
        size_t at = 0;
        for (int r = 0; r < n; r++) {
            int t = t0 + r;
            nb[r] = (rows[t].pos + 1) / 4;
            /* rows of one sequence come in position order: its panels grow */
            pan[r] = indexer_key_panels(m, &rows[t].seq->ls[li], nb[r], ID);
            off[r] = at;
            at += (size_t)nb[r];
            ufirst[r] = nunits;
            nunits += (nb[r] + ISCORE_KEYS - 1) / ISCORE_KEYS;
        }
        for (size_t i = 0; i < (size_t)n * IH * ID; i++) qb[i] = f32_to_bf16(q[(size_t)t0 * IH * ID + i]);
        iscore_job job = {.ks = ks, .pan = pan, .qb = qb, .w = w + (size_t)t0 * IH, .nb = nb, .off = off,
                          .ufirst = ufirst, .scores = scores, .n = n, .IH = IH, .ID = ID, .nunits = nunits};
        atomic_init(&job.next, 0);
        if (nunits > 1) pool_run(m->pool, iscore_worker, &job);
        else iscore_worker(&job, 0, 1);
        for (int r = 0; r < n; r++) select_row(m, li, rows, t0 + r, scores + off[r], nb[r], sel, nsel, k_max);
        free(pan); free(nb); free(ufirst); free(off); free(qb); free(scores);
        t0 = t1;
    }
}

/* Selected compressed-block ids for every row: sel[t*k_max ...], count in
 * nsel[t] (valid ids first, descending score).  Takes the products of the
 * rows (q = idx_wq_b qr, the indexer compressor's projections, w =
 * weights_proj x; see x_projections) and rewrites q and w in place. */
static void indexer_select(dsv4_model *m, int li, row_info *rows, int T, float *q, const float *ikvp,
                           const float *iscp, float *w, int *sel, int *nsel, int k_max) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int ex = exact_mode(m), IH = c->index_n_heads, ID = c->index_head_dim, rd = c->rope_head_dim;
    float *cs = xmalloc((size_t)rd * sizeof(float));
    for (int t = 0; t < T; t++) {
        rope_table(m->rope_freq_comp, rd, rows[t].pos, cs);
        for (int h = 0; h < IH; h++) {
            float *qh = q + ((size_t)t * IH + h) * ID;
            rope_apply(qh + ID - rd, rd, cs, 0, ex);
            hadamard(qh, ID, ex);
            if (ex) fp4_roundtrip(qh, ID, 32);
        }
    }
    free(cs);
    compressor_run(m, li, &l->idx_comp, 1, rows, T, ikvp, iscp);
    float wscale = 1.0f / sqrtf((float)ID) * (1.0f / sqrtf((float)IH));
    for (size_t i = 0; i < (size_t)T * IH; i++) w[i] = rnd(ex, w[i] * wscale);
    if (indexer_fused(m, kern_for_isa(cpu_isa()), ID)) {
        indexer_scores_fused(m, li, rows, T, q, w, sel, nsel, k_max);
        return;
    }
    /* Scores against the cached keys as matrix products: rows of one
     * sequence share the keys, so a chunk of them is one product
     * dots[row][h][j] = q_h . K_j (keys as the weight matrix, rows = blocks),
     * bounded to ~16M floats of output per product. */
    float *dots = NULL;
    size_t dots_cap = 0;
    int chunk_a = 0, chunk_b = 0, chunk_nb = 0;
    for (int t = 0; t < T; t++) {
        layer_state *ls = &rows[t].seq->ls[li];
        int nb = (rows[t].pos + 1) / 4;
        if (t >= chunk_b) {
            chunk_a = t;
            chunk_b = t + 1;
            int last_nb = nb;
            while (chunk_b < T && rows[chunk_b].seq == rows[t].seq &&
                   (size_t)(chunk_b - chunk_a + 1) * IH * (size_t)((rows[chunk_b].pos + 1) / 4) <= ((size_t)16 << 20)) {
                last_nb = (rows[chunk_b].pos + 1) / 4;
                chunk_b++;
            }
            chunk_nb = last_nb;
            size_t need = (size_t)(chunk_b - chunk_a) * IH * (chunk_nb ? chunk_nb : 1);
            if (need > dots_cap) { free(dots); dots = xmalloc(need * sizeof(float)); dots_cap = need; }
            if (chunk_nb) {
                dsv4_weight kw = {.type = W_F32, .rows = chunk_nb, .cols = ID, .data = ls->ikv, .name = "indexer keys"};
                linear(&kw, q + (size_t)chunk_a * IH * ID, (chunk_b - chunk_a) * IH, dots, m->mode,
                       LIN_OUT_BF16 | LIN_ROUND_F32, m->pool);
            }
        }
        float *score = xmalloc((size_t)(nb ? nb : 1) * sizeof(float));
        for (int j = 0; j < nb; j++) score[j] = 0.0f;
        const float *dt = dots + (size_t)(t - chunk_a) * IH * chunk_nb;
        if (ex) {
            for (int h = 0; h < IH; h++) {
                float wh = w[(size_t)t * IH + h];
                const float *dh = dt + (size_t)h * chunk_nb;
                for (int j = 0; j < nb; j++)
                    if (dh[j] > 0.0f) score[j] += rnd(ex, dh[j] * wh);
            }
        } else {
            vec_relu_weighted_sum(score, dt, chunk_nb, IH, w + (size_t)t * IH, nb);
        }
        for (int j = 0; j < nb; j++) score[j] = rnd(ex, score[j]);
        select_row(m, li, rows, t, score, nb, sel, nsel, k_max);
        free(score);
    }
    free(dots);
}

/* ---- sparse attention with sink (spec 4.6) -------------------------------- */

typedef struct {
    dsv4_model *m;
    int T, H, hd;
    const float *q;          /* [T][H][hd] */
    const float *const *keys;/* [T][nkeys] pointers, NULL = masked (-1) */
    const int *nkeys;        /* per row */
    int kstride;
    const float *sink;
    float *o;                /* [T][H][hd] */
    POOL_COUNTER(next);      /* next row to take */
} attn_job;

/* Online softmax over the index list in 64-wide blocks, as the reference
 * kernel does; in exact mode P is rounded to BF16 before the PV product. */
static void attend_one(const float *q, const float *const *keys, int n, float sink, float scale, int hd,
                       int ex, float *o, float *acc) {
    float mrun = -INFINITY, l = 0.0f;
    memset(acc, 0, (size_t)hd * sizeof(float));
    for (int b = 0; b < n; b += 64) {
        int e = b + 64 < n ? b + 64 : n;
        float s[64], mb = mrun;
        for (int j = b; j < e; j++) {
            if (!keys[j]) { s[j - b] = -INFINITY; continue; }
            s[j - b] = vec_dot(q, keys[j], hd) * scale;
            mb = fmaxf(mb, s[j - b]);
        }
        if (mb == -INFINITY) continue;
        float alpha = expf(mrun - mb);
        l *= alpha;
        if (alpha != 1.0f) vec_scale(acc, alpha, hd);
        for (int j = b; j < e; j++) {
            if (!keys[j]) continue;
            float p = expf(s[j - b] - mb);
            l += p;
            vec_axpy(acc, rnd(ex, p), keys[j], hd);
        }
        mrun = mb;
    }
    l += expf(sink - mrun);
    for (int i = 0; i < hd; i++) o[i] = rnd(ex, acc[i] / l);
}

/* attend_one for four heads of one token (the same index list): per head
 * the same operations in the same order, so the results are bit-identical;
 * each key and value vector is read once for the four heads instead of
 * four times (the keys of a prefill row do not fit in L1). */
/* The four accumulators are padded apart: at exactly 2 KiB strides a store
 * to one and a load from another 4 KiB further alias in the store buffer
 * (measured: the four-head loop ran slower than four single ones). */
#define ACC_PAD 48

static void attend_four(const float *q, const float *const *keys, int n, const float *sink, float scale,
                        int hd, int ex, float *o, float *acc) {
    float mrun[4], l[4] = {0, 0, 0, 0};
    const float *qh[4];
    float *ah[4];
    for (int h = 0; h < 4; h++) {
        mrun[h] = -INFINITY;
        qh[h] = q + (size_t)h * hd;
        ah[h] = acc + (size_t)h * (hd + ACC_PAD);
    }
    memset(acc, 0, (size_t)4 * (hd + ACC_PAD) * sizeof(float));
    for (int b = 0; b < n; b += 64) {
        int e = b + 64 < n ? b + 64 : n;
        /* the block's unmasked keys, packed: scored two at a time against
         * the four queries, then added into the four accumulators in one
         * pass (vec_dot4x2, vec_axpy4_xs: the same bits as key by key) */
        const float *kv[64];
        int at[64], nv = 0;
        float s[4][64], p[4][64], mb[4];
        for (int j = b; j < e; j++) {
            if (keys[j]) { kv[nv] = keys[j]; at[nv++] = j - b; continue; }
            for (int h = 0; h < 4; h++) s[h][j - b] = -INFINITY;
        }
        if (nv == 0) continue;   /* every key of the block masked */
        int v = 0;
        for (; v + 2 <= nv; v += 2) {
            float d[8];
            vec_dot4x2(qh, kv + v, hd, d);
            for (int h = 0; h < 4; h++) {
                s[h][at[v]] = d[h * 2] * scale;
                s[h][at[v + 1]] = d[h * 2 + 1] * scale;
            }
        }
        if (v < nv) {
            float d[4];
            vec_dot4(qh, kv[v], hd, d);
            for (int h = 0; h < 4; h++) s[h][at[v]] = d[h] * scale;
        }
        for (int h = 0; h < 4; h++) {
            mb[h] = mrun[h];
            /* fmaxf's result without its libm call (it is not inlined
             * without -ffinite-math-only): a NaN score is skipped as fmaxf
             * skips it */
            for (int j = 0; j < e - b; j++) mb[h] = s[h][j] > mb[h] ? s[h][j] : mb[h];
        }
        if (mb[0] == -INFINITY) continue;   /* no finite score yet */
        for (int h = 0; h < 4; h++) {
            float alpha = expf(mrun[h] - mb[h]);
            l[h] *= alpha;
            if (alpha != 1.0f) vec_scale(ah[h], alpha, hd);
            for (int i = 0; i < nv; i++) {
                float ph = expf(s[h][at[i]] - mb[h]);
                l[h] += ph;
                p[h][i] = rnd(ex, ph);
            }
            mrun[h] = mb[h];
        }
        vec_axpy4_xs(ah, &p[0][0], 64, kv, nv, hd);
    }
    for (int h = 0; h < 4; h++) {
        l[h] += expf(sink[h] - mrun[h]);
        for (int i = 0; i < hd; i++) o[(size_t)h * hd + i] = rnd(ex, ah[h][i] / l[h]);
    }
}

static void attn_worker(void *arg, int tid, int nth) {
    (void)tid;
    attn_job *j = arg;
    int ex = exact_mode(j->m);
    float scale = 1.0f / sqrtf((float)j->hd);
    /* heads in groups of four where the head count allows */
    int G = j->H % 4 ? 1 : 4, ng = j->H / G, nu = j->T * ng;
    /* (row, head group) units in chunks from a counter: causal rows grow
     * longer towards the end of a prefill, and equal static ranges left
     * the first thread idle half the time (attention CPU time 1:2 between
     * the two threads of a 512-token prefill); a decode row still splits
     * over the threads */
    int chunk = ng / (2 * nth) > 0 ? ng / (2 * nth) : 1;
    float *acc = xmalloc((size_t)G * (j->hd + ACC_PAD) * sizeof(float));
    for (;;) {
        int lo = atomic_fetch_add(&j->next, chunk);
        if (lo >= nu) break;
        int hi = lo + chunk < nu ? lo + chunk : nu;
        for (int i = lo; i < hi; i++) {
            int t = i / ng, h = i % ng * G;
            size_t off = ((size_t)t * j->H + h) * j->hd;
            if (G == 4)
                attend_four(j->q + off, j->keys + (size_t)t * j->kstride, j->nkeys[t], j->sink + h, scale, j->hd, ex,
                            j->o + off, acc);
            else
                attend_one(j->q + off, j->keys + (size_t)t * j->kstride, j->nkeys[t], j->sink[h], scale, j->hd, ex,
                           j->o + off, acc);
        }
    }
    free(acc);
}

/* ---- the attention sub-block ----------------------------------------------- */

/* Build row t's index list in the reference's layout: the window part
 * (oldest to newest, -1-padded: min(T,win) wide for a prefill from
 * position 0, win wide otherwise), then the compressed entries. */
static int build_keys(const dsv4_model *m, int li, row_info *rows, int t, const float *kv,
                      const int *sel, int nsel, int pad_sel, const float **keys) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int win = c->window_size, hd = c->head_dim, p = rows[t].pos;
    int first = rows[t].seg_first, pos0 = rows[first].pos;
    const layer_state *ls = &rows[t].seq->ls[li];
    int n = 0, lo = p - win + 1 < 0 ? 0 : p - win + 1;
    if (pos0 == 0) {
        /* prefill from 0: positions lo..lo+win-1, masked past p (the caller
         * trims the width to the segment length when it is < win) */
        for (int i = 0; i < win; i++) {
            int q = lo + i;
            keys[n++] = q > p ? NULL : kv + (size_t)(first + (q - pos0)) * hd;
        }
    } else {
        /* decode layout: ring order oldest..newest, -1-padded to win */
        for (int q = lo; q <= p; q++)
            keys[n++] = q >= pos0 ? kv + (size_t)(first + (q - pos0)) * hd : ls->ring + (size_t)(q % win) * hd;
        while (n < win) keys[n++] = NULL;
    }
    if (l->ratio) {
        if (l->has_indexer) {
            for (int i = 0; i < nsel; i++) keys[n++] = ls->ckv + (size_t)sel[i] * hd;
            for (int i = nsel; i < pad_sel; i++) keys[n++] = NULL;
        } else {
            int nb = (p + 1) / l->ratio;
            for (int j = 0; j < nb; j++) keys[n++] = ls->ckv + (size_t)j * hd;
            for (int j = nb; j < pad_sel; j++) keys[n++] = NULL;
        }
    }
    return n;
}

/* The products of the layer input x (4.2-4.5): q's low-rank projection, the
 * raw KV, the compressor's and the indexer's projections.  They all read x,
 * so they run as one job (linear_multi): in decode one wake-up and one
 * tail for up to seven products of 0.3-4 MB, which one at a time streamed
 * at 20-28 GB/s where the large products reach 31-33 (DSV4_PROFILE, Flash
 * slice, 2 threads).  Each product's arithmetic is what linear() does. */
typedef struct {
    float *qr, *kv;          /* wq_a x, wkv x */
    float *ckv, *csc;        /* compressor wkv x, wgate x (layers with ratio) */
    float *ikv, *isc, *iw;   /* indexer compressor wkv x, wgate x, weights_proj x */
} x_proj;

static void x_projections(dsv4_model *m, const layer_w *l, int T, const float *x, x_proj *p) {
    const dsv4_config *c = &m->cfg;
    linear_item it[7];
    int n = 0;
    *p = (x_proj){0};
    p->qr = xmalloc((size_t)T * c->q_lora_rank * sizeof(float));
    p->kv = xmalloc((size_t)T * c->head_dim * sizeof(float));
    it[n++] = (linear_item){&l->wq_a, x, T, p->qr, 0};
    it[n++] = (linear_item){&l->wkv, x, T, p->kv, 0};
    /* FP32 products in the reference (x.float(), FP32 copies of the BF16
     * weights): no output rounding in any mode */
    if (l->ratio) {
        size_t w2 = (size_t)l->comp.coff * l->comp.d;
        p->ckv = xmalloc((size_t)T * w2 * sizeof(float));
        p->csc = xmalloc((size_t)T * w2 * sizeof(float));
        it[n++] = (linear_item){&l->comp.wkv, x, T, p->ckv, 0};
        it[n++] = (linear_item){&l->comp.wgate, x, T, p->csc, 0};
    }
    if (l->has_indexer) {
        size_t w2 = (size_t)l->idx_comp.coff * l->idx_comp.d;
        p->ikv = xmalloc((size_t)T * w2 * sizeof(float));
        p->isc = xmalloc((size_t)T * w2 * sizeof(float));
        p->iw = xmalloc((size_t)T * c->index_n_heads * sizeof(float));
        it[n++] = (linear_item){&l->idx_comp.wkv, x, T, p->ikv, 0};
        it[n++] = (linear_item){&l->idx_comp.wgate, x, T, p->isc, 0};
        it[n++] = (linear_item){&l->idx_weights_proj, x, T, p->iw, LIN_OUT_BF16};
    }
    linear_multi(it, n, m->mode, m->pool);
}

static void x_proj_free(x_proj *p) {
    free(p->qr); free(p->kv); free(p->ckv); free(p->csc); free(p->ikv); free(p->isc); free(p->iw);
}

/* Each query head's own RMS normalisation (no weight) and RoPE on its
 * last rd columns, as in the reference: (row, head) units split over the
 * pool (one thread took 2% of a 512-token prefill's time on them). */
typedef struct {
    float *q;
    const float *cs;         /* cos/sin per row */
    int n, H, hd, rd, ex;
    float eps;
} q_heads_job;

static void q_heads_worker(void *arg, int tid, int nth) {
    q_heads_job *j = arg;
    int lo, hi, ex = j->ex, hd = j->hd;
    pool_range(j->n, tid, nth, &lo, &hi);
    for (int u = lo; u < hi; u++) {
        float *qh = j->q + (size_t)u * hd;
        float ss = 0.0f;
        for (int i = 0; i < hd; i++) ss += rnd(ex, qh[i] * qh[i]);
        float r = rnd(ex, 1.0f / sqrtf(rnd(ex, rnd(ex, ss / (float)hd) + j->eps)));
        for (int i = 0; i < hd; i++) qh[i] = rnd(ex, qh[i] * r);
        rope_apply(qh + hd - j->rd, j->rd, j->cs + (size_t)(u / j->H) * j->rd, 0, ex);
    }
}

void attention_forward(dsv4_model *m, int li, row_info *rows, int T, const float *x, float *out) {
    const dsv4_config *c = &m->cfg;
    const layer_w *l = &m->layers[li];
    int ex = exact_mode(m), H = c->n_heads, hd = c->head_dim, rd = c->rope_head_dim, win = c->window_size;
    int QR = c->q_lora_rank, G = c->o_groups, R = c->o_lora_rank;
    const float *freq = l->ratio ? m->rope_freq_comp : m->rope_freq_swa;
    /* cos/sin of every row's position, computed once for q, kv and o */
    float *cs = xmalloc((size_t)T * rd * sizeof(float));
    for (int t = 0; t < T; t++) rope_table(freq, rd, rows[t].pos, cs + (size_t)t * rd);

    x_proj xp;
    x_projections(m, l, T, x, &xp);

    /* query path (4.2); the indexer's queries (4.5) come from the same
     * normalised low-rank q, in the same job */
    float *qr = xp.qr, *iq = NULL;
    float *q = xmalloc((size_t)T * H * hd * sizeof(float));
    for (int t = 0; t < T; t++) rmsnorm(qr + (size_t)t * QR, l->q_norm, QR, c->norm_eps, qr + (size_t)t * QR, ex);
    linear_item qi[2] = {{&l->wq_b, qr, T, q, 0}};
    if (l->has_indexer) {
        iq = xmalloc((size_t)T * c->index_n_heads * c->index_head_dim * sizeof(float));
        qi[1] = (linear_item){&l->idx_wq_b, qr, T, iq, 0};
    }
    linear_multi(qi, l->has_indexer ? 2 : 1, m->mode, m->pool);
    q_heads_job qj = {.q = q, .cs = cs, .n = T * H, .H = H, .hd = hd, .rd = rd, .eps = c->norm_eps, .ex = ex};
    pool_run(m->pool, q_heads_worker, &qj);

    /* raw KV (4.3) */
    float *kv = xp.kv;
    for (int t = 0; t < T; t++) {
        float *k = kv + (size_t)t * hd;
        rmsnorm(k, l->kv_norm, hd, c->norm_eps, k, ex);
        rope_apply(k + hd - rd, rd, cs + (size_t)t * rd, 0, ex);
        if (ex) fp8_roundtrip(k, hd - rd, 64);
    }

    /* compressed entries (4.4) and indexer selection (4.5) */
    int k_max = 0, *sel = NULL, *nsel = NULL;
    if (l->ratio) compressor_run(m, li, &l->comp, 0, rows, T, xp.ckv, xp.csc);
    if (l->has_indexer) {
        k_max = c->index_topk;
        sel = xmalloc((size_t)T * k_max * sizeof(int));
        nsel = xcalloc((size_t)T, sizeof(int));
        indexer_select(m, li, rows, T, iq, xp.ikv, xp.isc, xp.iw, sel, nsel, k_max);
    }

    /* index lists */
    int max_comp = 0;
    for (int t = 0; t < T; t++) {
        int nb = l->ratio ? (rows[t].pos + 1) / l->ratio : 0;
        if (l->has_indexer && nb > c->index_topk) nb = c->index_topk;
        if (nb > max_comp) max_comp = nb;
    }
    int kstride = win + max_comp + 64;
    const float **keys = xmalloc((size_t)T * kstride * sizeof(float *));
    int *nkeys = xmalloc((size_t)T * sizeof(int));
    for (int t = 0; t < T; t++) {
        int first = rows[t].seg_first, pos0 = rows[first].pos;
        int seg_end = first;
        while (seg_end < T && rows[seg_end].seg_first == first) seg_end++;
        int end_pos = rows[seg_end - 1].pos + 1;
        /* compressed part width: a prefill from 0 pads to the segment's
         * total (as the reference masks with -1), decode does not */
        int pad = 0;
        if (l->ratio && pos0 == 0) {
            pad = end_pos / l->ratio;
            if (l->has_indexer && pad > c->index_topk) pad = c->index_topk;
        }
        nkeys[t] = build_keys(m, li, rows, t, kv, sel ? sel + (size_t)t * k_max : NULL, nsel ? nsel[t] : 0, pad,
                              keys + (size_t)t * kstride);
        /* a prefill from 0 has a window part only min(T, win) wide */
        if (pos0 == 0 && seg_end - first < win) {
            int wpart = seg_end - first, drop = win - wpart;
            const float **kk = keys + (size_t)t * kstride;
            memmove(kk + wpart, kk + win, (size_t)(nkeys[t] - win) * sizeof(float *));
            nkeys[t] -= drop;
        }
    }

    float *o = xmalloc((size_t)T * H * hd * sizeof(float));
    attn_job job = {.m = m, .T = T, .H = H, .hd = hd, .q = q, .keys = keys, .nkeys = nkeys, .kstride = kstride,
                    .sink = l->attn_sink, .o = o};
    atomic_init(&job.next, 0);
    pool_run(m->pool, attn_worker, &job);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) rope_apply(o + ((size_t)t * H + h) * hd + hd - rd, rd, cs + (size_t)t * rd, 1, ex);

    /* write the window ring: the newest win positions of each segment */
    for (int t = 0; t < T; t++) {
        int first = rows[t].seg_first, seg_end = first;
        while (seg_end < T && rows[seg_end].seg_first == first) seg_end++;
        if (t < seg_end - win) continue;
        memcpy(rows[t].seq->ls[li].ring + (size_t)(rows[t].pos % win) * hd, kv + (size_t)t * hd, (size_t)hd * sizeof(float));
    }

    /* grouped low-rank output projection (4.7): the G group products in one
     * job (linear_multi) */
    int gin = H / G * hd;
    float *xg = xmalloc((size_t)G * T * gin * sizeof(float));
    float *ug = xmalloc((size_t)G * T * R * sizeof(float));
    float *u = xmalloc((size_t)T * G * R * sizeof(float));
    dsv4_weight *wgs = xmalloc((size_t)G * sizeof(dsv4_weight));
    linear_item *items = xmalloc((size_t)G * sizeof(linear_item));
    for (int g = 0; g < G; g++) {
        dsv4_weight wg = l->wo_a;
        wg.rows = R;
        size_t roff = (size_t)g * R;
        switch (wg.type) {
        case W_FP8: wg.data = (const uint8_t *)wg.data + roff * wg.cols; wg.scale += roff / 128 * wg.scale_cols; break;
        case W_BF16: wg.data = (const uint16_t *)wg.data + roff * wg.cols; break;
        case W_F32: wg.data = (const float *)wg.data + roff * wg.cols; break;
        default: wg.data = (const uint8_t *)wg.data + roff * weight_bytes(&l->wo_a) / l->wo_a.rows; break;
        }
        wgs[g] = wg;
        float *xgg = xg + (size_t)g * T * gin;
        for (int t = 0; t < T; t++) memcpy(xgg + (size_t)t * gin, o + (size_t)t * H * hd + (size_t)g * gin, (size_t)gin * sizeof(float));
        items[g] = (linear_item){&wgs[g], xgg, T, ug + (size_t)g * T * R, LIN_DEQUANT | LIN_OUT_BF16};
    }
    linear_multi(items, G, m->mode, m->pool);
    for (int g = 0; g < G; g++)
        for (int t = 0; t < T; t++)
            memcpy(u + (size_t)t * G * R + (size_t)g * R, ug + ((size_t)g * T + t) * R, (size_t)R * sizeof(float));
    free(wgs); free(items);
    linear(&l->wo_b, u, T, out, m->mode, 0, m->pool);
    free(xg); free(ug); free(u); free(o); free(keys); free(nkeys); free(sel); free(nsel);
    free(q); free(iq); free(cs);
    x_proj_free(&xp);
}
