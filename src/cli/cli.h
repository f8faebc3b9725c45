/*
 * cli.h - the subcommands of the `dsv4` program.  Each lives in its own
 * src/cli/cmd_<name>.c and gets argv with argv[0] = the subcommand name.
 * Each returns the process exit status (0 ok, 1 runtime error, 2 usage).
 */
#ifndef DSV4_CLI_H
#define DSV4_CLI_H

int cmd_info(int argc, char **argv);
int cmd_logits(int argc, char **argv);
int cmd_gen(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_chat_template(int argc, char **argv);
int cmd_chat_parse(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_chat(int argc, char **argv);
int cmd_serve(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_convert(int argc, char **argv);

#endif
