/* main.c — the aflorad binary: one executable, subcommands (see usage()). */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "model/gemm.h"
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
           "  init-demo DIR\n"
           "           write the built-in demo model and dataset into DIR\n"
           "  demo [options]\n"
           "           train the built-in demo model on the synthetic task (no files)\n"
           "  spec-doc the job spec's fields as a Markdown table\n"
           "  help [COMMAND]\n"
           "           this text, or COMMAND's usage\n"
           "  version  the version (also --version)\n");
}

/* Two settings that must be in the environment before the libraries load,
 * so main sets them and starts again, once; a user's own values win:
 * - OPENBLAS_CORETYPE: the kernels this CPU can run (engine_blas_better_core).
 * - OMP_WAIT_POLICY=passive: idle OpenMP threads sleep instead of spinning;
 *   spinning threads steal the cores OpenBLAS's own threads need between the
 *   elementwise kernels and the GEMMs (measured: an AFLoRA BERT-base step
 *   16.5 s with spinning, 4.4 s passive, on 2 cores). */
static void choose_runtime_env(char **argv) {
    if (getenv("AFLORAD_ENV_SET")) return;
    bool changed = false;
    const char *core = engine_blas_better_core();
    if (core && !getenv("OPENBLAS_CORETYPE")) {
        setenv("OPENBLAS_CORETYPE", core, 1);
        changed = true;
    }
    if (!getenv("OMP_WAIT_POLICY")) {
        setenv("OMP_WAIT_POLICY", "passive", 1);
        changed = true;
    }
    if (!changed) return;
    setenv("AFLORAD_ENV_SET", "1", 1);
    execv("/proc/self/exe", argv);
    /* exec failed: carry on with the defaults */
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
    choose_runtime_env(argv);
    if (argc >= 2 && strcmp(argv[1], "--version") == 0) return version_main(1, argv + 1);
    if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
                      strcmp(argv[1], "help") == 0))
        return help_main(argc - 1, argv + 1);
    /* No subcommand: serve, with defaults (the README's quickstart). */
    if (argc < 2 || argv[1][0] == '-') return serve_main(argc, argv);
    return run_command(argc - 1, argv + 1);
}
