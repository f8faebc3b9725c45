/*
 * test_cli_logits.c - the `dsv4 logits` and `dsv4 info` command-line
 * contracts (row layout, generated ids, MTP rows, errors), run through the
 * built binary ($DSV4) on the golden checkpoint.
 */
#include "check.h"
#include "format/safetensors.h"
#include "util/util.h"
#include <sys/wait.h>
#include <math.h>
#include <unistd.h>

#define GOLD DATA("golden/tiny-a")
static const char *dsv4;
static char out[256];

static int run(const char *args) {
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s %s >/tmp/dsv4_cli_%d.log 2>&1", dsv4, args, (int)getpid());
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 255;
}

static int log_has(const char *frag) {
    char p[64];
    snprintf(p, sizeof p, "/tmp/dsv4_cli_%d.log", (int)getpid());
    char *t = read_file(p, NULL, NULL, 0);
    int ok = t && strstr(t, frag);
    free(t);
    return ok;
}

static double rel(const float *a, const float *b, int n) {
    double num = 0, den = 0;
    for (int i = 0; i < n; i++) { num += (a[i] - b[i]) * (double)(a[i] - b[i]); den += (double)b[i] * b[i]; }
    return sqrt(num / den);
}

TEST(logits_rows_and_ids) {
    char err[256], args[1024];
    st_set g = {0}, o = {0};
    CHECK(st_open_file(&g, GOLD "/logits_fp32.safetensors", err, sizeof err) == 0 && st_finish(&g, err, sizeof err) == 0, "%s", err);
    const float *prompt = st_find(&g, "p5.prompt_logits")->data, *dec = st_find(&g, "p5.decode_logits")->data;
    const int32_t *gen = st_find(&g, "p5.gen_ids")->data;
    int V = 1024;
    /* --all --decode 4: 5 + 3 rows */
    snprintf(args, sizeof args, "logits -m %s --ids 655,689,279,233,154 --all --decode 4 --mode fp32 --mtp -o %s", GOLD, out);
    CHECK(run(args) == 0, "logits --all runs");
    CHECK(st_open_file(&o, out, err, sizeof err) == 0 && st_finish(&o, err, sizeof err) == 0, "%s", err);
    const st_tensor *l = st_find(&o, "logits"), *ids = st_find(&o, "ids"), *mtp = st_find(&o, "mtp_logits");
    CHECK(l && l->ndim == 2 && l->shape[0] == 8 && l->shape[1] == V && l->dtype == ST_F32, "logits [8, V] F32");
    CHECK(ids && ids->dtype == ST_I32 && ids->shape[0] == 4, "ids [4] I32");
    CHECK(mtp && mtp->shape[0] == 5 && mtp->shape[1] == V, "mtp_logits [5, V]");
    if (l && ids && l->shape[0] == 8) {
        const float *L = l->data;
        const int32_t *I = ids->data;
        for (int i = 0; i < 4; i++) CHECK(I[i] == gen[i], "generated id %d: %d vs %d", i, I[i], gen[i]);
        for (int r = 0; r < 5; r++) CHECK(rel(L + (size_t)r * V, prompt + (size_t)r * V, V) < 1e-4, "prompt row %d", r);
        for (int r = 0; r < 3; r++) CHECK(rel(L + (size_t)(5 + r) * V, dec + (size_t)r * V, V) < 1e-4, "decode row %d", r);
    }
    st_close(&o);
    /* --prefill 3, teacher forcing, no --all: rows from the last prefill position */
    snprintf(args, sizeof args, "logits -m %s --ids 655,689,279,233,154 --prefill 3 --decode 2 --mode fp32 -o %s", GOLD, out);
    CHECK(run(args) == 0, "logits --prefill runs");
    CHECK(st_open_file(&o, out, err, sizeof err) == 0 && st_finish(&o, err, sizeof err) == 0, "%s", err);
    l = st_find(&o, "logits");
    CHECK(l && l->shape[0] == 4, "rows: 3 positions (2..4) + 1 generated");
    if (l && l->shape[0] == 4) {
        for (int r = 0; r < 3; r++) CHECK(rel((const float *)l->data + (size_t)r * V, prompt + (size_t)(2 + r) * V, V) < 1e-4, "row %d", r);
        CHECK(rel((const float *)l->data + (size_t)3 * V, dec, V) < 1e-4, "generated row");
    }
    st_close(&o);
    st_close(&g);
    unlink(out);
}

TEST(logits_errors) {
    char args[512];
    snprintf(args, sizeof args, "logits -m %s --ids 1,2 --mode quick -o %s", GOLD, out);
    CHECK(run(args) == 2 && log_has("mode"), "unknown mode is a usage error");
    snprintf(args, sizeof args, "logits -m %s --ids 1,x -o %s", GOLD, out);
    CHECK(run(args) == 2, "bad ids are a usage error");
    snprintf(args, sizeof args, "logits -m %s --ids 1,5000 -o %s", GOLD, out);
    CHECK(run(args) == 1 && log_has("out of range"), "id beyond the vocabulary");
    snprintf(args, sizeof args, "logits -m /nonexistent --ids 1 -o %s", out);
    CHECK(run(args) == 1 && log_has("/nonexistent"), "missing model dir named");
    CHECK(run("logits") == 2, "no arguments");
}

TEST(info_accounts_for_every_byte) {
    char args[512];
    snprintf(args, sizeof args, "info -m %s", GOLD);
    CHECK(run(args) == 0, "info runs");
    CHECK(log_has("inventory    427 tensors, 10055884 bytes") && log_has("OK"), "inventory adds up");
    CHECK(log_has("0:SWA(hash) 1:CSA 2:HCA/16 3:CSA | MTP: 4:SWA"), "layer types");
    CHECK(log_has("= 11814604"), "parameter sum");
}

int main(void) {
    dsv4 = getenv("DSV4") ? getenv("DSV4") : "build/dsv4";
    snprintf(out, sizeof out, "/tmp/dsv4_cli_%d.safetensors", (int)getpid());
    RUN(logits_rows_and_ids);
    RUN(logits_errors);
    RUN(info_accounts_for_every_byte);
    char p[64];
    snprintf(p, sizeof p, "/tmp/dsv4_cli_%d.log", (int)getpid());
    unlink(p);
    return check_summary();
}
