/*
 * default_model.c - the built-in default model: `dsv4 run/chat/serve`
 * without -m use a small random-weight checkpoint (preset "default", seed 0,
 * real vocabulary and tokenizer) that is generated on first use into the
 * user's cache directory and reused afterwards.
 *
 * Concurrency: each process generates into its own temporary directory
 * next to the final one and rename()s it into place.  rename of a directory
 * is atomic and fails if the target already exists (non-empty), so the
 * final directory, when it exists, is always complete; a loser of the race
 * drops its copy and uses the winner's.
 */
#include "model/gen.h"
#include "util/util.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static int cache_root(char *buf, size_t n, char *err, size_t errlen) {
    const char *e;
    if ((e = getenv("DSV4_CACHE_DIR")) && *e) snprintf(buf, n, "%s", e);
    else if ((e = getenv("XDG_CACHE_HOME")) && *e) snprintf(buf, n, "%s/dsv4", e);
    else if ((e = getenv("HOME")) && *e) snprintf(buf, n, "%s/.cache/dsv4", e);
    else return errf(err, errlen, "no cache directory for the default model: set DSV4_CACHE_DIR or HOME");
    return 0;
}

static int is_complete(const char *dir) {
    char p[4096];
    struct stat st;
    return stat(path_join(p, sizeof p, dir, "model.safetensors.index.json"), &st) == 0 &&
           stat(path_join(p, sizeof p, dir, "config.json"), &st) == 0;
}

/* Remove a flat directory (the generator writes no subdirectories). */
static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        char p[4096];
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) unlink(path_join(p, sizeof p, dir, e->d_name));
        closedir(d);
    }
    rmdir(dir);
}

/* Temporary directories left by processes that died mid-generation (older
 * than an hour, so never one still being written). */
static void remove_stale_tmp(const char *root) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    char prefix[64], p[4096];
    snprintf(prefix, sizeof prefix, ".%s.tmp.", DSV4_DEFAULT_MODEL_NAME);
    time_t now = time(NULL);
    while ((e = readdir(d))) {
        struct stat st;
        if (strncmp(e->d_name, prefix, strlen(prefix))) continue;
        path_join(p, sizeof p, root, e->d_name);
        if (!stat(p, &st) && S_ISDIR(st.st_mode) && now - st.st_mtime > 3600) remove_dir(p);
    }
    closedir(d);
}

int dsv4_default_model_dir(char *out, size_t outlen, char *err, size_t errlen) {
    char root[3072], dir[4096], tmp[4096];
    if (cache_root(root, sizeof root, err, errlen)) return -1;
    snprintf(dir, sizeof dir, "%s/%s", root, DSV4_DEFAULT_MODEL_NAME);
    if (strlen(dir) + 1 > outlen) return errf(err, errlen, "default model path too long");
    if (is_complete(dir)) {
        snprintf(out, outlen, "%s", dir);
        return 0;
    }
    if (dsv4_gen_mkdir_p(root, err, errlen)) return -1;
    remove_stale_tmp(root);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(tmp, sizeof tmp, "%s/.%s.tmp.%ld.%ld", root, DSV4_DEFAULT_MODEL_NAME, (long)getpid(), (long)ts.tv_nsec);
    dsv4_gen_opts o;
    if (dsv4_gen_preset("default", &o, err, errlen)) return -1;
    if (dsv4_gen_write(&o, tmp, err, errlen)) {
        remove_dir(tmp);
        return -1;
    }
    if (rename(tmp, dir) != 0) {
        int e = errno;
        remove_dir(tmp);
        if (!is_complete(dir))
            return errf(err, errlen, "%s: cannot install the default model: %s", dir, strerror(e));
    }
    snprintf(out, outlen, "%s", dir);
    return 0;
}
