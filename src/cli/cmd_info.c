/* cmd_info.c - `dsv4 info -m DIR`: architecture summary and inventory check. */
#include "cli/cli.h"
#include "dsv4.h"
#include <stdio.h>
#include <string.h>

int cmd_info(int argc, char **argv) {
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-m") && i + 1 < argc) dir = argv[++i];
        else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) { printf("usage: dsv4 info -m DIR\n"); return 0; }
        else { fprintf(stderr, "dsv4 info: unknown option '%s'\nusage: dsv4 info -m DIR\n", argv[i]); return 2; }
    }
    if (!dir) { fprintf(stderr, "usage: dsv4 info -m DIR\n"); return 2; }
    char err[1024];
    dsv4_model *m = dsv4_model_load(dir, err, sizeof err);
    if (!m) { fprintf(stderr, "dsv4 info: %s\n", err); return 1; }
    int rc = dsv4_model_info(m, stdout);
    dsv4_model_free(m);
    return rc ? 1 : 0;
}
