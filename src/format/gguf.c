/*
 * gguf.c - GGUF reader (mmap'd, fully validated) and writer; see gguf.h.
 *
 * The parser walks the header with a bounds-checked cursor; every count is
 * checked against the bytes that remain before anything is allocated for
 * it, so a lying header can neither crash nor make us allocate gigabytes.
 * The writer lays out the header, sizes the file, mmaps it and lets each
 * tensor be filled in place (the converter quantises straight into the
 * output without holding a second copy).
 */
#include "format/gguf.h"
#include "num/ggml_quants.h"
#include "util/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- ggml types ---------------------------------------------------------- */

static const struct { uint32_t id; const char *name; int blck; int size; } ggml_types[] = {
    {0, "F32", 1, 4}, {1, "F16", 1, 2}, {2, "Q4_0", 32, 18}, {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22}, {7, "Q5_1", 32, 24}, {8, "Q8_0", 32, 34}, {9, "Q8_1", 32, 36},
    {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144},
    {13, "Q5_K", 256, 176}, {14, "Q6_K", 256, 210}, {15, "Q8_K", 256, 292},
    {16, "IQ2_XXS", 256, 66}, {17, "IQ2_XS", 256, 74}, {18, "IQ3_XXS", 256, 98},
    {19, "IQ1_S", 256, 50}, {20, "IQ4_NL", 32, 18}, {21, "IQ3_S", 256, 110},
    {22, "IQ2_S", 256, 82}, {23, "IQ4_XS", 256, 136}, {24, "I8", 1, 1}, {25, "I16", 1, 2},
    {26, "I32", 1, 4}, {27, "I64", 1, 8}, {28, "F64", 1, 8}, {29, "IQ1_M", 256, 56},
    {30, "BF16", 1, 2}, {34, "TQ1_0", 256, 54}, {35, "TQ2_0", 256, 66}, {39, "MXFP4", 32, 17},
};
#define N_GGML_TYPES (int)(sizeof ggml_types / sizeof ggml_types[0])

static int type_index(uint32_t type) {
    for (int i = 0; i < N_GGML_TYPES; i++) if (ggml_types[i].id == type) return i;
    return -1;
}

const char *gguf_type_name(uint32_t type) {
    static __thread char buf[32];
    int i = type_index(type);
    if (i >= 0) return ggml_types[i].name;
    snprintf(buf, sizeof buf, "type %u", type);
    return buf;
}

uint64_t gguf_type_row_bytes(uint32_t type, int64_t ne0) {
    int i = type_index(type);
    if (i < 0 || ne0 < 0 || ne0 % ggml_types[i].blck) return 0;
    return (uint64_t)(ne0 / ggml_types[i].blck) * (uint64_t)ggml_types[i].size;
}

static const struct { uint32_t type; wtype w; } wmap[] = {
    {GGML_TYPE_F32, W_F32}, {GGML_TYPE_BF16, W_BF16}, {GGML_TYPE_F16, W_F16},
    {GGML_TYPE_Q8_0, W_Q8_0}, {GGML_TYPE_MXFP4, W_GG_MXFP4}, {GGML_TYPE_Q2_K, W_Q2_K},
    {GGML_TYPE_Q3_K, W_Q3_K}, {GGML_TYPE_Q4_K, W_Q4_K}, {GGML_TYPE_Q5_K, W_Q5_K},
    {GGML_TYPE_Q6_K, W_Q6_K}, {GGML_TYPE_IQ2_XXS, W_IQ2_XXS}, {GGML_TYPE_IQ3_XXS, W_IQ3_XXS},
};

int gguf_type_to_wtype(uint32_t type, wtype *out) {
    for (size_t i = 0; i < sizeof wmap / sizeof wmap[0]; i++)
        if (wmap[i].type == type) { *out = wmap[i].w; return 0; }
    return -1;
}

int gguf_wtype_to_type(wtype t, uint32_t *out) {
    for (size_t i = 0; i < sizeof wmap / sizeof wmap[0]; i++)
        if (wmap[i].w == t) { *out = wmap[i].type; return 0; }
    return -1;
}

/* ---- reader ------------------------------------------------------------- */

typedef struct { const uint8_t *p; size_t left; } cur;

static int take(cur *c, void *dst, size_t n) {
    if (c->left < n) return -1;
    if (dst) memcpy(dst, c->p, n);
    c->p += n; c->left -= n;
    return 0;
}

static const int vsize[GGUF_NVTYPES] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};
static const char *vname[GGUF_NVTYPES] = {"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool",
                                          "string", "array", "u64", "i64", "f64"};

/* A string: u64 length + bytes.  Returns the byte pointer. */
static int read_str(cur *c, const uint8_t **s, uint64_t *len) {
    if (take(c, len, 8)) return -1;
    if (*len > c->left) return -1;
    *s = c->p;
    c->p += *len; c->left -= *len;
    return 0;
}

static char *dup_n(const uint8_t *s, size_t n) {
    char *r = xmalloc(n + 1);
    memcpy(r, s, n); r[n] = 0;
    return r;
}

static int cmp_kv(const void *a, const void *b) {
    return strcmp(((const gguf_kv *)a)->key, ((const gguf_kv *)b)->key);
}

static int cmp_name_idx(const void *a, const void *b, void *ctx) {
    const gguf_file *f = ctx;
    return strcmp(f->tensors[*(const int64_t *)a].name, f->tensors[*(const int64_t *)b].name);
}

static int cmp_u64pair(const void *a, const void *b) {
    const uint64_t *x = a, *y = b;
    return x[0] < y[0] ? -1 : x[0] > y[0];
}

#define FAIL(...) do { errf(err, errlen, __VA_ARGS__); goto fail; } while (0)

static int parse_value(cur *c, gguf_kv *kv, const char *name, char *err, size_t errlen) {
    uint32_t t;
    if (take(c, &t, 4)) return errf(err, errlen, "%s: truncated in the type of key '%s'", name, kv->key);
    if (t >= GGUF_NVTYPES) return errf(err, errlen, "%s: key '%s' has unknown value type %u", name, kv->key, t);
    kv->type = (gguf_vtype)t;
    if (t == GGUF_STRING) {
        if (read_str(c, &kv->data, &kv->n))
            return errf(err, errlen, "%s: string value of '%s' runs past the end of the file", name, kv->key);
        return 0;
    }
    if (t != GGUF_ARRAY) {
        kv->data = c->p;
        if (take(c, NULL, (size_t)vsize[t]))
            return errf(err, errlen, "%s: value of '%s' runs past the end of the file", name, kv->key);
        if (t == GGUF_BOOL && kv->data[0] > 1)
            return errf(err, errlen, "%s: bool '%s' has value %u", name, kv->key, kv->data[0]);
        return 0;
    }
    uint32_t et;
    if (take(c, &et, 4) || take(c, &kv->n, 8))
        return errf(err, errlen, "%s: truncated array header of '%s'", name, kv->key);
    if (et >= GGUF_NVTYPES || et == GGUF_ARRAY)
        return errf(err, errlen, "%s: array '%s' has unsupported element type %u", name, kv->key, et);
    kv->arr_type = (gguf_vtype)et;
    kv->data = c->p;
    if (et == GGUF_STRING) {
        /* each string takes at least its 8-byte length */
        if (kv->n > c->left / 8)
            return errf(err, errlen, "%s: array '%s' claims %llu strings, more than the file holds",
                        name, kv->key, (unsigned long long)kv->n);
        kv->items = xmalloc((size_t)(kv->n ? kv->n : 1) * sizeof *kv->items);
        for (uint64_t i = 0; i < kv->n; i++) {
            const uint8_t *s; uint64_t len;
            kv->items[i] = c->p;
            if (read_str(c, &s, &len))
                return errf(err, errlen, "%s: string %llu of array '%s' runs past the end of the file",
                            name, (unsigned long long)i, kv->key);
        }
        return 0;
    }
    if (kv->n > c->left / (uint64_t)vsize[et])
        return errf(err, errlen, "%s: array '%s' claims %llu elements, more than the file holds",
                    name, kv->key, (unsigned long long)kv->n);
    take(c, NULL, (size_t)(kv->n * (uint64_t)vsize[et]));
    if (et == GGUF_BOOL)
        for (uint64_t i = 0; i < kv->n; i++)
            if (kv->data[i] > 1) return errf(err, errlen, "%s: bool array '%s' has value %u", name, kv->key, kv->data[i]);
    return 0;
}

gguf_file *gguf_parse(const uint8_t *buf, size_t len, const char *name, char *err, size_t errlen) {
    gguf_file *f = xcalloc(1, sizeof *f);
    f->path = xstrdup(name ? name : "gguf");
    f->buf = buf; f->len = len;
    name = f->path;
    cur c = {buf, len};
    uint8_t magic[4];
    uint64_t n_tensors, n_kv;
    if (take(&c, magic, 4)) FAIL("%s: file too short to be GGUF (%zu bytes)", name, len);
    if (memcmp(magic, "GGUF", 4)) FAIL("%s: not a GGUF file (bad magic)", name);
    if (take(&c, &f->version, 4)) FAIL("%s: truncated header", name);
    if (f->version == 1) FAIL("%s: GGUF version 1 is not supported (only 2 and 3)", name);
    if (f->version != 2 && f->version != 3) {
        if ((f->version & 0xffff) == 0) FAIL("%s: big-endian GGUF is not supported", name);
        FAIL("%s: unsupported GGUF version %u", name, f->version);
    }
    if (take(&c, &n_tensors, 8) || take(&c, &n_kv, 8)) FAIL("%s: truncated header", name);
    /* smallest kv: 8 (key len) + 1 + 4 + 1 bytes; smallest tensor info: 8+1+4+8+4+8 */
    if (n_kv > c.left / 14) FAIL("%s: header claims %llu metadata entries, more than the file holds", name, (unsigned long long)n_kv);
    if (n_tensors > c.left / 33) FAIL("%s: header claims %llu tensors, more than the file holds", name, (unsigned long long)n_tensors);

    f->kv = xcalloc((size_t)(n_kv ? n_kv : 1), sizeof *f->kv);
    for (uint64_t i = 0; i < n_kv; i++) {
        const uint8_t *k; uint64_t kl;
        if (read_str(&c, &k, &kl)) FAIL("%s: metadata key %llu runs past the end of the file", name, (unsigned long long)i);
        if (kl == 0 || kl > 65535) FAIL("%s: metadata key %llu has length %llu", name, (unsigned long long)i, (unsigned long long)kl);
        if (memchr(k, 0, kl)) FAIL("%s: metadata key %llu contains a NUL byte", name, (unsigned long long)i);
        f->kv[i].key = dup_n(k, kl);
        f->n_kv = (int64_t)i + 1;
        if (parse_value(&c, &f->kv[i], name, err, errlen)) goto fail;
    }
    /* duplicate keys: check on a sorted copy, keep file order */
    if (f->n_kv > 1) {
        gguf_kv *s = xmalloc((size_t)f->n_kv * sizeof *s);
        memcpy(s, f->kv, (size_t)f->n_kv * sizeof *s);
        qsort(s, (size_t)f->n_kv, sizeof *s, cmp_kv);
        for (int64_t i = 1; i < f->n_kv; i++)
            if (!strcmp(s[i].key, s[i - 1].key)) {
                errf(err, errlen, "%s: duplicate metadata key '%s'", name, s[i].key);
                free(s); goto fail;
            }
        free(s);
    }
    f->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find_kv(f, "general.alignment");
    if (al) {
        uint32_t a;
        if (al->type != GGUF_U32) FAIL("%s: general.alignment must be u32", name);
        memcpy(&a, al->data, 4);
        if (a == 0 || (a & (a - 1)) || a > (1u << 20)) FAIL("%s: general.alignment %u is not a power of two", name, a);
        f->alignment = a;
    }

    f->tensors = xcalloc((size_t)(n_tensors ? n_tensors : 1), sizeof *f->tensors);
    for (uint64_t i = 0; i < n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        const uint8_t *s; uint64_t sl; uint32_t nd;
        if (read_str(&c, &s, &sl)) FAIL("%s: tensor info %llu runs past the end of the file", name, (unsigned long long)i);
        if (sl == 0 || sl > 4096 || memchr(s, 0, sl)) FAIL("%s: tensor %llu has a bad name", name, (unsigned long long)i);
        t->name = dup_n(s, sl);
        f->n_tensors = (int64_t)i + 1;
        if (take(&c, &nd, 4)) FAIL("%s: tensor '%s': truncated info", name, t->name);
        if (nd < 1 || nd > GGUF_MAX_DIMS) FAIL("%s: tensor '%s' has %u dimensions (1..4 allowed)", name, t->name, nd);
        t->ndim = (int)nd;
        for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = 1;
        for (uint32_t d = 0; d < nd; d++) {
            if (take(&c, &t->ne[d], 8)) FAIL("%s: tensor '%s': truncated info", name, t->name);
            if (t->ne[d] <= 0) FAIL("%s: tensor '%s' has dimension %u = %lld", name, t->name, d, (long long)t->ne[d]);
        }
        if (take(&c, &t->type, 4) || take(&c, &t->offset, 8)) FAIL("%s: tensor '%s': truncated info", name, t->name);
        int ti = type_index(t->type);
        if (ti < 0) FAIL("%s: tensor '%s' has unknown ggml type %u", name, t->name, t->type);
        if (t->ne[0] % ggml_types[ti].blck)
            FAIL("%s: tensor '%s': first dimension %lld is not a multiple of the %s block (%d)",
                 name, t->name, (long long)t->ne[0], ggml_types[ti].name, ggml_types[ti].blck);
        uint64_t bytes = gguf_type_row_bytes(t->type, t->ne[0]);
        for (int d = 1; d < GGUF_MAX_DIMS; d++) {
            if ((uint64_t)t->ne[d] > UINT64_MAX / 2 / (bytes ? bytes : 1))
                FAIL("%s: tensor '%s' is impossibly large", name, t->name);
            bytes *= (uint64_t)t->ne[d];
        }
        t->nbytes = (size_t)bytes;
        if (t->offset % f->alignment) FAIL("%s: tensor '%s' offset %llu is not aligned to %zu", name, t->name,
                                           (unsigned long long)t->offset, f->alignment);
    }
    size_t hdr = len - c.left;
    f->data_off = (hdr + f->alignment - 1) / f->alignment * f->alignment;
    if (n_tensors && f->data_off > len) FAIL("%s: truncated before the tensor data", name);
    uint64_t data_len = len > f->data_off ? len - f->data_off : 0;
    /* every tensor inside the data section, none overlapping */
    uint64_t *spans = xmalloc((size_t)(n_tensors ? n_tensors : 1) * 2 * sizeof *spans);
    for (int64_t i = 0; i < f->n_tensors; i++) {
        gguf_tensor *t = &f->tensors[i];
        if (t->offset > data_len || t->nbytes > data_len - t->offset) {
            errf(err, errlen, "%s: tensor '%s' (%s, %zu bytes at offset %llu) lies outside the file (data section %llu bytes)",
                 name, t->name, gguf_type_name(t->type), t->nbytes, (unsigned long long)t->offset,
                 (unsigned long long)data_len);
            free(spans); goto fail;
        }
        t->data = buf + f->data_off + t->offset;
        spans[2 * i] = t->offset; spans[2 * i + 1] = t->offset + t->nbytes;
    }
    qsort(spans, (size_t)f->n_tensors, 2 * sizeof *spans, cmp_u64pair);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (spans[2 * i] < spans[2 * i - 1]) {
            errf(err, errlen, "%s: tensor data overlaps (offset %llu inside the previous tensor)", name,
                 (unsigned long long)spans[2 * i]);
            free(spans); goto fail;
        }
    free(spans);
    f->by_name = xmalloc((size_t)(f->n_tensors ? f->n_tensors : 1) * sizeof *f->by_name);
    for (int64_t i = 0; i < f->n_tensors; i++) f->by_name[i] = i;
    qsort_r(f->by_name, (size_t)f->n_tensors, sizeof *f->by_name, cmp_name_idx, f);
    for (int64_t i = 1; i < f->n_tensors; i++)
        if (!strcmp(f->tensors[f->by_name[i]].name, f->tensors[f->by_name[i - 1]].name))
            FAIL("%s: duplicate tensor name '%s'", name, f->tensors[f->by_name[i]].name);
    return f;
fail:
    gguf_close(f);
    return NULL;
}

gguf_file *gguf_open(const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) { errf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    struct stat st;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        errf(err, errlen, "%s: not a regular file", path); close(fd); return NULL;
    }
    size_t len = (size_t)st.st_size;
    if (len < 24) { errf(err, errlen, "%s: file too short to be GGUF (%zu bytes)", path, len); close(fd); return NULL; }
    void *map = map_file_readonly(fd, len);
    close(fd);
    if (map == MAP_FAILED) { errf(err, errlen, "%s: mmap: %s", path, strerror(errno)); return NULL; }
    gguf_file *f = gguf_parse(map, len, path, err, errlen);
    if (!f) { munmap(map, len); return NULL; }
    f->mapped = 1;
    return f;
}

void gguf_close(gguf_file *f) {
    if (!f) return;
    for (int64_t i = 0; i < f->n_kv; i++) { free(f->kv[i].key); free(f->kv[i].items); }
    for (int64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->kv); free(f->tensors); free(f->by_name);
    if (f->mapped) munmap((void *)f->buf, f->len);
    free(f->path);
    free(f);
}

const gguf_kv *gguf_find_kv(const gguf_file *f, const char *key) {
    for (int64_t i = 0; i < f->n_kv; i++) if (!strcmp(f->kv[i].key, key)) return &f->kv[i];
    return NULL;
}

const gguf_tensor *gguf_find_tensor(const gguf_file *f, const char *name) {
    int64_t lo = 0, hi = f->n_tensors - 1;
    while (lo <= hi) {
        int64_t mid = (lo + hi) / 2;
        int c = strcmp(f->tensors[f->by_name[mid]].name, name);
        if (!c) return &f->tensors[f->by_name[mid]];
        if (c < 0) lo = mid + 1; else hi = mid - 1;
    }
    return NULL;
}

int64_t gguf_tensor_numel(const gguf_tensor *t) {
    return t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3];
}

/* A scalar of integer type as int64 (u64 above INT64_MAX fails). */
static int scalar_i64(gguf_vtype t, const uint8_t *p, int64_t *out) {
    switch (t) {
    case GGUF_U8: case GGUF_BOOL: *out = p[0]; return 0;
    case GGUF_I8: *out = (int8_t)p[0]; return 0;
    case GGUF_U16: { uint16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_I16: { int16_t v; memcpy(&v, p, 2); *out = v; return 0; }
    case GGUF_U32: { uint32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_I32: { int32_t v; memcpy(&v, p, 4); *out = v; return 0; }
    case GGUF_U64: { uint64_t v; memcpy(&v, p, 8); if (v > INT64_MAX) return -1; *out = (int64_t)v; return 0; }
    case GGUF_I64: { int64_t v; memcpy(&v, p, 8); *out = v; return 0; }
    default: return -1;
    }
}

static int scalar_f64(gguf_vtype t, const uint8_t *p, double *out) {
    if (t == GGUF_F32) { float v; memcpy(&v, p, 4); *out = v; return 0; }
    if (t == GGUF_F64) { double v; memcpy(&v, p, 8); *out = v; return 0; }
    int64_t i;
    if (t == GGUF_BOOL || scalar_i64(t, p, &i)) return -1;
    *out = (double)i;
    return 0;
}

static const gguf_kv *need(const gguf_file *f, const char *key, char *err, size_t errlen) {
    const gguf_kv *kv = gguf_find_kv(f, key);
    if (!kv) errf(err, errlen, "%s: missing metadata key '%s'", f->path, key);
    return kv;
}

int gguf_get_i64(const gguf_file *f, const char *key, int64_t *out, char *err, size_t errlen) {
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv) return -1;
    if (kv->type == GGUF_BOOL || scalar_i64(kv->type, kv->data, out))
        return errf(err, errlen, "%s: '%s' should be an integer, is %s", f->path, key, vname[kv->type]);
    return 0;
}

int gguf_get_int(const gguf_file *f, const char *key, int *out, char *err, size_t errlen) {
    int64_t v;
    if (gguf_get_i64(f, key, &v, err, errlen)) return -1;
    if (v < -2147483647 || v > 2147483647) return errf(err, errlen, "%s: '%s' = %lld is out of range", f->path, key, (long long)v);
    *out = (int)v;
    return 0;
}

int gguf_get_f32(const gguf_file *f, const char *key, float *out, char *err, size_t errlen) {
    const gguf_kv *kv = need(f, key, err, errlen);
    double d;
    if (!kv) return -1;
    if (scalar_f64(kv->type, kv->data, &d))
        return errf(err, errlen, "%s: '%s' should be a number, is %s", f->path, key, vname[kv->type]);
    *out = (float)d;
    return 0;
}

int gguf_get_bool(const gguf_file *f, const char *key, int *out, char *err, size_t errlen) {
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv) return -1;
    if (kv->type != GGUF_BOOL) return errf(err, errlen, "%s: '%s' should be a bool, is %s", f->path, key, vname[kv->type]);
    *out = kv->data[0];
    return 0;
}

int gguf_get_str(const gguf_file *f, const char *key, const char **s, size_t *len, char *err, size_t errlen) {
    const gguf_kv *kv = need(f, key, err, errlen);
    if (!kv) return -1;
    if (kv->type != GGUF_STRING) return errf(err, errlen, "%s: '%s' should be a string, is %s", f->path, key, vname[kv->type]);
    *s = (const char *)kv->data; *len = (size_t)kv->n;
    return 0;
}

int gguf_arr_i64(const gguf_kv *kv, uint64_t i, int64_t *out) {
    if (kv->type != GGUF_ARRAY || i >= kv->n || kv->arr_type == GGUF_STRING) return -1;
    return scalar_i64(kv->arr_type, kv->data + i * (uint64_t)vsize[kv->arr_type], out);
}

int gguf_arr_f64(const gguf_kv *kv, uint64_t i, double *out) {
    if (kv->type != GGUF_ARRAY || i >= kv->n || kv->arr_type == GGUF_STRING) return -1;
    return scalar_f64(kv->arr_type, kv->data + i * (uint64_t)vsize[kv->arr_type], out);
}

int gguf_arr_str(const gguf_kv *kv, uint64_t i, const char **s, size_t *len) {
    if (kv->type != GGUF_ARRAY || i >= kv->n || kv->arr_type != GGUF_STRING) return -1;
    uint64_t l; memcpy(&l, kv->items[i], 8);
    *s = (const char *)kv->items[i] + 8; *len = (size_t)l;
    return 0;
}

/* ---- writer ------------------------------------------------------------- */

typedef struct { uint8_t *p; size_t n, cap; } bytes;

static void put(bytes *b, const void *d, size_t n) {
    if (b->n + n > b->cap) {
        b->cap = (b->n + n) * 2 + 256;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, d, n);
    b->n += n;
}
static void put_u32(bytes *b, uint32_t v) { put(b, &v, 4); }
static void put_u64(bytes *b, uint64_t v) { put(b, &v, 8); }
static void put_s(bytes *b, const char *s, size_t n) { put_u64(b, n); put(b, s, n); }

typedef struct {
    char *name;
    uint32_t type;
    int ndim;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data;
    gguf_fill_fn fill;
    void *ctx;
    uint64_t nbytes, offset;
} wtensor;

struct gguf_writer {
    bytes kv;           /* encoded key/values */
    uint64_t n_kv;
    wtensor *t;
    int64_t n_t, cap_t;
    size_t alignment;
};

gguf_writer *gguf_writer_new(void) {
    gguf_writer *w = xcalloc(1, sizeof *w);
    w->alignment = GGUF_DEFAULT_ALIGNMENT;
    return w;
}

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (int64_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->t); free(w->kv.p); free(w);
}

static void kv_head(gguf_writer *w, const char *key, gguf_vtype t) {
    put_s(&w->kv, key, strlen(key));
    put_u32(&w->kv, t);
    w->n_kv++;
}
void gguf_w_raw(gguf_writer *w, const char *key, gguf_vtype type, const void *b, size_t n) {
    kv_head(w, key, type); put(&w->kv, b, n);
}
void gguf_w_u32(gguf_writer *w, const char *key, uint32_t v) { kv_head(w, key, GGUF_U32); put(&w->kv, &v, 4); }
void gguf_w_i32(gguf_writer *w, const char *key, int32_t v) { kv_head(w, key, GGUF_I32); put(&w->kv, &v, 4); }
void gguf_w_u64(gguf_writer *w, const char *key, uint64_t v) { kv_head(w, key, GGUF_U64); put(&w->kv, &v, 8); }
void gguf_w_f32(gguf_writer *w, const char *key, float v) { kv_head(w, key, GGUF_F32); put(&w->kv, &v, 4); }
void gguf_w_bool(gguf_writer *w, const char *key, int v) { uint8_t b = v != 0; kv_head(w, key, GGUF_BOOL); put(&w->kv, &b, 1); }
void gguf_w_str_n(gguf_writer *w, const char *key, const char *s, size_t len) {
    kv_head(w, key, GGUF_STRING); put_s(&w->kv, s, len);
}
void gguf_w_str(gguf_writer *w, const char *key, const char *s) { gguf_w_str_n(w, key, s, strlen(s)); }
void gguf_w_arr(gguf_writer *w, const char *key, gguf_vtype et, const void *data, uint64_t n) {
    kv_head(w, key, GGUF_ARRAY); put_u32(&w->kv, et); put_u64(&w->kv, n);
    put(&w->kv, data, (size_t)n * (size_t)vsize[et]);
}
void gguf_w_arr_str(gguf_writer *w, const char *key, const char *const *s, const size_t *lens, uint64_t n) {
    kv_head(w, key, GGUF_ARRAY); put_u32(&w->kv, GGUF_STRING); put_u64(&w->kv, n);
    for (uint64_t i = 0; i < n; i++) put_s(&w->kv, s[i], lens ? lens[i] : strlen(s[i]));
}

static void add_tensor(gguf_writer *w, const char *name, uint32_t type, int ndim, const int64_t *ne,
                       const void *data, gguf_fill_fn fill, void *ctx) {
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? 2 * w->cap_t : 64;
        w->t = xrealloc(w->t, (size_t)w->cap_t * sizeof *w->t);
    }
    wtensor *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name); t->type = type; t->ndim = ndim;
    for (int d = 0; d < GGUF_MAX_DIMS; d++) t->ne[d] = d < ndim ? ne[d] : 1;
    t->data = data; t->fill = fill; t->ctx = ctx;
    t->nbytes = gguf_type_row_bytes(type, t->ne[0]) * (uint64_t)(t->ne[1] * t->ne[2] * t->ne[3]);
}

void gguf_w_tensor(gguf_writer *w, const char *name, uint32_t type, int ndim, const int64_t *ne, const void *data) {
    add_tensor(w, name, type, ndim, ne, data, NULL, NULL);
}
void gguf_w_tensor_fill(gguf_writer *w, const char *name, uint32_t type, int ndim, const int64_t *ne,
                        gguf_fill_fn fill, void *ctx) {
    add_tensor(w, name, type, ndim, ne, NULL, fill, ctx);
}

uint64_t gguf_writer_data_bytes(const gguf_writer *w) {
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++)
        off = (off + w->alignment - 1) / w->alignment * w->alignment + w->t[i].nbytes;
    return off;
}

int gguf_writer_write(gguf_writer *w, const char *path, gguf_progress_fn progress, void *pctx,
                      char *err, size_t errlen) {
    bytes h = {0};
    uint64_t off = 0;
    for (int64_t i = 0; i < w->n_t; i++) {
        if (!w->t[i].nbytes) { free(h.p); return errf(err, errlen, "%s: tensor '%s': %s cannot hold %lld values per row",
                                                      path, w->t[i].name, gguf_type_name(w->t[i].type), (long long)w->t[i].ne[0]); }
        off = (off + w->alignment - 1) / w->alignment * w->alignment;
        w->t[i].offset = off;
        off += w->t[i].nbytes;
    }
    uint64_t data_bytes = off;
    put(&h, "GGUF", 4); put_u32(&h, 3); put_u64(&h, (uint64_t)w->n_t); put_u64(&h, w->n_kv);
    put(&h, w->kv.p, w->kv.n);
    for (int64_t i = 0; i < w->n_t; i++) {
        wtensor *t = &w->t[i];
        put_s(&h, t->name, strlen(t->name));
        put_u32(&h, (uint32_t)t->ndim);
        for (int d = 0; d < t->ndim; d++) put_u64(&h, (uint64_t)t->ne[d]);
        put_u32(&h, t->type); put_u64(&h, t->offset);
    }
    size_t data_off = (h.n + w->alignment - 1) / w->alignment * w->alignment;
    size_t total = data_off + (size_t)data_bytes;
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int fd = open(tmp, O_RDWR | O_CREAT | O_TRUNC, 0644);
    if (fd < 0) { free(h.p); return errf(err, errlen, "%s: %s", tmp, strerror(errno)); }
    if (ftruncate(fd, (off_t)total)) {
        errf(err, errlen, "%s: cannot size to %zu bytes: %s", tmp, total, strerror(errno));
        close(fd); unlink(tmp); free(h.p); return -1;
    }
    uint8_t *map = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        close(fd); free(h.p); unlink(tmp);
        return errf(err, errlen, "%s: mmap: %s", tmp, strerror(errno));
    }
    memcpy(map, h.p, h.n);
    memset(map + h.n, 0, data_off - h.n);
    free(h.p);
    uint64_t done = 0;
    int rc = 0;
    for (int64_t i = 0; i < w->n_t && !rc; i++) {
        wtensor *t = &w->t[i];
        uint8_t *dst = map + data_off + t->offset;
        if (t->fill) rc = t->fill(t->ctx, dst, (size_t)t->nbytes, err, errlen);
        else if (t->data) memcpy(dst, t->data, (size_t)t->nbytes);
        else memset(dst, 0, (size_t)t->nbytes);
        done += t->nbytes;
        if (progress) progress(pctx, done, data_bytes, t->name);
    }
    munmap(map, total);
    /* the next load then reads the file back in 2 MiB folios (util.h) */
    if (!rc) file_drop_cache(fd);
    close(fd);
    if (!rc && rename(tmp, path)) rc = errf(err, errlen, "%s: rename: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}
