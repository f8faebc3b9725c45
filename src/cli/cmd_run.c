/* cmd_run.c - placeholder until this subcommand lands. */
#include <stdio.h>
#include "cli/cli.h"

int cmd_run(int argc, char **argv) {
    (void)argc;
    fprintf(stderr, "dsv4 %s: not built yet\n", argv[0]);
    return 2;
}

int cmd_chat(int argc, char **argv) { return cmd_run(argc, argv); }
