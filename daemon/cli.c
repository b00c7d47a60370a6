/* cli.c — the one-shot commands: `aflorad run`, `aflorad predict`,
 * `aflorad init-demo`. `run` goes through job_run(), exactly the code path of
 * the daemon's workers; Ctrl-C checkpoints and stops, and running the same
 * command again resumes. */
#include "cli.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "adapter_io.h"
#include "fsutil.h"
#include "gemm.h"
#include "hfmodel.h"
#include "job.h"
#include "predict.h"
#include "safetensors.h"
#include "spec.h"
#include "synth.h"
#include "textdata.h"
#include "tokenizer.h"

#define DEFAULT_MODELS_DIR "models"
#define PROGRESS_EVERY 10

static const char *models_dir_default(void) {
    const char *env = getenv("AFLORAD_MODELS_DIR");
    return env && *env ? env : DEFAULT_MODELS_DIR;
}

/* Value of --name in argv, or NULL; *i advances past it. */
static const char *opt_value(int argc, char **argv, int *i, const char *name) {
    if (strcmp(argv[*i], name) != 0) return NULL;
    if (*i + 1 >= argc) {
        fprintf(stderr, "aflorad: %s needs a value\n", name);
        exit(2); /* command-line parsing only, never in library code */
    }
    return argv[++*i];
}

/* ---------------------------------------------------------------- run */

static atomic_int interrupted;

static void on_sigint(int sig) {
    (void)sig;
    atomic_store(&interrupted, 1);
}

static void run_step(void *ctx, const aflo_step_info *s) {
    (void)ctx;
    if (s->step % PROGRESS_EVERY != 0 && s->step != s->total_steps && s->step != 1) return;
    printf("step %ld/%ld  epoch %d  loss %.4f  lr %.2e  trainable %zu  projections %d/%d  "
           "GFLOP %.2f\n",
           s->step, s->total_steps, s->epoch + 1, s->loss, s->lr, s->trainable_now,
           s->projections_trainable, s->projections_total,
           (double)flops_total(&s->total_flops) * 1e-9);
    fflush(stdout);
}

static void run_freeze(void *ctx, const aflo_freeze_event *e) {
    (void)ctx;
    printf("freeze  step %ld  layer %d  %s  %c\n", e->step, e->layer,
           module_info[e->module].target, e->matrix);
    fflush(stdout);
}

static void run_eval(void *ctx, const aflo_eval_info *e) {
    (void)ctx;
    const aflo_metrics *m = e->metrics;
    if (m->classification)
        printf("eval    epoch %d  loss %.4f  accuracy %.4f  f1 %.4f  mcc %.4f\n", e->epoch + 1,
               m->loss, m->accuracy, m->f1, m->mcc);
    else
        printf("eval    epoch %d  loss %.4f  pearson %.4f  spearman %.4f\n", e->epoch + 1,
               m->loss, m->pearson, m->spearman);
    fflush(stdout);
}

static void run_log(void *ctx, const char *msg) {
    (void)ctx;
    printf("note    %s\n", msg);
}

static void run_resume(void *ctx, long step) {
    (void)ctx;
    printf("note    resumed from the checkpoint at step %ld\n", step);
}

static int cmd_run(int argc, char **argv) {
    const char *spec_path = NULL, *out = NULL, *models = models_dir_default();
    bool restart = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = opt_value(argc, argv, &i, "--models-dir"))) models = v;
        else if (strcmp(argv[i], "--restart") == 0) restart = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "run: unknown option %s\n", argv[i]);
            return 2;
        } else spec_path = argv[i];
    }
    if (!spec_path || !out) {
        fprintf(stderr, "usage: aflorad run SPEC.json --out DIR [--models-dir DIR] [--restart]\n");
        return 2;
    }
    aflo_job_spec spec;
    aflo_spec_error serr;
    if (spec_parse_file(spec_path, &spec, &serr) != 0) {
        fprintf(stderr, "run: %s: %s\n", spec_path, serr.message);
        return 1;
    }
    engine_set_blas_threads(spec.threads); /* one job in this process: it may set them */
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    job_args a = {.spec = &spec, .models_dir = models, .work_dir = out, .cancel = &interrupted,
                  .ev = {.on_step = run_step, .on_freeze = run_freeze, .on_eval = run_eval,
                         .on_log = run_log, .on_resume = run_resume},
                  .restart = restart,
                  .mismatch_hint = "run with the spec it was made with to resume it, or add "
                                   "--restart to discard it and start over"};
    job_result r;
    char err[1024] = "";
    job_outcome o = job_run(&a, &r, err, sizeof err);
    int rc = 1;
    if (o == JOB_SUCCEEDED) {
        printf("done    %ld steps in %.1f s; best epoch %d; average trainable parameters %.0f\n"
               "adapter %s/adapter/\nmetrics %s/metrics.json\n",
               r.summary.steps_done, r.summary.elapsed_s, r.summary.best_epoch + 1,
               r.summary.trainable_avg, out, out);
        rc = 0;
    } else if (o == JOB_CANCELLED) {
        fprintf(stderr, "run: stopped at step %ld; checkpoint saved in %s; run the same command "
                        "to resume\n", r.summary.steps_done, out);
        rc = 130;
    } else {
        fprintf(stderr, "run: %s\n", err);
    }
    job_result_free(&r);
    spec_free(&spec);
    return rc;
}

/* ---------------------------------------------------------------- init-demo */

static int cmd_init_demo(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: aflorad init-demo DIR\n");
        return 2;
    }
    char err[512];
    if (make_dirs(argv[1], err, sizeof err) != 0 ||
        synth_write_demo(argv[1], 2000, 400, 42, err, sizeof err) != 0) {
        fprintf(stderr, "init-demo: %s\n", err);
        return 1;
    }
    printf("wrote the demo model and dataset to %s (config.json, vocab.txt, model.safetensors, "
           "train.tsv, dev.tsv)\n", argv[1]);
    return 0;
}

/* ---------------------------------------------------------------- predict */

static int print_prediction(predictor *p, const char *a, const char *b, char *err,
                            size_t errlen) {
    cJSON *o = predictor_run(p, a, b, err, errlen);
    if (!o) return -1;
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    puts(line);
    free(line);
    return 0;
}

static int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *text = NULL, *pair = NULL, *input = NULL;
    const char *models = models_dir_default();
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--model"))) model = v;
        else if ((v = opt_value(argc, argv, &i, "--adapter"))) adapter = v;
        else if ((v = opt_value(argc, argv, &i, "--text"))) text = v;
        else if ((v = opt_value(argc, argv, &i, "--text-pair"))) pair = v;
        else if ((v = opt_value(argc, argv, &i, "--input"))) input = v;
        else if ((v = opt_value(argc, argv, &i, "--models-dir"))) models = v;
        else {
            fprintf(stderr, "predict: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!model || !adapter || (!text == !input)) {
        fprintf(stderr, "usage: aflorad predict --model M --adapter DIR_OR_FILE "
                        "(--text T [--text-pair P] | --input FILE) [--models-dir DIR]\n"
                        "  FILE: .jsonl with \"text\" (and \"text_pair\"), or .tsv/.csv with a "
                        "\"text\" column (and \"text_pair\")\n");
        return 2;
    }
    char err[1024] = "";
    predictor *p = predictor_open(models, model, adapter, err, sizeof err);
    int rc = 1;
    if (!p) goto fail;
    if (text) {
        if (print_prediction(p, text, pair, err, sizeof err) != 0) goto fail;
    } else {
        /* a pair file first (text + text_pair), else single texts */
        textdata_spec ts = {.text_a = TEXTDATA_BY_NAME("text"),
                            .text_b = TEXTDATA_BY_NAME("text_pair")};
        textdata td;
        if (textdata_load(input, &ts, &td, err, sizeof err) != 0) {
            ts.text_b = (textdata_field){TEXTDATA_FIELD_NONE, NULL, 0};
            if (textdata_load(input, &ts, &td, err, sizeof err) != 0) goto fail;
        }
        for (int i = 0; i < textdata_count(&td); i++)
            if (print_prediction(p, textdata_text_a(&td, i), textdata_text_b(&td, i), err,
                                 sizeof err) != 0) {
                textdata_free(&td);
                goto fail;
            }
        textdata_free(&td);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "predict: %s\n", err);
    predictor_free(p);
    return rc;
}

/* ---------------------------------------------------------------- spec-doc */

/* The job spec's field table as Markdown (the README embeds it; a test keeps
 * the two equal). */
static int cmd_spec_doc(int argc, char **argv) {
    (void)argc;
    (void)argv;
    char *doc = spec_doc_markdown();
    if (!doc) {
        fprintf(stderr, "spec-doc: out of memory\n");
        return 1;
    }
    fputs(doc, stdout);
    free(doc);
    return 0;
}

/* ---------------------------------------------------------------- table */

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
} command;

static const command commands[] = {
    {"run", cmd_run},
    {"predict", cmd_predict},
    {"init-demo", cmd_init_demo},
    {"spec-doc", cmd_spec_doc},
};

int cli_dispatch(int argc, char **argv, bool *handled) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[0], commands[i].name) == 0) {
            *handled = true;
            return commands[i].fn(argc, argv);
        }
    *handled = false;
    return 2;
}
