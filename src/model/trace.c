/*
 * trace.c - optional capture of per-layer intermediates (attention and MoE
 * inputs/outputs, residual streams, final hc_head) for comparison with the
 * reference's hooks.  Rows are appended per position across calls.  Off
 * unless a sequence has a trace attached (dsv4 logits --trace).
 */
#include "model/trace.h"
#include "format/safetensors.h"
#include "util/util.h"
#include <stdlib.h>
#include <string.h>

typedef struct { char *name; int cols; int rows; float *data; } trace_t;
struct trace { trace_t *t; int n; };

trace *trace_new(void) { return xcalloc(1, sizeof(trace)); }

void trace_rows(trace *tr, const char *name, const float *x, int rows, int cols) {
    if (!tr) return;
    trace_t *e = NULL;
    for (int i = 0; i < tr->n; i++)
        if (!strcmp(tr->t[i].name, name)) e = &tr->t[i];
    if (!e) {
        tr->t = xrealloc(tr->t, (size_t)(tr->n + 1) * sizeof(trace_t));
        e = &tr->t[tr->n++];
        *e = (trace_t){xstrdup(name), cols, 0, NULL};
    }
    e->data = xrealloc(e->data, (size_t)(e->rows + rows) * cols * sizeof(float));
    memcpy(e->data + (size_t)e->rows * cols, x, (size_t)rows * cols * sizeof(float));
    e->rows += rows;
}

int trace_write(trace *tr, const char *path, char *err, size_t errlen) {
    st_writer *w = st_writer_new();
    for (int i = 0; i < tr->n; i++) {
        int64_t shape[2] = {tr->t[i].rows, tr->t[i].cols};
        st_writer_add(w, tr->t[i].name, ST_F32, 2, shape, tr->t[i].data, (size_t)tr->t[i].rows * tr->t[i].cols * sizeof(float));
    }
    int rc = st_writer_write(w, path, err, errlen);
    st_writer_free(w);
    return rc;
}

void trace_free(trace *tr) {
    if (!tr) return;
    for (int i = 0; i < tr->n; i++) { free(tr->t[i].name); free(tr->t[i].data); }
    free(tr->t);
    free(tr);
}
