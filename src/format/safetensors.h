/*
 * safetensors.h - mmap'd reader and a streaming writer for the safetensors
 * format (8-byte LE header length, JSON header, raw little-endian data).
 *
 * The reader validates everything the header claims before any tensor is
 * touched: offsets inside the file, no overlaps, byte size == dtype x shape.
 * A model directory is opened as a set: a single model.safetensors or the
 * shards named by model.safetensors.index.json.
 */
#ifndef DSV4_SAFETENSORS_H
#define DSV4_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

typedef enum {
    ST_BF16, ST_F16, ST_F32, ST_F64, ST_F8_E4M3, ST_F8_E8M0, ST_I8, ST_U8,
    ST_I16, ST_I32, ST_I64, ST_BOOL, ST_NDTYPES
} st_dtype;

const char *st_dtype_name(st_dtype t);
int st_dtype_from_name(const char *name, st_dtype *t);  /* 0 or -1 */
size_t st_dtype_size(st_dtype t);

#define ST_MAX_DIMS 8

typedef struct st_tensor {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;       /* points into the mmap */
    size_t nbytes;
    int file;               /* index of the shard that holds it */
} st_tensor;

typedef struct st_file {
    char *path;
    void *map;
    size_t map_len;
} st_file;

typedef struct st_set {
    st_file *files;
    int n_files;
    st_tensor *tensors;     /* sorted by name */
    int n_tensors;
} st_set;

/* Parse one safetensors file given its bytes (used by the reader and by the
 * fuzzer).  Appends tensors to *set with file index fidx.  Returns 0 or -1
 * with "FILE: reason" in err. */
int st_parse(st_set *set, int fidx, const char *path, const uint8_t *buf, size_t len,
             char *err, size_t errlen);

/* Open one file (mmap) and add its tensors. */
int st_open_file(st_set *set, const char *path, char *err, size_t errlen);
/* Open a model directory: model.safetensors.index.json (every shard it names
 * is opened, and each tensor must live in the shard the index says) or a
 * single model.safetensors. */
int st_open_dir(st_set *set, const char *dir, char *err, size_t errlen);
void st_close(st_set *set);
/* Must be called after the last st_parse/st_open_file before lookups. */
int st_finish(st_set *set, char *err, size_t errlen);

const st_tensor *st_find(const st_set *set, const char *name);
int64_t st_numel(const st_tensor *t);

/* Writer: collect tensors (data pointers are kept, not copied), then write.
 * Tensors are written contiguously (the format allows no holes), larger
 * element sizes first and then by name, so that every tensor is aligned to
 * its element size (as the Hugging Face writer orders them). */
typedef struct st_writer st_writer;
st_writer *st_writer_new(void);
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                   const int64_t *shape, const void *data, size_t nbytes);
/* Same but the writer takes ownership of data (free()d after writing). */
void st_writer_add_owned(st_writer *w, const char *name, st_dtype dtype, int ndim,
                         const int64_t *shape, void *data, size_t nbytes);
size_t st_writer_total_bytes(const st_writer *w);
int st_writer_write(st_writer *w, const char *path, char *err, size_t errlen);
void st_writer_free(st_writer *w);

#endif
