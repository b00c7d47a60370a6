/* main.c — the aflorad binary: one executable, subcommands (see usage()). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "blas_setup.h"
#include "cli.h"
#include "demo.h"
#include "serve.h"
#include "version.h"

static void usage(FILE *f) {
    fprintf(
        f, "usage: aflorad <command> [options]     (aflorad <command> --help: its usage)\n"
           "commands:\n"
           "  serve [options]   the daemon (default when no command is given)\n"
           "  run SPEC.json --out DIR [--models-dir DIR] [--restart]\n"
           "           fine-tune as the spec says; Ctrl-C checkpoints, rerun resumes\n"
           "           (the same spec only); --restart discards the checkpoint\n"
           "  predict --model M [--adapter FILE_OR_DIR] (--text T [--text-pair P] | --input FILE)\n"
           "           predictions as JSON lines, from either adapter form or a fine-tuned model\n"
           "  generate --model M [--adapter A] (--prompt T | --prompt-ids 1,2,3) [options]\n"
           "           continue a prompt with a causal language model (JSON out)\n"
           "  convert llama2c FILE OUTDIR\n"
           "           write a llama2.c checkpoint as a Hugging Face LLaMA folder\n"
           "  init-demo DIR\n"
           "           write the built-in demo model and dataset into DIR\n"
           "  demo [options]\n"
           "           train the built-in demo model on the synthetic task (no files)\n"
           "  spec-doc the job spec's fields as a Markdown table\n"
           "  help [COMMAND]\n"
           "           this text, or COMMAND's usage\n"
           "  version  the version (also --version)\n");
}

/* The commands that compute: they get the OpenBLAS core and thread
 * environment chosen, verified and logged first (blas_setup.h); the rest
 * (help, version, init-demo, spec-doc) start at once. predict writes its
 * results to stdout, so it logs the BLAS line only at debug level. */
static const struct {
    const char *name;
    bool quiet;
} computing_commands[] = {
    {"serve", false}, {"run", false}, {"demo", false}, {"predict", true}, {"generate", true}};

/* 0 to go on, else the exit status. */
static int setup_blas_for(const char *command, int *argc, char **argv) {
    for (size_t i = 0; i < sizeof computing_commands / sizeof *computing_commands; i++) {
        if (strcmp(command, computing_commands[i].name) != 0) continue;
        if (cli_help_requested(*argc, argv)) return 0;
        char err[1024];
        int rc = blas_setup(argc, argv, computing_commands[i].quiet, err, sizeof err);
        if (rc != 0) {
            fprintf(stderr, "aflorad: %s\n", err);
            return rc == -2 ? 2 : 1; /* usage errors exit 2, as every command's */
        }
    }
    return 0;
}

static int version_main(int argc, char **argv) {
    if (cli_help_requested(argc, argv)) {
        printf("usage: aflorad version   (or aflorad --version)\n");
        return 0;
    }
    printf("aflorad %s\n", AFLORAD_VERSION);
    return 0;
}

/* serve and demo parse their own options; the rest are cli.c's. */
static int run_command(int argc, char **argv) {
    if (strcmp(argv[0], "serve") == 0) return serve_main(argc, argv);
    if (strcmp(argv[0], "demo") == 0) return demo_main(argc, argv);
    if (strcmp(argv[0], "version") == 0) return version_main(argc, argv);
    bool handled;
    int rc = cli_dispatch(argc, argv, &handled);
    if (handled) return rc;
    fprintf(stderr, "aflorad: unknown command '%s'\n", argv[0]);
    usage(stderr);
    return 2;
}

/* `aflorad help COMMAND` is `aflorad COMMAND --help`. */
static int help_main(int argc, char **argv) {
    if (argc < 2 || argv[1][0] == '-' || strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    char help_flag[] = "--help";
    char *args[] = {argv[1], help_flag, NULL};
    return run_command(2, args);
}

int main(int argc, char **argv) {
    /* No subcommand: serve, with defaults (the README's quickstart). */
    bool bare_serve = argc < 2 || (argv[1][0] == '-' && strcmp(argv[1], "--version") != 0 &&
                                   strcmp(argv[1], "--help") != 0 && strcmp(argv[1], "-h") != 0);
    int rc = setup_blas_for(bare_serve ? "serve" : argv[1], &argc, argv);
    if (rc != 0) return rc;
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) return version_main(1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0))
        return help_main(argc - 1, argv + 1);
    if (bare_serve) return serve_main(argc, argv);
    return run_command(argc - 1, argv + 1);
}
