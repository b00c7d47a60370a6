/* cli.h — the one-shot subcommands of aflorad (run, predict, init-demo,
 * spec-doc) and what every subcommand shares: --help. */
#ifndef AFLO_CLI_H
#define AFLO_CLI_H

#include <stdbool.h>

/* argv[0] is the subcommand. *handled is false when it is not one of ours.
 * With --help or -h anywhere in argv the command prints its usage and
 * returns 0 without doing anything else. */
int cli_dispatch(int argc, char **argv, bool *handled);

/* Whether argv[1..argc) asks for help (--help or -h anywhere), so every
 * subcommand answers it the same way, before reading its options. */
bool cli_help_requested(int argc, char **argv);

#endif
