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

static int cmd_run(int argc, char **argv) {
    const char *spec_path = NULL, *out = NULL, *models = models_dir_default();
    for (int i = 1; i < argc; i++) {
        const char *v;
        if ((v = opt_value(argc, argv, &i, "--out"))) out = v;
        else if ((v = opt_value(argc, argv, &i, "--models-dir"))) models = v;
        else if (argv[i][0] == '-') {
            fprintf(stderr, "run: unknown option %s\n", argv[i]);
            return 2;
        } else spec_path = argv[i];
    }
    if (!spec_path || !out) {
        fprintf(stderr, "usage: aflorad run SPEC.json --out DIR [--models-dir DIR]\n");
        return 2;
    }
    aflo_job_spec spec;
    aflo_spec_error serr;
    if (spec_parse_file(spec_path, &spec, &serr) != 0) {
        fprintf(stderr, "run: %s: %s\n", spec_path, serr.message);
        return 1;
    }
    struct sigaction sa = {.sa_handler = on_sigint};
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    job_args a = {.spec = &spec, .models_dir = models, .work_dir = out, .cancel = &interrupted,
                  .ev = {.on_step = run_step, .on_freeze = run_freeze, .on_eval = run_eval,
                         .on_log = run_log}};
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

typedef struct {
    aflo_model *m;
    tokenizer *tok;
    char **labels;
    int num_labels;
    int max_len;
} predictor;

static void predictor_free(predictor *p) {
    model_free(p->m);
    tokenizer_free(p->tok);
    if (p->labels)
        for (int i = 0; i < p->num_labels; i++) free(p->labels[i]);
    free(p->labels);
}

static int labels_from_json(predictor *p, const char *json) {
    cJSON *arr = json ? cJSON_Parse(json) : NULL;
    p->labels = calloc((size_t)p->num_labels, sizeof *p->labels);
    if (!p->labels) {
        cJSON_Delete(arr);
        return -1;
    }
    for (int i = 0; i < p->num_labels; i++) {
        cJSON *it = cJSON_IsArray(arr) ? cJSON_GetArrayItem(arr, i) : NULL;
        char buf[32];
        snprintf(buf, sizeof buf, "%d", i);
        p->labels[i] = strdup(cJSON_IsString(it) ? it->valuestring : buf);
        if (!p->labels[i]) {
            cJSON_Delete(arr);
            return -1;
        }
    }
    cJSON_Delete(arr);
    return 0;
}

/* Rows of the classifier in a PEFT folder's weights: its label count. */
static int peft_num_labels(const char *dir, char *err, size_t errlen) {
    char path[4096];
    if (path_join(path, sizeof path, dir, PEFT_WEIGHTS_FILE, err, errlen) != 0) return -1;
    st_file *f = st_open(path, err, errlen);
    if (!f) return -1;
    int n = -1;
    for (size_t i = 0; i < st_count(f); i++) {
        const char *name = st_name(f, i);
        size_t len = strlen(name);
        static const char *const suffixes[] = {"classifier.weight", "classifier.out_proj.weight"};
        for (size_t k = 0; k < 2; k++) {
            size_t sl = strlen(suffixes[k]);
            if (len >= sl && strcmp(name + len - sl, suffixes[k]) == 0 && st_ndim(f, i) == 2)
                n = (int)st_shape(f, i)[0];
        }
    }
    st_close(f);
    if (n < 1) snprintf(err, errlen, "%s: no classifier weights in the PEFT folder", dir);
    return n;
}

static int predictor_open(predictor *p, const char *models, const char *model,
                          const char *adapter, char *err, size_t errlen) {
    memset(p, 0, sizeof *p);
    char model_dir[4096], cfgpath[4096];
    if (job_model_dir(models, model, model_dir, sizeof model_dir, err, errlen) != 0) return -1;
    p->tok = tokenizer_load_dir(model_dir, err, errlen);
    if (!p->tok) return -1;
    aflo_config c;
    if (hfmodel_read_config(model_dir, &c, err, errlen) != 0) return -1;
    p->max_len = c.max_position_embeddings - (c.roberta_positions ? c.pad_token_id + 1 : 0);
    bool is_dir = path_join(cfgpath, sizeof cfgpath, adapter, PEFT_CONFIG_FILE, err, errlen) == 0 &&
                  file_exists(cfgpath);
    if (is_dir) {
        aflo_adapter_config ac;
        if (adapter_peft_read_config(adapter, &ac, NULL, 0, err, errlen) != 0) return -1;
        p->num_labels = peft_num_labels(adapter, err, errlen);
        if (p->num_labels < 1) return -1;
        aflo_task task = p->num_labels == 1 ? TASK_REGRESSION : TASK_CLASSIFICATION;
        p->m = hfmodel_load(model_dir, &ac, task, p->num_labels, 0, NULL, err, errlen);
        if (!p->m || adapter_import_peft(p->m, adapter, NULL, err, errlen) != 0) return -1;
        return labels_from_json(p, NULL);
    }
    adapter_native_meta meta;
    if (adapter_native_read_meta(adapter, &meta, err, errlen) != 0) return -1;
    p->num_labels = meta.num_labels;
    p->m = hfmodel_load(model_dir, &meta.ac, meta.task, meta.num_labels, 0, NULL, err, errlen);
    int rc = -1;
    if (p->m && adapter_import_native(p->m, adapter, err, errlen) == 0)
        rc = labels_from_json(p, meta.labels_json);
    adapter_native_meta_free(&meta);
    return rc;
}

/* Print one JSON line for (a, b). */
static int predict_one(predictor *p, const char *a, const char *b, char *err, size_t errlen) {
    int32_t ids[4096], tt[4096];
    int len, max = p->max_len < 4096 ? p->max_len : 4096;
    if (tokenizer_encode(p->tok, a, b, max, ids, tt, &len, err, errlen) != 0) return -1;
    if (model_reserve(p->m, 1, len, err, errlen) != 0) return -1;
    aflo_batch batch = {.batch = 1, .seq = len, .input_ids = ids, .token_type_ids = tt};
    if (model_forward(p->m, &batch, NULL, err, errlen) != 0) return -1;
    const float *logits = model_logits(p->m);
    cJSON *o = cJSON_CreateObject();
    if (!o) return -1;
    if (model_task(p->m) == TASK_REGRESSION) {
        cJSON_AddNumberToObject(o, "value", logits[0]);
    } else {
        int L = p->num_labels, best = 0;
        double mx = logits[0], sum = 0;
        for (int k = 1; k < L; k++)
            if (logits[k] > logits[best]) best = k;
        mx = logits[best];
        for (int k = 0; k < L; k++) sum += exp(logits[k] - mx);
        cJSON_AddStringToObject(o, "label", p->labels[best]);
        cJSON_AddNumberToObject(o, "label_id", best);
        cJSON *probs = cJSON_AddArrayToObject(o, "probabilities");
        cJSON *lg = cJSON_AddArrayToObject(o, "logits");
        for (int k = 0; k < L; k++) {
            cJSON_AddItemToArray(probs, cJSON_CreateNumber(exp(logits[k] - mx) / sum));
            cJSON_AddItemToArray(lg, cJSON_CreateNumber(logits[k]));
        }
    }
    char *line = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!line) return -1;
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
    predictor p;
    int rc = 1;
    if (predictor_open(&p, models, model, adapter, err, sizeof err) != 0) goto fail;
    if (text) {
        if (predict_one(&p, text, pair, err, sizeof err) != 0) goto fail;
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
            if (predict_one(&p, textdata_text_a(&td, i), textdata_text_b(&td, i), err,
                            sizeof err) != 0) {
                textdata_free(&td);
                goto fail;
            }
        textdata_free(&td);
    }
    rc = 0;
fail:
    if (rc) fprintf(stderr, "predict: %s\n", err);
    predictor_free(&p);
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
