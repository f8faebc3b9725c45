/*
 * sched.c - request queue, continuous batching and the prefix cache (see
 * sched.h).  Only the scheduler thread touches the engine, the sequences
 * and the sessions; the queue and the statistics are shared under `mu`.
 */
#include "server/sched.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "util/util.h"

typedef struct {
    dsv4_seq *seq;
    int32_t *toks;
    int n;
    long used;
} centry;

enum { SLOT_FREE = 0, SLOT_PREFILL, SLOT_DECODE };

typedef struct {
    int state;
    sched_req *r;
    dsv4_seq *seq;
    gen_session *g;
    int pos;              /* prompt tokens fed */
    int boundary;         /* snapshot point inside the prompt, or 0 */
    int32_t next;         /* token to feed at the next decode step */
    int next_is_gen;      /* next is a generated token (not the prompt's last) */
    int fed_gen;          /* generated tokens fed to the engine */
    char err[256];
} slot;

struct sched {
    gen_model *gm;
    sched_opts o;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    int stop;
    sched_req *qhead, *qtail;
    int qlen;
    slot *slots;
    dsv4_seq **pool;
    int n_pool;
    centry *cache;
    int n_cache;
    long tick;
    float *logits;
    dsv4_seq **bseq;
    int32_t *bids;
    int *bslot;
    sched_stats st;       /* guarded by mu */
};

/* ---- sequences and cache (scheduler thread only) ------------------------ */

static dsv4_seq *seq_get(sched *s, char *err, size_t errlen) {
    if (s->n_pool) {
        dsv4_seq *q = s->pool[--s->n_pool];
        dsv4_seq_reset(q);
        return q;
    }
    return dsv4_seq_new(s->gm->model, s->gm->n_ctx, err, errlen);
}

static void seq_put(sched *s, dsv4_seq *q) {
    if (!q) return;
    if (s->n_pool < s->o.max_batch) s->pool[s->n_pool++] = q;
    else dsv4_seq_free(q);
}

static int cache_find(sched *s, const int32_t *toks, int n) {
    int best = -1;
    for (int i = 0; i < s->n_cache; i++) {
        centry *e = &s->cache[i];
        if (e->n <= n && (best < 0 || e->n > s->cache[best].n) &&
            !memcmp(e->toks, toks, (size_t)e->n * sizeof *toks))
            best = i;
    }
    return best;
}

static int cache_exact(sched *s, const int32_t *toks, int n) {
    for (int i = 0; i < s->n_cache; i++)
        if (s->cache[i].n == n && !memcmp(s->cache[i].toks, toks, (size_t)n * sizeof *toks)) return i;
    return -1;
}

/* A slot for a new entry: a free one, or the least recently used. */
static centry *cache_victim(sched *s) {
    if (s->n_cache < s->o.cache_slots) {
        centry *e = &s->cache[s->n_cache++];
        memset(e, 0, sizeof *e);
        return e;
    }
    int lru = 0;
    for (int i = 1; i < s->n_cache; i++)
        if (s->cache[i].used < s->cache[lru].used) lru = i;
    free(s->cache[lru].toks);
    s->cache[lru].toks = NULL;
    return &s->cache[lru];
}

/* Snapshot a copy of q (the slot keeps running). */
static void cache_copy_in(sched *s, const int32_t *toks, int n, dsv4_seq *q) {
    if (s->o.cache_slots <= 0 || n <= 0) return;
    int i = cache_exact(s, toks, n);
    if (i >= 0) { s->cache[i].used = ++s->tick; return; }
    centry *e = cache_victim(s);
    if (!e->seq) {
        char err[128];
        e->seq = dsv4_seq_new(s->gm->model, s->gm->n_ctx, err, sizeof err);
    }
    if (!e->seq || dsv4_seq_copy(e->seq, q)) { e->n = 0; e->toks = NULL; e->used = 0; return; }
    e->toks = xmalloc((size_t)n * sizeof *toks);
    memcpy(e->toks, toks, (size_t)n * sizeof *toks);
    e->n = n;
    e->used = ++s->tick;
}

/* Hand q over to the cache (the slot is finished); returns 1 if taken. */
static int cache_move_in(sched *s, int32_t *toks, int n, dsv4_seq *q) {
    if (s->o.cache_slots <= 0 || n <= 0) return 0;
    int i = cache_exact(s, toks, n);
    if (i >= 0) { s->cache[i].used = ++s->tick; return 0; }
    centry *e = cache_victim(s);
    seq_put(s, e->seq);
    e->seq = q;
    e->toks = toks;
    e->n = n;
    e->used = ++s->tick;
    return 1;
}

/* ---- slots --------------------------------------------------------------- */

static void finish_slot(sched *s, slot *sl) {
    sched_req *r = sl->r;
    gen_finish why = gen_reason(sl->g);
    r->usage.completion_tokens = gen_n_tokens(sl->g);
    r->usage.t_end = now_sec();
    /* keep the final state: prompt + the generated tokens fed */
    int kept = 0;
    if (why != GEN_ERROR && sl->seq && dsv4_seq_pos(sl->seq) == r->n_prompt + sl->fed_gen) {
        int n = r->n_prompt + sl->fed_gen;
        int32_t *toks = xmalloc((size_t)(n ? n : 1) * sizeof *toks);
        memcpy(toks, r->prompt, (size_t)r->n_prompt * sizeof *toks);
        memcpy(toks + r->n_prompt, gen_tokens(sl->g), (size_t)sl->fed_gen * sizeof *toks);
        kept = cache_move_in(s, toks, n, sl->seq);
        if (!kept) free(toks);
    }
    if (!kept) seq_put(s, sl->seq);
    sl->seq = NULL;
    r->on_done(r->user, why, &r->usage, why == GEN_ERROR ? sl->err : NULL);
    gen_free(sl->g);
    memset(sl, 0, sizeof *sl);
}

static void admit(sched *s, slot *sl, sched_req *r) {
    memset(sl, 0, sizeof *sl);
    sl->r = r;
    r->usage.t_start = now_sec();
    r->usage.prompt_tokens = r->n_prompt;
    sl->g = gen_new(s->gm, &r->params, r->on_event, r->user);
    sl->seq = seq_get(s, sl->err, sizeof sl->err);
    sl->state = SLOT_PREFILL;
    if (!sl->seq) { gen_end(sl->g, GEN_ERROR); return; }
    int c = cache_find(s, r->prompt, r->n_prompt - 1);
    if (c >= 0 && s->cache[c].n > 0 && dsv4_seq_copy(sl->seq, s->cache[c].seq) == 0) {
        sl->pos = s->cache[c].n;
        s->cache[c].used = ++s->tick;
        r->usage.cached_tokens = sl->pos;
    }
    /* Requests often share everything before the last user turn (system
     * prompt, tools, schema, history) and differ after it: snapshot there
     * too, if it saves a worthwhile prefill for the next such request. */
    int32_t user = s->gm->user;
    for (int i = r->n_prompt - 2; user >= 0 && i > 0; i--)
        if (r->prompt[i] == user) {
            if (i >= sl->pos + 16) sl->boundary = i;
            break;
        }
}

/* One chunk of prompt; the last prompt token joins the decode batch. */
static void prefill_step(sched *s, slot *sl) {
    sched_req *r = sl->r;
    int end = r->n_prompt - 1;
    int stop = sl->boundary > sl->pos ? sl->boundary : end;
    int n = stop - sl->pos;
    if (n > s->o.prefill_chunk) n = s->o.prefill_chunk;
    if (n > 0) {
        if (dsv4_forward(sl->seq, r->prompt + sl->pos, n, NULL, 0, sl->err, sizeof sl->err)) {
            gen_end(sl->g, GEN_ERROR);
            return;
        }
        sl->pos += n;
        if (sl->pos == end || sl->pos == sl->boundary) cache_copy_in(s, r->prompt, sl->pos, sl->seq);
    }
    if (sl->pos == end) {
        sl->state = SLOT_DECODE;
        sl->next = r->prompt[end];
        sl->next_is_gen = 0;
    }
}

static void decode_step(sched *s) {
    int nb = 0;
    int V = s->gm->vocab;
    for (int i = 0; i < s->o.max_batch; i++) {
        slot *sl = &s->slots[i];
        if (sl->state != SLOT_DECODE || gen_reason(sl->g) != GEN_RUNNING) continue;
        if (dsv4_seq_pos(sl->seq) >= dsv4_seq_capacity(sl->seq)) { gen_end(sl->g, GEN_LENGTH); continue; }
        s->bseq[nb] = sl->seq;
        s->bids[nb] = sl->next;
        s->bslot[nb] = i;
        nb++;
    }
    if (!nb) return;
    char err[256] = "";
    int rc = nb == 1 ? dsv4_forward(s->bseq[0], s->bids, 1, s->logits, 0, err, sizeof err)
                     : dsv4_forward_batch(s->bseq, s->bids, nb, s->logits, err, sizeof err);
    double t = now_sec();
    for (int k = 0; k < nb; k++) {
        slot *sl = &s->slots[s->bslot[k]];
        if (rc) { snprintf(sl->err, sizeof sl->err, "%s", err); gen_end(sl->g, GEN_ERROR); continue; }
        if (sl->next_is_gen) sl->fed_gen++;
        int32_t id = gen_step(sl->g, s->logits + (size_t)k * (size_t)V);
        if (!sl->r->usage.t_first) sl->r->usage.t_first = t;
        if (sl->r->on_token) sl->r->on_token(sl->r->user, t);
        if (id >= 0) { sl->next = id; sl->next_is_gen = 1; }
    }
    pthread_mutex_lock(&s->mu);
    s->st.batches++;
    s->st.batched_seqs += nb;
    pthread_mutex_unlock(&s->mu);
}

static void update_stats(sched *s) {
    long kv = 0;
    int active = 0;
    for (int i = 0; i < s->o.max_batch; i++)
        if (s->slots[i].state != SLOT_FREE) { active++; if (s->slots[i].seq) kv += dsv4_seq_pos(s->slots[i].seq); }
    for (int i = 0; i < s->n_cache; i++) kv += s->cache[i].n;
    pthread_mutex_lock(&s->mu);
    s->st.active = active;
    s->st.queued = s->qlen;
    s->st.cache_entries = s->n_cache;
    s->st.kv_tokens = kv;
    s->st.kv_capacity = (long)(s->o.max_batch + s->o.cache_slots) * s->gm->n_ctx;
    pthread_mutex_unlock(&s->mu);
}

static void *sched_main(void *arg) {
    sched *s = arg;
    for (;;) {
        pthread_mutex_lock(&s->mu);
        int active = 0;
        for (int i = 0; i < s->o.max_batch; i++) active += s->slots[i].state != SLOT_FREE;
        while (!s->stop && !active && !s->qhead) pthread_cond_wait(&s->cv, &s->mu);
        if (s->stop) { pthread_mutex_unlock(&s->mu); break; }
        /* admit queued requests into free slots */
        sched_req *adm[64];
        int n_adm = 0;
        for (int i = 0; i < s->o.max_batch && s->qhead && n_adm < 64; i++) {
            if (s->slots[i].state != SLOT_FREE) continue;
            sched_req *r = s->qhead;
            s->qhead = r->next;
            if (!s->qhead) s->qtail = NULL;
            s->qlen--;
            s->slots[i].state = SLOT_PREFILL;      /* reserved */
            s->slots[i].r = r;
            adm[n_adm++] = r;
        }
        pthread_mutex_unlock(&s->mu);
        for (int i = 0, k = 0; i < s->o.max_batch && k < n_adm; i++)
            if (s->slots[i].state == SLOT_PREFILL && !s->slots[i].g && s->slots[i].r == adm[k]) {
                admit(s, &s->slots[i], adm[k]);
                k++;
            }
        /* cancellations, prefill chunks, then one decode step for all */
        for (int i = 0; i < s->o.max_batch; i++) {
            slot *sl = &s->slots[i];
            if (sl->state == SLOT_FREE) continue;
            if (atomic_load(&sl->r->cancel)) gen_end(sl->g, GEN_CANCELLED);
            if (sl->state == SLOT_PREFILL && gen_reason(sl->g) == GEN_RUNNING) prefill_step(s, sl);
        }
        decode_step(s);
        for (int i = 0; i < s->o.max_batch; i++)
            if (s->slots[i].state != SLOT_FREE && gen_reason(s->slots[i].g) != GEN_RUNNING) finish_slot(s, &s->slots[i]);
        update_stats(s);
    }
    /* shutdown: everything ends as cancelled */
    for (int i = 0; i < s->o.max_batch; i++)
        if (s->slots[i].state != SLOT_FREE) { gen_end(s->slots[i].g, GEN_CANCELLED); finish_slot(s, &s->slots[i]); }
    pthread_mutex_lock(&s->mu);
    sched_req *r = s->qhead;
    s->qhead = s->qtail = NULL;
    pthread_mutex_unlock(&s->mu);
    while (r) {
        sched_req *nx = r->next;
        grammar_free(r->params.grammar);
        r->on_done(r->user, GEN_CANCELLED, &r->usage, NULL);
        r = nx;
    }
    return NULL;
}

sched *sched_new(gen_model *gm, const sched_opts *o, char *err, size_t errlen) {
    sched *s = xcalloc(1, sizeof *s);
    s->gm = gm;
    s->o = *o;
    if (s->o.max_batch <= 0) s->o.max_batch = 8;
    if (s->o.max_batch > 64) s->o.max_batch = 64;
    if (s->o.max_queue <= 0) s->o.max_queue = 64;
    if (s->o.prefill_chunk <= 0) s->o.prefill_chunk = 512;
    if (s->o.cache_slots < 0) s->o.cache_slots = 0;
    s->slots = xcalloc((size_t)s->o.max_batch, sizeof *s->slots);
    s->pool = xcalloc((size_t)s->o.max_batch, sizeof *s->pool);
    s->cache = xcalloc((size_t)(s->o.cache_slots ? s->o.cache_slots : 1), sizeof *s->cache);
    s->logits = malloc((size_t)s->o.max_batch * (size_t)gm->vocab * sizeof(float));
    s->bseq = xcalloc((size_t)s->o.max_batch, sizeof *s->bseq);
    s->bids = xcalloc((size_t)s->o.max_batch, sizeof *s->bids);
    s->bslot = xcalloc((size_t)s->o.max_batch, sizeof *s->bslot);
    pthread_mutex_init(&s->mu, NULL);
    pthread_cond_init(&s->cv, NULL);
    if (!s->logits || pthread_create(&s->th, NULL, sched_main, s)) {
        errf(err, errlen, "cannot start the scheduler");
        free(s->logits);
        free(s);
        return NULL;
    }
    return s;
}

void sched_free(sched *s) {
    if (!s) return;
    pthread_mutex_lock(&s->mu);
    s->stop = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->mu);
    pthread_join(s->th, NULL);
    for (int i = 0; i < s->n_pool; i++) dsv4_seq_free(s->pool[i]);
    for (int i = 0; i < s->n_cache; i++) { dsv4_seq_free(s->cache[i].seq); free(s->cache[i].toks); }
    free(s->pool); free(s->cache); free(s->slots); free(s->logits);
    free(s->bseq); free(s->bids); free(s->bslot);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv);
    free(s);
}

int sched_submit(sched *s, sched_req *r) {
    pthread_mutex_lock(&s->mu);
    if (s->qlen >= s->o.max_queue || s->stop) { pthread_mutex_unlock(&s->mu); return -1; }
    r->next = NULL;
    memset(&r->usage, 0, sizeof r->usage);
    r->usage.t_submit = now_sec();
    if (s->qtail) s->qtail->next = r; else s->qhead = r;
    s->qtail = r;
    s->qlen++;
    s->st.queued = s->qlen;
    pthread_cond_signal(&s->cv);
    pthread_mutex_unlock(&s->mu);
    return 0;
}

void sched_get_stats(sched *s, sched_stats *st) {
    pthread_mutex_lock(&s->mu);
    *st = s->st;
    st->queued = s->qlen;
    pthread_mutex_unlock(&s->mu);
}
