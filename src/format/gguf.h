/*
 * gguf.h - GGUF (llama.cpp's model file format, versions 2 and 3) reader
 * and writer.
 *
 * Layout: "GGUF", u32 version, u64 tensor count, u64 metadata count, the
 * metadata key/values, the tensor infos (name, ndim, ne[] innermost first,
 * ggml type, offset), padding to general.alignment (default 32), then the
 * tensor data; each offset is relative to the start of the data section and
 * aligned.  Everything little-endian.
 *
 * The reader mmaps the file and validates everything before any value is
 * used: counts against the bytes that remain, string and array lengths,
 * known value and tensor types, dimensions, byte sizes from type x shape,
 * alignment, every tensor inside the file, no two tensors overlapping, no
 * duplicate keys or names.  Tensor data is never copied.
 */
#ifndef DSV4_GGUF_H
#define DSV4_GGUF_H
#include <stddef.h>
#include <stdint.h>
#include "num/linear.h"

typedef enum {
    GGUF_U8 = 0, GGUF_I8 = 1, GGUF_U16 = 2, GGUF_I16 = 3, GGUF_U32 = 4, GGUF_I32 = 5,
    GGUF_F32 = 6, GGUF_BOOL = 7, GGUF_STRING = 8, GGUF_ARRAY = 9, GGUF_U64 = 10,
    GGUF_I64 = 11, GGUF_F64 = 12, GGUF_NVTYPES
} gguf_vtype;

/* ggml tensor type ids as stored in files (the ones dsv4 names). */
enum {
    GGML_TYPE_F32 = 0, GGML_TYPE_F16 = 1, GGML_TYPE_Q8_0 = 8, GGML_TYPE_Q2_K = 10,
    GGML_TYPE_Q3_K = 11, GGML_TYPE_Q4_K = 12, GGML_TYPE_Q5_K = 13, GGML_TYPE_Q6_K = 14,
    GGML_TYPE_IQ2_XXS = 16, GGML_TYPE_IQ3_XXS = 18, GGML_TYPE_I8 = 24, GGML_TYPE_I16 = 25,
    GGML_TYPE_I32 = 26, GGML_TYPE_I64 = 27, GGML_TYPE_F64 = 28, GGML_TYPE_BF16 = 30,
    GGML_TYPE_MXFP4 = 39
};

#define GGUF_MAX_DIMS 4
#define GGUF_DEFAULT_ALIGNMENT 32

typedef struct gguf_kv {
    char *key;
    gguf_vtype type;
    gguf_vtype arr_type;        /* arrays only */
    uint64_t n;                 /* arrays: element count; strings: byte length */
    const uint8_t *data;        /* scalar / string bytes / array payload (in the map) */
    const uint8_t **items;      /* string arrays: each item's length prefix */
} gguf_kv;

typedef struct gguf_tensor {
    char *name;
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];  /* innermost first; unused dims are 1 */
    uint32_t type;              /* ggml type id */
    uint64_t offset;            /* relative to the data section */
    const void *data;
    size_t nbytes;
} gguf_tensor;

typedef struct gguf_file {
    char *path;
    const uint8_t *buf;         /* whole file */
    size_t len;
    int mapped;                 /* 1 if buf is our mmap */
    uint32_t version;
    size_t alignment, data_off;
    gguf_kv *kv;
    int64_t n_kv;
    gguf_tensor *tensors;       /* in file order */
    int64_t n_tensors;
    int64_t *by_name;           /* tensor indices sorted by name */
} gguf_file;

/* Open (mmap) and validate a file.  NULL with "PATH: reason" in err. */
gguf_file *gguf_open(const char *path, char *err, size_t errlen);
/* Validate a file image in memory (not copied; must outlive the result). */
gguf_file *gguf_parse(const uint8_t *buf, size_t len, const char *name, char *err, size_t errlen);
void gguf_close(gguf_file *f);

/* Name of a ggml type id ("Q8_0", ...; "type N" for unknown ones); bytes of
 * ne0 values of it (0 if unknown or ne0 not a multiple of its block). */
const char *gguf_type_name(uint32_t type);
uint64_t gguf_type_row_bytes(uint32_t type, int64_t ne0);
/* ggml type <-> dsv4 weight type (F32, BF16 and the GGUF block types).
 * -1 when there is no mapping. */
int gguf_type_to_wtype(uint32_t type, wtype *out);
int gguf_wtype_to_type(wtype t, uint32_t *out);

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key);
const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name);
int64_t gguf_tensor_numel(const gguf_tensor *t);

/* Typed getters: 0, or -1 with "KEY: reason" (missing, wrong type, out of
 * range).  Integer getters accept any integer type whose value fits; float
 * getters accept F32/F64 and integers. */
int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen);
int gguf_get_int(const gguf_file *f, const char *key, int *out, char *err, size_t errlen);
int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err, size_t errlen);
int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err, size_t errlen);
/* String value: pointer into the map (not NUL-terminated) and length. */
int gguf_get_str(const gguf_file *f, const char *key, const char **s, size_t *len,
                 char *err, size_t errlen);
/* Array element i as integer / float / string. */
int gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out);
int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out);
int gguf_arr_str(const gguf_kv *kv, uint64_t i, const char **s, size_t *len);

/* ---- writer ------------------------------------------------------------ */

typedef struct gguf_writer gguf_writer;
/* Fills a tensor's bytes (nbytes as declared) directly into the output.
 * Returns 0 or -1 with a reason. */
typedef int (*gguf_fill_fn)(void *ctx, void *dst, size_t nbytes, char *err, size_t errlen);

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w);
/* Metadata, written in the order added.  Strings and arrays are copied. */
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_w_f32(gguf_writer *w, const char *key, float v);
void gguf_w_bool(gguf_writer *w, const char *key, int v);
void gguf_w_str(gguf_writer *w, const char *key, const char *s);
void gguf_w_str_n(gguf_writer *w, const char *key, const char *s, size_t len);
/* Array of fixed-size elements (type U8..F64 but not STRING/ARRAY). */
void gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype et, const void *data, uint64_t n);
/* Array of strings (lens NULL: NUL-terminated). */
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t n);
/* Raw value bytes (any type, already encoded); for tests that want
 * malformed files. */
void gguf_w_raw(gguf_writer *w, const char *key, gguf_vtype type, const void *bytes, size_t n);

/* Tensor with data in memory (borrowed until write) or produced by fill(). */
void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, int ndim,
                   const int64_t *ne, const void *data);
void gguf_w_tensor_fill(gguf_writer *w, const char *name, uint32_t type, int ndim,
                        const int64_t *ne, gguf_fill_fn fill, void *ctx);
uint64_t gguf_writer_data_bytes(const gguf_writer *w);
/* progress(ctx, bytes_done, bytes_total, tensor name) after each tensor. */
typedef void (*gguf_progress_fn)(void *ctx, uint64_t done, uint64_t total, const char *name);
int gguf_writer_write(gguf_writer *w, const char *path, gguf_progress_fn progress, void *pctx,
                      char *err, size_t errlen);

#endif
