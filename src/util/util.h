/*
 * util.h - small helpers shared by every module: error strings, files,
 * clocks, checked allocation.
 */
#ifndef DSV4_UTIL_H
#define DSV4_UTIL_H
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Write a formatted one-line error into err (if non-NULL) and return -1. */
int errf(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Read a whole file into a NUL-terminated malloc'd buffer. NULL + err on
 * failure. */
char *read_file(const char *path, size_t *len, char *err, size_t errlen);
int write_file(const char *path, const void *data, size_t len, char *err, size_t errlen);

/* Monotonic seconds. */
double now_sec(void);

/* malloc/calloc/realloc that abort with a message on out-of-memory: used
 * only for small bookkeeping allocations, never for sizes taken from a
 * file (those are checked and reported as errors). */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t m);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* Growable NUL-terminated byte string: {0} is an empty one; p stays NULL
 * until the first add.  Free with free(b.p). */
typedef struct {
    char *p;
    size_t n, cap;
} strbuf;
void strbuf_add(strbuf *b, const void *s, size_t n);
void strbuf_str(strbuf *b, const char *s);

/* Join a directory and a file name into buf. */
const char *path_join(char *buf, size_t buflen, const char *dir, const char *name);

/* Peak resident set size of this process in MiB (from /proc/self/status). */
double peak_rss_mb(void);
double current_rss_mb(void);

/* Map the pages of a read-only file mapping into this process's page tables
 * now, rather than one minor fault per 4 KiB page during the first tokens
 * (llama.cpp does the same with MAP_POPULATE).  On a cold page cache this
 * reads the file.  DSV4_PREFAULT=0 in the environment turns it off, for
 * models streamed from SSD that do not fit in memory. */
void map_prefault(const void *map, size_t len);

/* Map len bytes of the open file fd read-only and shared, at an address
 * aligned to 2 MiB and advised MADV_HUGEPAGE, so that the kernel can map
 * the file's page cache in 2 MiB entries where it holds 2 MiB folios (a
 * read of the file fills it with them on ext4/xfs since Linux 6.x).  One
 * core then streams about 15% faster: fewer TLB misses, and the hardware
 * prefetcher is not stopped at every 4 KiB page (1 thread, 1 GiB: 2 MiB
 * pages 28-30 GB/s, 4 KiB 23-26; decode of the Flash slice 11.3-11.4
 * against 9.2-10.5 tok/s).  DSV4_HUGEPAGE=0 maps plainly; DSV4_REREAD=1
 * first drops the file's page cache (clean pages no process maps), so
 * that a file cached in 4 KiB folios is read back in 2 MiB ones.  Returns
 * MAP_FAILED on error (errno set); munmap(map, len) undoes it. */
void *map_file_readonly(int fd, size_t len);

/* Drop the page cache of the file fd after writing it (fdatasync, then
 * POSIX_FADV_DONTNEED): pages left behind by writes are 4 KiB folios,
 * which stay until evicted; dropped, the first load reads the file back in
 * 2 MiB folios.  Best effort: errors are ignored. */
void file_drop_cache(int fd);

/* Fraction (0..1) of the mapping [map, map+len) that the kernel maps in
 * 2 MiB pages now (FilePmdMapped of /proc/self/smaps); -1 if unknown. */
double map_hugepage_fraction(const void *map, size_t len);

#endif
