/*
 * bench_fill.c - see bench_fill.h.  Mirrors the state layout of
 * dsv4_seq_new/dsv4_seq_copy (model/forward.c): per layer a window ring,
 * compressed entries (pos / ratio), indexer keys (pos / 4), and the
 * compressors' running kv/score states.
 */
#include "model/bench_fill.h"
#include "model/model.h"
#include "util/util.h"
#include <math.h>

static float rnd_unit(uint64_t *s) {
    /* xorshift64*, mapped to [-1.7, 1.7): about unit variance */
    *s ^= *s >> 12; *s ^= *s << 25; *s ^= *s >> 27;
    uint64_t v = *s * 2685821657736338717ull;
    return (float)((double)(v >> 40) / (double)(1ull << 24) * 3.4 - 1.7);
}

static void fill(float *p, size_t n, uint64_t *s) {
    for (size_t i = 0; i < n; i++) p[i] = rnd_unit(s);
}

int bench_fill_random(dsv4_seq *s, int pos, uint64_t seed, char *err, size_t errlen) {
    const dsv4_model *m = s->m;
    const dsv4_config *c = &m->cfg;
    if (pos < 0 || pos >= s->cap) return errf(err, errlen, "fill position %d beyond capacity %d", pos, s->cap);
    dsv4_seq_reset(s);
    uint64_t st = seed * 0x9e3779b97f4a7c15ull + 1;
    int nl = c->n_layers + c->n_mtp_layers, hd = c->head_dim, ihd = c->index_head_dim;
    for (int i = 0; i < nl; i++) {
        const layer_w *l = &m->layers[i];
        layer_state *ls = &s->ls[i];
        if (pos > 0) fill(ls->ring, (size_t)c->window_size * hd, &st);
        if (l->ratio) {
            fill(ls->ckv, (size_t)(pos / l->ratio) * hd, &st);
            size_t n = (size_t)l->comp.coff * l->ratio * l->comp.coff * hd;
            if (pos > 0) { fill(ls->kv_state, n, &st); fill(ls->sc_state, n, &st); }
        }
        if (l->has_indexer) {
            fill(ls->ikv, (size_t)(pos / 4) * ihd, &st);
            ls->ikv_pan_n = 0;
            if (pos > 0) { fill(ls->ikv_state, (size_t)16 * ihd, &st); fill(ls->isc_state, (size_t)16 * ihd, &st); }
        }
    }
    s->pos = pos;
    s->mtp_pos = pos;
    return 0;
}

double bench_kv_bytes_read(const dsv4_model *m, int ctx) {
    const dsv4_config *c = &m->cfg;
    double b = 0;
    for (int i = 0; i < c->n_layers; i++) {
        const layer_w *l = &m->layers[i];
        int win = ctx + 1 < c->window_size ? ctx + 1 : c->window_size;
        b += (double)win * c->head_dim * 4;
        if (!l->ratio) continue;
        double ncomp = (double)(ctx + 1) / l->ratio;
        if (l->has_indexer) {
            b += ncomp * c->index_head_dim * 4;                                /* keys scored */
            b += (ncomp < c->index_topk ? ncomp : c->index_topk) * c->head_dim * 4;  /* entries attended */
        } else {
            b += ncomp * c->head_dim * 4;
        }
    }
    return b;
}
