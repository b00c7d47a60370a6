/* main.c — the aflorad binary: one executable, subcommands.
 *
 *   aflorad demo [--method M] [--rank R] [--epochs N] [--threads N] [--seed S]
 *       trains the built-in demo model on the built-in synthetic task in the
 *       foreground, printing progress, freeze events and evaluations.
 *
 * serve, run, predict and init-demo arrive with the daemon and the engine I/O. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "demo.h"

static void usage(FILE *f) {
    fprintf(f,
            "usage: aflorad <command> [options]\n"
            "commands:\n"
            "  demo     train the built-in demo model on the synthetic task\n"
            "           --method aflora|elora|lora|full  --rank R  --epochs N\n"
            "           --threads N  --seed S  --quiet\n"
            "  help     this text\n");
}

int main(int argc, char **argv) {
    if (argc < 2 || strcmp(argv[1], "help") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "demo") == 0) return demo_main(argc - 1, argv + 1);
    fprintf(stderr, "aflorad: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}
