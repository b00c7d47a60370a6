/* cli.h — the one-shot subcommands of aflorad (run, predict, init-demo). */
#ifndef AFLO_CLI_H
#define AFLO_CLI_H

#include <stdbool.h>

/* argv[0] is the subcommand. *handled is false when it is not one of ours. */
int cli_dispatch(int argc, char **argv, bool *handled);

#endif
