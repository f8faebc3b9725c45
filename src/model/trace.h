/* trace.h - capture of per-layer intermediates, see trace.c. */
#ifndef DSV4_TRACE_H
#define DSV4_TRACE_H
#include <stddef.h>

typedef struct trace trace;
trace *trace_new(void);
void trace_rows(trace *tr, const char *name, const float *x, int rows, int cols);
int trace_write(trace *tr, const char *path, char *err, size_t errlen);
void trace_free(trace *tr);
#endif
