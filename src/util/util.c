/* util.c - see util.h. */
#include "util/util.h"
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

int errf(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

char *read_file(const char *path, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) { errf(err, errlen, "%s: %s", path, strerror(errno)); return NULL; }
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (!buf) { fclose(f); errf(err, errlen, "%s: out of memory", path); return NULL; }
    for (;;) {
        if (n + 1 >= cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) { free(buf); fclose(f); errf(err, errlen, "%s: out of memory", path); return NULL; }
            buf = nb; cap *= 2;
        }
        size_t r = fread(buf + n, 1, cap - n - 1, f);
        n += r;
        if (r == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) { free(buf); errf(err, errlen, "%s: read error", path); return NULL; }
    buf[n] = 0;
    if (len) *len = n;
    return buf;
}

int write_file(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    FILE *f = fopen(path, "wb");
    if (!f) return errf(err, errlen, "%s: %s", path, strerror(errno));
    size_t w = fwrite(data, 1, len, f);
    if (fclose(f) != 0 || w != len) return errf(err, errlen, "%s: write error", path);
    return 0;
}

double now_sec(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void oom(size_t n) {
    fprintf(stderr, "dsv4: out of memory allocating %zu bytes\n", n);
    abort();
}
void *xmalloc(size_t n) { void *p = malloc(n ? n : 1); if (!p) oom(n); return p; }
void *xcalloc(size_t n, size_t m) { void *p = calloc(n ? n : 1, m ? m : 1); if (!p) oom(n * m); return p; }
void *xrealloc(void *p, size_t n) { void *q = realloc(p, n ? n : 1); if (!q) oom(n); return q; }
char *xstrdup(const char *s) { size_t n = strlen(s) + 1; char *p = xmalloc(n); memcpy(p, s, n); return p; }

const char *path_join(char *buf, size_t buflen, const char *dir, const char *name) {
    size_t dl = strlen(dir);
    if (dl && dir[dl - 1] == '/') snprintf(buf, buflen, "%s%s", dir, name);
    else snprintf(buf, buflen, "%s/%s", dir, name);
    return buf;
}

static double rss_field(const char *key) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return 0;
    char line[256];
    double mb = 0;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (!strncmp(line, key, kl)) { mb = atof(line + kl) / 1024.0; break; }
    fclose(f);
    return mb;
}
double peak_rss_mb(void) { return rss_field("VmHWM:"); }
double current_rss_mb(void) { return rss_field("VmRSS:"); }

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

void map_prefault(const void *map, size_t len) {
    const char *env = getenv("DSV4_PREFAULT");
    if (!map || !len || (env && !strcmp(env, "0"))) return;
    /* Linux >= 5.14 does it in one call; older kernels: touch each page. */
    if (madvise((void *)map, len, MADV_POPULATE_READ) == 0) return;
    long pg = sysconf(_SC_PAGESIZE);
    if (pg <= 0) pg = 4096;
    volatile unsigned char sink = 0;
    for (size_t off = 0; off < len; off += (size_t)pg) sink ^= ((const unsigned char *)map)[off];
    (void)sink;
}

#define HUGE_2M ((size_t)2 << 20)

void *map_file_readonly(int fd, size_t len) {
    const char *env = getenv("DSV4_HUGEPAGE"), *reread = getenv("DSV4_REREAD");
    /* pages cached in 4 KiB folios (the file was written or copied here)
     * stay so until evicted: on request, drop the file's clean, unmapped
     * pages, so that this load reads it back in 2 MiB folios */
    if (len && reread && !strcmp(reread, "1")) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
    if (!len || (env && !strcmp(env, "0")) || len < HUGE_2M) return mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    /* reserve len + 2 MiB of address space, map the file at the first
     * 2 MiB boundary inside it, give back the rest */
    size_t span = len + HUGE_2M;
    uint8_t *res = mmap(NULL, span, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (res == MAP_FAILED) return mmap(NULL, len, PROT_READ, MAP_SHARED, fd, 0);
    uint8_t *at = (uint8_t *)(((uintptr_t)res + HUGE_2M - 1) & ~(uintptr_t)(HUGE_2M - 1));
    void *map = mmap(at, len, PROT_READ, MAP_SHARED | MAP_FIXED, fd, 0);
    if (map == MAP_FAILED) {
        int e = errno;
        munmap(res, span);
        errno = e;
        return MAP_FAILED;
    }
    if (at > res) munmap(res, (size_t)(at - res));
    size_t tail = (size_t)(res + span - (at + len));
    if (tail) munmap(at + len, tail);
#ifdef MADV_HUGEPAGE
    madvise(map, len, MADV_HUGEPAGE);   /* advice only: THP may be off */
#endif
    return map;
}

void file_drop_cache(int fd) {
    if (fd < 0) return;
    if (fdatasync(fd) == 0) (void)posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
}

double map_hugepage_fraction(const void *map, size_t len) {
    if (!map || !len) return -1;
    FILE *f = fopen("/proc/self/smaps", "r");
    if (!f) return -1;
    char line[512];
    uintptr_t lo = (uintptr_t)map, hi = lo + len;
    double kb = 0;
    int in = 0, seen = 0;
    while (fgets(line, sizeof line, f)) {
        unsigned long a, b;
        /* a VMA header: "start-end perms ..."; field lines start with a name */
        if (sscanf(line, "%lx-%lx ", &a, &b) == 2 && strchr(line, '-') < strchr(line, ' ')) {
            in = a < hi && b > lo;
            seen |= in;
            continue;
        }
        if (in && !strncmp(line, "FilePmdMapped:", 14)) kb += atof(line + 14);
    }
    fclose(f);
    return seen ? kb * 1024.0 / (double)len : -1;
}

void strbuf_add(strbuf *b, const void *s, size_t n) {
    if (b->n + n + 1 > b->cap) {
        b->cap = (b->n + n + 1) * 2;
        b->p = xrealloc(b->p, b->cap);
    }
    if (n) memcpy(b->p + b->n, s, n);
    b->n += n;
    b->p[b->n] = 0;
}

void strbuf_str(strbuf *b, const char *s) { strbuf_add(b, s, strlen(s)); }
