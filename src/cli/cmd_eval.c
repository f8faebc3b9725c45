/* cmd_eval.c - placeholder until this subcommand lands. */
#include <stdio.h>
#include "cli/cli.h"

int cmd_eval(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "dsv4 %s: not built yet\n", argv[0]);
    return 2;
}
