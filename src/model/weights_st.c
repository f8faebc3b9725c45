/*
 * weights_st.c - the safetensors weight source: release tensor names are
 * looked up in the mmap'd shards, dtypes and shapes are checked against
 * what the config implies, and every lookup is recorded so that tensors
 * the model never uses ("extra tensors") can be reported.
 */
#include "model/model.h"
#include "format/safetensors.h"
#include "util/util.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    st_set set;
    unsigned char *used;          /* per tensor */
} st_source;

static const st_tensor *lookup(st_source *s, const char *name) {
    const st_tensor *t = st_find(&s->set, name);
    if (t) s->used[t - s->set.tensors] = 1;
    return t;
}

static const char *file_of(st_source *s, const st_tensor *t) { return s->set.files[t->file].path; }

static int shape_is(const st_tensor *t, int64_t a, int64_t b) {
    return t->ndim == 2 && t->shape[0] == a && t->shape[1] == b;
}

static int check_scale(st_source *s, const char *name, const st_tensor *w, int64_t r, int64_t c,
                       const uint8_t **data, char *err, size_t errlen) {
    char sn[512];
    snprintf(sn, sizeof sn, "%s.scale", name);
    const st_tensor *sc = lookup(s, sn);
    if (!sc) return errf(err, errlen, "%s: tensor '%s' is missing (needed by %s.weight, %s)", file_of(s, w), sn, name, st_dtype_name(w->dtype));
    if (sc->dtype != ST_F8_E8M0)
        return errf(err, errlen, "%s: tensor '%s' has dtype %s, expected F8_E8M0", file_of(s, sc), sn, st_dtype_name(sc->dtype));
    if (!shape_is(sc, r, c))
        return errf(err, errlen, "%s: tensor '%s' has shape [%lld,%lld], expected [%lld,%lld]", file_of(s, sc), sn,
                    (long long)(sc->ndim > 0 ? sc->shape[0] : -1), (long long)(sc->ndim > 1 ? sc->shape[1] : -1),
                    (long long)r, (long long)c);
    *data = sc->data;
    return 0;
}

static int st_matrix(void *ctx, const char *name, int rows, int cols, dsv4_weight *w, char *err, size_t errlen) {
    st_source *s = ctx;
    char wn[512];
    snprintf(wn, sizeof wn, "%s.weight", name);
    const st_tensor *t = lookup(s, wn);
    if (!t) return errf(err, errlen, "%s: tensor '%s' is missing", s->set.n_files ? s->set.files[0].path : "model", wn);
    memset(w, 0, sizeof *w);
    w->rows = rows;
    w->cols = cols;
    w->data = t->data;
    w->name = t->name;
    switch (t->dtype) {
    case ST_F32:
    case ST_BF16:
        if (!shape_is(t, rows, cols)) goto bad_shape;
        w->type = t->dtype == ST_F32 ? W_F32 : W_BF16;
        return 0;
    case ST_F8_E4M3:
        if (!shape_is(t, rows, cols)) goto bad_shape;
        w->type = W_FP8;
        w->scale_cols = (cols + 127) / 128;
        return check_scale(s, name, t, (rows + 127) / 128, w->scale_cols, &w->scale, err, errlen);
    case ST_I8:
    case ST_U8:
        if (cols % 32 || !shape_is(t, rows, cols / 2)) {
            return errf(err, errlen, "%s: tensor '%s' (packed FP4) has shape [%lld,%lld], expected [%d,%d]", file_of(s, t), wn,
                        (long long)t->shape[0], (long long)(t->ndim > 1 ? t->shape[1] : -1), rows, cols / 2);
        }
        w->type = W_MXFP4;
        w->scale_cols = cols / 32;
        return check_scale(s, name, t, rows, cols / 32, &w->scale, err, errlen);
    default:
        return errf(err, errlen, "%s: tensor '%s' has dtype %s, which is not a weight format (BF16, F32, F8_E4M3, I8-packed FP4)",
                    file_of(s, t), wn, st_dtype_name(t->dtype));
    }
bad_shape:
    return errf(err, errlen, "%s: tensor '%s' has shape [%lld%s%lld], expected [%d,%d]", file_of(s, t), wn,
                (long long)(t->ndim > 0 ? t->shape[0] : 0), t->ndim > 1 ? "," : "",
                (long long)(t->ndim > 1 ? t->shape[1] : 0), rows, cols);
}

static int st_vector(void *ctx, const char *name, int64_t numel, ws_vtype *type, const void **data,
                     char *err, size_t errlen) {
    st_source *s = ctx;
    const st_tensor *t = lookup(s, name);
    if (!t) return errf(err, errlen, "%s: tensor '%s' is missing", s->set.n_files ? s->set.files[0].path : "model", name);
    if (st_numel(t) != numel)
        return errf(err, errlen, "%s: tensor '%s' has %lld elements, expected %lld", file_of(s, t), name,
                    (long long)st_numel(t), (long long)numel);
    switch (t->dtype) {
    case ST_F32: *type = WS_F32; break;
    case ST_BF16: *type = WS_BF16; break;
    case ST_F16: *type = WS_F16; break;
    case ST_I32: *type = WS_I32; break;
    case ST_I64: *type = WS_I64; break;
    default:
        return errf(err, errlen, "%s: tensor '%s' has unexpected dtype %s", file_of(s, t), name, st_dtype_name(t->dtype));
    }
    *data = t->data;
    return 0;
}

static int st_has(void *ctx, const char *name) {
    st_source *s = ctx;
    char wn[512];
    if (st_find(&s->set, name)) return 1;
    snprintf(wn, sizeof wn, "%s.weight", name);
    return st_find(&s->set, wn) != NULL;
}

static const char *st_unused(void *ctx) {
    st_source *s = ctx;
    for (int i = 0; i < s->set.n_tensors; i++)
        if (!s->used[i]) return s->set.tensors[i].name;
    return NULL;
}

static void st_close_src(void *ctx) {
    st_source *s = ctx;
    st_close(&s->set);
    free(s->used);
    free(s);
}

static int st_inventory(void *ctx, long *n, size_t *bytes) {
    st_source *s = ctx;
    *n = s->set.n_tensors;
    *bytes = 0;
    for (int i = 0; i < s->set.n_tensors; i++) *bytes += s->set.tensors[i].nbytes;
    return 0;
}

static void st_prefault(void *ctx) {
    st_source *s = ctx;
    for (int i = 0; i < s->set.n_files; i++) map_prefault(s->set.files[i].map, s->set.files[i].map_len);
}

static double st_hugepage_fraction(void *ctx) {
    st_source *s = ctx;
    double huge = 0, all = 0;
    for (int i = 0; i < s->set.n_files; i++) {
        double f = map_hugepage_fraction(s->set.files[i].map, s->set.files[i].map_len);
        if (f < 0) return -1;
        huge += f * (double)s->set.files[i].map_len;
        all += (double)s->set.files[i].map_len;
    }
    return all > 0 ? huge / all : -1;
}

int wsource_open_safetensors(const char *dir, wsource *out, char *err, size_t errlen) {
    st_source *s = xcalloc(1, sizeof *s);
    if (st_open_dir(&s->set, dir, err, errlen)) {
        st_close(&s->set);
        free(s);
        return -1;
    }
    s->used = xcalloc((size_t)s->set.n_tensors + 1, 1);
    *out = (wsource){.ctx = s, .matrix = st_matrix, .vector = st_vector, .has = st_has,
                     .unused = st_unused, .close = st_close_src, .inventory = st_inventory,
                     .prefault = st_prefault, .hugepage_fraction = st_hugepage_fraction};
    return 0;
}
