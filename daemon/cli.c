/* cli.c — the one-shot commands: `aflorad run`, `aflorad predict`,
 * `aflorad init-demo`, `aflorad spec-doc` (and, from cli_lm.c, `generate`
 * and `convert`). `run` goes through job_run(),
 * exactly the code path of the daemon's workers; Ctrl-C checkpoints and
 * stops, and running the same command again resumes.
 *
 * Each command is a row of commands[] with its usage text; cli_dispatch
 * answers --help/-h for all of them before the command reads its options. */
#include "cli.h"
#include "cli_lm.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/adapter_info.h"
#include "base/errmsg.h"
#include "base/isa.h"
#include "fsutil.h"
#include "model/gemm.h"
#include "io/hfmodel.h"
#include "job.h"
#include "predict.h"
#include "io/safetensors.h"
#include "spec.h"
#include "synth.h"
#include "sysmem.h"
#include "io/textdata.h"
#include "tokenizer/tokenizer.h"

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
           s->step, s->total_steps, JOB_EPOCH_SHOWN(s->epoch), s->loss, s->lr, s->trainable_now,
           s->projections_trainable, s->projections_total,
           (double)flops_total(&s->total_flops) * 1e-9);
    fflush(stdout);
}

static void run_freeze(void *ctx, const aflo_freeze_event *e) {
    (void)ctx;
    printf("freeze  step %ld  layer %d  %s  %c\n", e->step, e->layer, e->module_name, e->matrix);
    fflush(stdout);
}

static void run_eval(void *ctx, const aflo_eval_info *e) {
    (void)ctx;
    const aflo_metrics *m = e->metrics;
    if (m->causal_lm && m->has_exact_match)
        printf("eval    epoch %d  loss %.4f  perplexity %.4f  exact_match %.4f (%d of %d)  rows "
               "%d\n",
               JOB_EPOCH_SHOWN(e->epoch), m->loss, exp(m->loss), m->exact_match,
               (int)lround(m->exact_match * m->judged), m->judged, m->n);
    else if (m->causal_lm)
        printf("eval    epoch %d  loss %.4f  perplexity %.4f  rows %d\n", JOB_EPOCH_SHOWN(e->epoch),
               m->loss, exp(m->loss), m->n);
    else if (m->classification)
        printf("eval    epoch %d  loss %.4f  accuracy %.4f  f1 %.4f  mcc %.4f\n",
               JOB_EPOCH_SHOWN(e->epoch), m->loss, m->accuracy, m->f1, m->mcc);
    else
        printf("eval    epoch %d  loss %.4f  pearson %.4f  spearman %.4f\n",
               JOB_EPOCH_SHOWN(e->epoch), m->loss, m->pearson, m->spearman);
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

static const char run_usage[] =
    "usage: aflorad run SPEC.json --out DIR [--models-dir DIR] [--restart] [--blas-core NAME]\n"
    "  Fine-tune as the job spec says (aflorad spec-doc lists its fields) and write\n"
    "  DIR/adapter/ and DIR/metrics.json. Ctrl-C checkpoints; the same command resumes\n"
    "  (only a checkpoint of the same spec and data; a different one is refused).\n"
    "  --models-dir DIR   where model names resolve (default $AFLORAD_MODELS_DIR or models)\n"
    "  --restart          discard DIR's checkpoint and start from step 1\n"
    "  --blas-core NAME   OpenBLAS kernels (also AFLORAD_BLAS_CORE): auto, SkylakeX, Haswell,\n"
    "                     ... or none (default: OPENBLAS_CORETYPE if set, else "
    "auto)\n" SYSMEM_USAGE;

static int cmd_run(int argc, char **argv) {
    const char *spec_path = NULL, *out = NULL, *models = models_dir_default();
    bool restart = false;
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--out")))
            out = v;
        else if ((v = opt_value(argc, argv, &i, "--models-dir")))
            models = v;
        else if (strcmp(argv[i], "--restart") == 0)
            restart = true;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "run: unknown option %s\n", argv[i]);
            return 2;
        } else
            spec_path = argv[i];
    }
    if (!spec_path || !out) {
        fputs(run_usage, stderr);
        return 2;
    }
    aflo_job_spec spec;
    aflo_spec_error serr;
    if (spec_parse_file(spec_path, &spec, &serr) != 0) {
        fprintf(stderr, "run: %s: %s\n", spec_path, serr.message);
        return 1;
    }
    engine_set_blas_threads(spec.threads); /* one job in this process: it may set them */
    printf("note    kernels: %s\n", isa_describe());
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    job_args a = {.spec = &spec,
                  .models_dir = models,
                  .work_dir = out,
                  .cancel = &interrupted,
                  .ev = {.on_step = run_step,
                         .on_freeze = run_freeze,
                         .on_eval = run_eval,
                         .on_log = run_log,
                         .on_resume = run_resume},
                  .restart = restart,
                  .mismatch_hint = "run with the spec it was made with to resume it, or add "
                                   "--restart to discard it and start over"};
    job_result r;
    char err[1024] = "";
    job_outcome o = job_run(&a, &r, err, sizeof err);
    int rc = 1;
    if (o == JOB_SUCCEEDED) {
        char best[48] = "no evaluation, last epoch kept";
        if (r.summary.best_epoch >= 0)
            snprintf(best, sizeof best, "best epoch %d", JOB_EPOCH_SHOWN(r.summary.best_epoch));
        printf("done    %ld steps in %.1f s; %s; average trainable parameters %.0f\n",
               r.summary.steps_done, r.summary.elapsed_s, best, r.summary.trainable_avg);
        printf("adapter %s/adapter/\n", out);
        printf("metrics %s/metrics.json\n", out);
        rc = 0;
    } else if (o == JOB_CANCELLED) {
        fprintf(stderr,
                "run: stopped at step %ld; checkpoint saved in %s; run the same command "
                "to resume\n",
                r.summary.steps_done, out);
        rc = 130;
    } else {
        fprintf(stderr, "run: %s\n", err);
    }
    job_result_free(&r);
    spec_free(&spec);
    return rc;
}

/* ---------------------------------------------------------------- init-demo */

static const char init_demo_usage[] =
    "usage: aflorad init-demo DIR\n"
    "  Write the built-in demo model (config.json, vocab.txt, model.safetensors) and its\n"
    "  synthetic sentiment dataset (train.tsv, dev.tsv) into DIR, a Hugging Face folder.\n";

static int cmd_init_demo(int argc, char **argv) {
    if (argc != 2 || argv[1][0] == '-') {
        fputs(init_demo_usage, stderr);
        return 2;
    }
    char err[512];
    if (make_dirs(argv[1], err, sizeof err) != 0 ||
        synth_write_demo(argv[1], SYNTH_DEMO_TRAIN_ROWS, SYNTH_DEMO_EVAL_ROWS, SYNTH_DEMO_SEED, err,
                         sizeof err) != 0) {
        fprintf(stderr, "init-demo: %s\n", err);
        return 1;
    }
    printf("wrote the demo model and dataset to %s (config.json, vocab.txt, model.safetensors, "
           "train.tsv, dev.tsv)\n",
           argv[1]);
    return 0;
}

/* ---------------------------------------------------------------- predict */

static int print_prediction(predictor *p, const char *a, const char *b, char *err, size_t errlen) {
    cJSON *o = predictor_run(p, a, b, NULL, err, errlen);
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

/* --text-field / --pair-field: a 0-based column index when all digits, else
 * a header column or JSON key name. */
static int parse_field(const char *flag, const char *v, adapter_text_field *t, char *err,
                       size_t errlen) {
    memset(t, 0, sizeof *t);
    size_t n = strspn(v, "0123456789");
    if (v[0] && !v[n]) {
        errno = 0;
        long idx = strtol(v, NULL, 10);
        if (errno || idx > 65535) {
            snprintf(err, errlen, "%s %s: a column index must be at most 65535", flag, v);
            return -1;
        }
        t->by_index = true;
        t->index = (int)idx;
        return 0;
    }
    if (!v[0] || strlen(v) >= sizeof t->name) {
        snprintf(err, errlen, "%s: give a column name or a 0-based column index", flag);
        return -1;
    }
    snprintf(t->name, sizeof t->name, "%s", v);
    return 0;
}

static textdata_field to_field(const adapter_text_field *t) {
    return t->by_index ? TEXTDATA_BY_INDEX(t->index) : TEXTDATA_BY_NAME(t->name);
}

typedef struct {
    const char *text_field, *pair_field;
    int header; /* -1: not given; 0 / 1: --no-header / --header */
} input_overrides;

/* Predict every row of FILE, read with the columns the adapter was trained
 * on unless overridden. */
static int predict_file(predictor *p, const char *input, const input_overrides *o, char *err,
                        size_t errlen) {
    adapter_inputs in = *predictor_inputs(p);
    bool recorded = in.n_fields > 0, overridden = o->text_field || o->pair_field;
    if (o->pair_field && predictor_check_pair(p, true, err, errlen) != 0) {
        char why[600];
        snprintf(why, sizeof why, "%s", err);
        snprintf(err, errlen, "--pair-field: %s", why);
        return -1;
    }
    if (o->text_field && parse_field("--text-field", o->text_field, &in.fields[0], err, errlen))
        return -1;
    if (o->pair_field && parse_field("--pair-field", o->pair_field, &in.fields[1], err, errlen))
        return -1;
    if (o->pair_field)
        in.n_fields = 2;
    else if (o->text_field && !recorded)
        in.n_fields = 1;
    if (!recorded && !o->text_field) { /* nothing to go by: the "text" column */
        snprintf(in.fields[0].name, sizeof in.fields[0].name, "text");
        in.fields[0].by_index = false;
    }
    bool named = false;
    for (int i = 0; i < in.n_fields; i++) named |= !in.fields[i].by_index;
    bool header = o->header >= 0        ? o->header
                  : overridden && named ? true
                  : recorded            ? in.has_header
                                        : true;
    textdata_spec ts = {.format = textdata_format_from_path(input),
                        .text_a = to_field(&in.fields[0]),
                        .no_header = !header};
    if (ts.format == TEXTDATA_AUTO) ts.format = in.format;
    if (in.n_fields == 2) ts.text_b = to_field(&in.fields[1]);
    textdata td;
    int rc;
    if (in.n_fields == 0 && !o->text_field) {
        /* not recorded: "text" and "text_pair" when the file has both, else "text" */
        ts.text_b = TEXTDATA_BY_NAME("text_pair");
        rc = textdata_load(input, &ts, &td, err, errlen);
        if (rc != 0) {
            ts.text_b = (textdata_field){TEXTDATA_FIELD_NONE, NULL, 0};
            rc = textdata_load(input, &ts, &td, err, errlen);
        }
    } else {
        rc = textdata_load(input, &ts, &td, err, errlen);
        if (rc != 0 && recorded && !overridden) {
            /* the generic "text" ("text_pair") columns predict has always read */
            textdata_spec generic = {.format = ts.format, .text_a = TEXTDATA_BY_NAME("text")};
            if (in.n_fields == 2) generic.text_b = TEXTDATA_BY_NAME("text_pair");
            char ignored[256];
            if (textdata_load(input, &generic, &td, ignored, sizeof ignored) == 0) rc = 0;
        }
    }
    if (rc != 0) {
        if (recorded && !overridden) {
            char fields[512];
            predictor_describe_fields(p, fields, sizeof fields);
            appendf(err, errlen,
                    " (the adapter reads %s, as in its training data; "
                    "--text-field and --pair-field choose other columns)",
                    fields);
        }
        return -1;
    }
    for (int i = 0; i < textdata_count(&td); i++) {
        char why[900];
        if (print_prediction(p, textdata_text_a(&td, i), textdata_text_b(&td, i), why,
                             sizeof why) != 0) {
            snprintf(err, errlen, "%s, row %d: %s", input, i + 1, why);
            textdata_free(&td);
            return -1;
        }
    }
    textdata_free(&td);
    return 0;
}

static const char predict_usage[] =
    "usage: aflorad predict --model M [--adapter FILE_OR_DIR] [--models-dir DIR]\n"
    "                       (--text T [--text-pair P] | --input FILE [--text-field F]\n"
    "                        [--pair-field F] [--header | --no-header])\n"
    "  Predictions as JSON lines.\n"
    "  --adapter: adapter.safetensors, the adapter/ folder `aflorad run` prints, or a\n"
    "    PEFT folder; leave it out when M is itself fine-tuned (a method-full run's\n"
    "    adapter/model/)\n"
    "  FILE (.tsv, .csv, .jsonl) is read with the text columns, header and format the\n"
    "    adapter was trained with; --text-field/--pair-field (a name, or a 0-based\n"
    "    column index) and --header/--no-header override them\n";

static int cmd_predict(int argc, char **argv) {
    const char *model = NULL, *adapter = NULL, *text = NULL, *pair = NULL, *input = NULL;
    const char *models = models_dir_default();
    input_overrides o = {.header = -1};
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--model")))
            model = v;
        else if ((v = opt_value(argc, argv, &i, "--adapter")))
            adapter = v;
        else if ((v = opt_value(argc, argv, &i, "--text")))
            text = v;
        else if ((v = opt_value(argc, argv, &i, "--text-pair")))
            pair = v;
        else if ((v = opt_value(argc, argv, &i, "--input")))
            input = v;
        else if ((v = opt_value(argc, argv, &i, "--text-field")))
            o.text_field = v;
        else if ((v = opt_value(argc, argv, &i, "--pair-field")))
            o.pair_field = v;
        else if ((v = opt_value(argc, argv, &i, "--models-dir")))
            models = v;
        else if (strcmp(argv[i], "--header") == 0)
            o.header = 1;
        else if (strcmp(argv[i], "--no-header") == 0)
            o.header = 0;
        else {
            fprintf(stderr, "predict: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (!model || (!text == !input) || (pair && !text) ||
        (!input && (o.text_field || o.pair_field || o.header >= 0))) {
        fputs(predict_usage, stderr);
        return 2;
    }
    char err[1024] = "";
    predictor *p = predictor_open(models, model, adapter, err, sizeof err);
    int rc = 1;
    if (!p) goto fail;
    if (text) {
        if (predictor_check_pair(p, pair != NULL, err, sizeof err) != 0) {
            appendf(err, sizeof err, pair ? "" : " (--text-pair)");
            goto fail;
        }
        if (print_prediction(p, text, pair, err, sizeof err) != 0) goto fail;
    } else if (predict_file(p, input, &o, err, sizeof err) != 0) {
        goto fail;
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "predict: %s\n", err);
    predictor_free(p);
    return rc;
}

/* ---------------------------------------------------------------- spec-doc */

static const char spec_doc_usage[] =
    "usage: aflorad spec-doc [--json]\n"
    "  Print the job spec's fields (type, default, allowed values, description) as the\n"
    "  Markdown table the README embeds, or with --json as the JSON Schema that GET\n"
    "  /openapi.json serves as JobSpec (defaults, enums, x-default rules).\n";

/* The job spec's field table as Markdown (the README embeds it; a test keeps
 * the two equal) or as JSON Schema (the dashboard's mock server serves it). */
static int cmd_spec_doc(int argc, char **argv) {
    bool json = argc == 2 && strcmp(argv[1], "--json") == 0;
    if (argc > 1 && !json) {
        fprintf(stderr, "spec-doc: unexpected argument %s\n", argv[1]);
        fputs(spec_doc_usage, stderr);
        return 2;
    }
    char *doc = NULL;
    if (json) {
        cJSON *schema = spec_schema_json();
        doc = schema ? cJSON_Print(schema) : NULL;
        cJSON_Delete(schema);
    } else {
        doc = spec_doc_markdown();
    }
    if (!doc) {
        fprintf(stderr, "spec-doc: out of memory\n");
        return 1;
    }
    fputs(doc, stdout);
    if (json) fputc('\n', stdout);
    free(doc);
    return 0;
}

/* ---------------------------------------------------------------- table */

typedef struct {
    const char *name;
    int (*fn)(int argc, char **argv);
    const char *usage;
} command;

static const command commands[] = {
    {"run", cmd_run, run_usage},
    {"predict", cmd_predict, predict_usage},
    {"init-demo", cmd_init_demo, init_demo_usage},
    {"spec-doc", cmd_spec_doc, spec_doc_usage},
    {"generate", cmd_generate, generate_usage},
    {"convert", cmd_convert, convert_usage},
};

bool cli_help_requested(int argc, char **argv) {
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) return true;
    return false;
}

int cli_dispatch(int argc, char **argv, bool *handled) {
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[0], commands[i].name) == 0) {
            *handled = true;
            if (cli_help_requested(argc, argv)) {
                fputs(commands[i].usage, stdout);
                return 0;
            }
            return commands[i].fn(argc, argv);
        }
    *handled = false;
    return 2;
}
