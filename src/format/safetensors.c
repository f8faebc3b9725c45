/*
 * safetensors.c - see safetensors.h.
 *
 * Reading is two steps: st_parse() validates one file's header against the
 * file's real size (every claim checked: dtype known, shape sane, byte size
 * = dtype x shape, offsets inside the data section, no two tensors
 * overlapping), then st_finish() sorts all tensors by name and rejects
 * duplicates across shards.  Data pointers point into the read-only mmap.
 */
#include "format/safetensors.h"
#include "util/util.h"
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static const struct { const char *name; size_t size; } dtypes[ST_NDTYPES] = {
    [ST_BF16] = {"BF16", 2}, [ST_F16] = {"F16", 2}, [ST_F32] = {"F32", 4},
    [ST_F64] = {"F64", 8}, [ST_F8_E4M3] = {"F8_E4M3", 1}, [ST_F8_E8M0] = {"F8_E8M0", 1},
    [ST_I8] = {"I8", 1}, [ST_U8] = {"U8", 1}, [ST_I16] = {"I16", 2},
    [ST_I32] = {"I32", 4}, [ST_I64] = {"I64", 8}, [ST_BOOL] = {"BOOL", 1},
};

const char *st_dtype_name(st_dtype t) { return t < ST_NDTYPES ? dtypes[t].name : "?"; }
size_t st_dtype_size(st_dtype t) { return t < ST_NDTYPES ? dtypes[t].size : 0; }
int st_dtype_from_name(const char *name, st_dtype *t) {
    for (int i = 0; i < ST_NDTYPES; i++)
        if (!strcmp(name, dtypes[i].name)) { *t = (st_dtype)i; return 0; }
    return -1;
}

int64_t st_numel(const st_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

typedef struct { size_t b, e; const char *name; } span;
static int span_cmp(const void *a, const void *b) {
    const span *x = a, *y = b;
    return x->b < y->b ? -1 : x->b > y->b ? 1 : (x->e < y->e ? -1 : x->e > y->e);
}

static int parse_entry(st_set *set, int fidx, const char *path, const char *key, json_t *v,
                       const uint8_t *data, size_t data_len, span *sp, char *err, size_t errlen) {
    if (!json_is_object(v)) return errf(err, errlen, "%s: tensor '%s': entry is not an object", path, key);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd) || !json_is_array(js) || !json_is_array(jo) || json_array_size(jo) != 2)
        return errf(err, errlen, "%s: tensor '%s': needs dtype, shape and data_offsets[2]", path, key);
    st_tensor t = {0};
    if (st_dtype_from_name(json_string_value(jd), &t.dtype))
        return errf(err, errlen, "%s: tensor '%s': unknown dtype '%s'", path, key, json_string_value(jd));
    if (json_array_size(js) > ST_MAX_DIMS)
        return errf(err, errlen, "%s: tensor '%s': too many dimensions", path, key);
    t.ndim = (int)json_array_size(js);
    /* Byte size with overflow checks: dims are bounded so the product of
     * up to 8 of them cannot wrap before we compare against the file. */
    unsigned __int128 bytes = st_dtype_size(t.dtype);
    for (int i = 0; i < t.ndim; i++) {
        json_t *d = json_array_get(js, (size_t)i);
        if (!json_is_integer(d) || json_integer_value(d) < 0 || json_integer_value(d) > ((int64_t)1 << 40))
            return errf(err, errlen, "%s: tensor '%s': bad shape", path, key);
        t.shape[i] = json_integer_value(d);
        bytes *= (uint64_t)t.shape[i];
        if (bytes > ((unsigned __int128)1 << 62))
            return errf(err, errlen, "%s: tensor '%s': shape too large", path, key);
    }
    json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
    if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
        json_integer_value(e) < json_integer_value(b))
        return errf(err, errlen, "%s: tensor '%s': bad data_offsets", path, key);
    size_t ob = (size_t)json_integer_value(b), oe = (size_t)json_integer_value(e);
    if (oe > data_len)
        return errf(err, errlen, "%s: tensor '%s': data_offsets [%zu,%zu) beyond the end of the file (data is %zu bytes; truncated?)",
                    path, key, ob, oe, data_len);
    if ((unsigned __int128)(oe - ob) != bytes)
        return errf(err, errlen, "%s: tensor '%s': %zu bytes stored but %s x shape needs %llu",
                    path, key, oe - ob, st_dtype_name(t.dtype), (unsigned long long)bytes);
    t.nbytes = oe - ob;
    t.data = data + ob;
    t.file = fidx;
    t.name = xstrdup(key);
    sp->b = ob; sp->e = oe; sp->name = t.name;
    set->tensors = xrealloc(set->tensors, (size_t)(set->n_tensors + 1) * sizeof(st_tensor));
    set->tensors[set->n_tensors++] = t;
    return 0;
}

int st_parse(st_set *set, int fidx, const char *path, const uint8_t *buf, size_t len,
             char *err, size_t errlen) {
    if (len < 8) return errf(err, errlen, "%s: file too small for a safetensors header (%zu bytes)", path, len);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > len - 8 || hlen > (100u << 20))
        return errf(err, errlen, "%s: header length %llu exceeds the file size %zu (truncated or not safetensors)",
                    path, (unsigned long long)hlen, len);
    json_error_t je;
    json_t *root = json_loadb((const char *)buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return errf(err, errlen, "%s: header is not valid JSON: %s", path, je.text);
    if (!json_is_object(root)) { json_decref(root); return errf(err, errlen, "%s: header is not a JSON object", path); }
    const uint8_t *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    int first = set->n_tensors, rc = 0;
    size_t nspan = 0;
    span *spans = xmalloc((json_object_size(root) + 1) * sizeof(span));
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) continue;
        if ((rc = parse_entry(set, fidx, path, key, v, data, data_len, &spans[nspan], err, errlen))) break;
        nspan++;
    }
    if (!rc) {
        qsort(spans, nspan, sizeof(span), span_cmp);
        for (size_t i = 1; i < nspan; i++)
            if (spans[i].b < spans[i - 1].e && spans[i].e > spans[i].b) {
                rc = errf(err, errlen, "%s: tensors '%s' and '%s' overlap in the data section", path,
                          spans[i - 1].name, spans[i].name);
                break;
            }
    }
    free(spans);
    json_decref(root);
    if (rc) {
        for (int i = first; i < set->n_tensors; i++) free(set->tensors[i].name);
        set->n_tensors = first;
    }
    return rc;
}

int st_open_file(st_set *set, const char *path, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY);
    if (fd < 0) return errf(err, errlen, "%s: %s", path, strerror(errno));
    struct stat stt;
    if (fstat(fd, &stt) < 0) { close(fd); return errf(err, errlen, "%s: %s", path, strerror(errno)); }
    size_t len = (size_t)stt.st_size;
    void *map = len ? map_file_readonly(fd, len) : NULL;
    close(fd);
    if (len && map == MAP_FAILED) return errf(err, errlen, "%s: mmap: %s", path, strerror(errno));
    int fidx = set->n_files;
    set->files = xrealloc(set->files, (size_t)(fidx + 1) * sizeof(st_file));
    set->files[fidx] = (st_file){xstrdup(path), map, len};
    set->n_files++;
    return st_parse(set, fidx, path, map, len, err, errlen);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(((const st_tensor *)a)->name, ((const st_tensor *)b)->name);
}

int st_finish(st_set *set, char *err, size_t errlen) {
    qsort(set->tensors, (size_t)set->n_tensors, sizeof(st_tensor), name_cmp);
    for (int i = 1; i < set->n_tensors; i++)
        if (!strcmp(set->tensors[i].name, set->tensors[i - 1].name))
            return errf(err, errlen, "%s: tensor '%s' appears twice (also in %s)",
                        set->files[set->tensors[i].file].path, set->tensors[i].name,
                        set->files[set->tensors[i - 1].file].path);
    return 0;
}

const st_tensor *st_find(const st_set *set, const char *name) {
    st_tensor key = {.name = (char *)name};
    return bsearch(&key, set->tensors, (size_t)set->n_tensors, sizeof(st_tensor), name_cmp);
}

/* Open the shards named by an index file and check the weight map. */
static int open_indexed(st_set *set, const char *dir, const char *index_path, char *err, size_t errlen) {
    size_t len;
    char *txt = read_file(index_path, &len, err, errlen);
    if (!txt) return -1;
    json_error_t je;
    json_t *root = json_loadb(txt, len, 0, &je);
    free(txt);
    if (!root) return errf(err, errlen, "%s: not valid JSON: %s (line %d)", index_path, je.text, je.line);
    json_t *wm = json_object_get(root, "weight_map");
    int rc = 0;
    if (!json_is_object(wm)) { json_decref(root); return errf(err, errlen, "%s: no \"weight_map\" object", index_path); }
    /* distinct shard names, in first-seen order */
    const char *key;
    json_t *v;
    char **shards = NULL;
    int nsh = 0;
    json_object_foreach(wm, key, v) {
        if (!json_is_string(v)) { rc = errf(err, errlen, "%s: weight_map[\"%s\"] is not a file name", index_path, key); break; }
        const char *f = json_string_value(v);
        if (strchr(f, '/') || !strcmp(f, "..")) { rc = errf(err, errlen, "%s: shard name '%s' must be a plain file name", index_path, f); break; }
        int seen = 0;
        for (int i = 0; i < nsh; i++) if (!strcmp(shards[i], f)) { seen = 1; break; }
        if (!seen) { shards = xrealloc(shards, (size_t)(nsh + 1) * sizeof(char *)); shards[nsh++] = xstrdup(f); }
    }
    char path[4096];
    for (int i = 0; !rc && i < nsh; i++)
        rc = st_open_file(set, path_join(path, sizeof path, dir, shards[i]), err, errlen);
    if (!rc) rc = st_finish(set, err, errlen);
    /* every indexed tensor must exist, in the shard the index names */
    if (!rc) json_object_foreach(wm, key, v) {
        const st_tensor *t = st_find(set, key);
        if (!t) { rc = errf(err, errlen, "%s: tensor '%s' is listed in the index but missing from %s", index_path, key, json_string_value(v)); break; }
        const char *fp = set->files[t->file].path, *base = strrchr(fp, '/');
        if (strcmp(base ? base + 1 : fp, json_string_value(v))) {
            rc = errf(err, errlen, "%s: tensor '%s' is in %s, but the index says %s", index_path, key, fp, json_string_value(v));
            break;
        }
    }
    if (!rc && (size_t)set->n_tensors != json_object_size(wm)) {
        for (int i = 0; i < set->n_tensors; i++)
            if (!json_object_get(wm, set->tensors[i].name)) {
                rc = errf(err, errlen, "%s: tensor '%s' is not listed in %s", set->files[set->tensors[i].file].path,
                          set->tensors[i].name, index_path);
                break;
            }
    }
    for (int i = 0; i < nsh; i++) free(shards[i]);
    free(shards);
    json_decref(root);
    return rc;
}

int st_open_dir(st_set *set, const char *dir, char *err, size_t errlen) {
    char path[4096];
    memset(set, 0, sizeof *set);
    path_join(path, sizeof path, dir, "model.safetensors.index.json");
    if (access(path, F_OK) == 0) return open_indexed(set, dir, path, err, errlen);
    path_join(path, sizeof path, dir, "model.safetensors");
    if (access(path, F_OK) != 0)
        return errf(err, errlen, "%s: no model.safetensors.index.json or model.safetensors", dir);
    if (st_open_file(set, path, err, errlen)) return -1;
    return st_finish(set, err, errlen);
}

void st_close(st_set *set) {
    for (int i = 0; i < set->n_tensors; i++) free(set->tensors[i].name);
    for (int i = 0; i < set->n_files; i++) {
        if (set->files[i].map && set->files[i].map_len) munmap(set->files[i].map, set->files[i].map_len);
        free(set->files[i].path);
    }
    free(set->tensors);
    free(set->files);
    memset(set, 0, sizeof *set);
}

/* ---- writer ------------------------------------------------------------- */

typedef struct {
    char *name;
    st_dtype dtype;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    const void *data;
    size_t nbytes;
    int owned;
} wt;

struct st_writer { wt *t; int n; };

st_writer *st_writer_new(void) { return xcalloc(1, sizeof(st_writer)); }

static void writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                       const int64_t *shape, const void *data, size_t nbytes, int owned) {
    w->t = xrealloc(w->t, (size_t)(w->n + 1) * sizeof(wt));
    wt *t = &w->t[w->n++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->dtype = dtype;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->data = data;
    t->nbytes = nbytes;
    t->owned = owned;
}
void st_writer_add(st_writer *w, const char *name, st_dtype dtype, int ndim,
                   const int64_t *shape, const void *data, size_t nbytes) {
    writer_add(w, name, dtype, ndim, shape, data, nbytes, 0);
}
void st_writer_add_owned(st_writer *w, const char *name, st_dtype dtype, int ndim,
                         const int64_t *shape, void *data, size_t nbytes) {
    writer_add(w, name, dtype, ndim, shape, data, nbytes, 1);
}

size_t st_writer_total_bytes(const st_writer *w) {
    size_t n = 0;
    for (int i = 0; i < w->n; i++) n += w->t[i].nbytes;
    return n;
}

/* Larger element sizes first, then by name: contiguous data stays aligned
 * to each tensor's element size (the header is padded to 8 bytes). */
static int wt_cmp(const void *a, const void *b) {
    const wt *x = a, *y = b;
    size_t sx = st_dtype_size(x->dtype), sy = st_dtype_size(y->dtype);
    if (sx != sy) return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int st_writer_write(st_writer *w, const char *path, char *err, size_t errlen) {
    qsort(w->t, (size_t)w->n, sizeof(wt), wt_cmp);
    json_t *h = json_object();
    json_object_set_new(h, "__metadata__", json_pack("{s:s}", "format", "pt"));
    size_t off = 0;
    for (int i = 0; i < w->n; i++) {
        json_t *shape = json_array();
        for (int d = 0; d < w->t[i].ndim; d++) json_array_append_new(shape, json_integer(w->t[i].shape[d]));
        json_object_set_new(h, w->t[i].name,
                            json_pack("{s:s,s:o,s:[I,I]}", "dtype", st_dtype_name(w->t[i].dtype), "shape", shape,
                                      "data_offsets", (json_int_t)off, (json_int_t)(off + w->t[i].nbytes)));
        off += w->t[i].nbytes;
    }
    char *hdr = json_dumps(h, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(h);
    size_t hl = strlen(hdr), pad = (8 - (hl % 8)) % 8;
    FILE *f = fopen(path, "wb");
    if (!f) { free(hdr); return errf(err, errlen, "%s: %s", path, strerror(errno)); }
    uint8_t lenb[8];
    uint64_t total = hl + pad;
    for (int i = 0; i < 8; i++) lenb[i] = (uint8_t)(total >> (8 * i));
    int bad = fwrite(lenb, 1, 8, f) != 8 || fwrite(hdr, 1, hl, f) != hl;
    for (size_t i = 0; i < pad; i++) bad |= fputc(' ', f) == EOF;
    for (int i = 0; i < w->n && !bad; i++)
        bad |= w->t[i].nbytes && fwrite(w->t[i].data, 1, w->t[i].nbytes, f) != w->t[i].nbytes;
    bad |= fclose(f) != 0;
    free(hdr);
    return bad ? errf(err, errlen, "%s: write error", path) : 0;
}

void st_writer_free(st_writer *w) {
    if (!w) return;
    for (int i = 0; i < w->n; i++) {
        free(w->t[i].name);
        if (w->t[i].owned) free((void *)w->t[i].data);
    }
    free(w->t);
    free(w);
}
