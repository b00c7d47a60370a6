/* job.c — spec in, adapter files out (see job.h for the folder layout). */
#include "job.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/adapter_native.h"
#include "io/adapter_peft.h"
#include "train/dataset.h"
#include "fsutil.h"
#include "model/gemm.h"
#include "io/hfmodel.h"
#include "io/hfmodel_export.h"
#include "io/lmdata.h"
#include "synth.h"
#include "sysmem.h"
#include "train/memory.h"
#include "io/textdata.h"
#include "tokenizer/tokenizer.h"

int job_ensure_demo(const char *models_dir, char *err, size_t errlen) {
    char dir[4096], probe[4096];
    if (path_join(dir, sizeof dir, models_dir, JOB_DEMO_MODEL, err, errlen) != 0 ||
        path_join(probe, sizeof probe, dir, "dev.tsv", err, errlen) != 0) /* written last */
        return -1;
    if (file_exists(probe)) return 0;
    if (make_dirs(models_dir, err, errlen) != 0) return -1;
    return synth_write_demo(dir, SYNTH_DEMO_TRAIN_ROWS, SYNTH_DEMO_EVAL_ROWS, SYNTH_DEMO_SEED, err,
                            errlen);
}

int job_model_dir(const char *models_dir, const char *model, char *out, size_t outlen, char *err,
                  size_t errlen) {
    if (strcmp(model, JOB_DEMO_MODEL) == 0 && job_ensure_demo(models_dir, err, errlen) != 0)
        return -1;
    if (strchr(model, '/'))
        snprintf(out, outlen, "%s", model);
    else if (path_join(out, outlen, models_dir, model, err, errlen) != 0)
        return -1;
    char cfg[4096];
    if (path_join(cfg, sizeof cfg, out, "config.json", err, errlen) != 0) return -1;
    if (!file_exists(cfg)) {
        snprintf(err, errlen, "model: %s has no config.json (looked in %s)", model, out);
        return -1;
    }
    return 0;
}

/* ---------------------------------------------------------------- init_adapter */

int job_init_adapter_path(const char *jobs_dir, const char *ref, char *out, size_t outlen,
                          char *err, size_t errlen) {
    size_t n = strlen(SPEC_JOB_REF_PREFIX);
    if (strncmp(ref, SPEC_JOB_REF_PREFIX, n) == 0) {
        if (!jobs_dir) {
            snprintf(err, errlen,
                     "init_adapter: \"%.40s\" names a job of the daemon; here give the adapter "
                     "file (e.g. out/adapter/adapter.safetensors)",
                     ref);
            return -1;
        }
        char dir[4096];
        if (path_join(dir, sizeof dir, jobs_dir, ref + n, err, errlen) != 0) return -1;
        if ((size_t)snprintf(out, outlen, "%s/adapter/adapter.safetensors", dir) >= outlen) {
            snprintf(err, errlen, "init_adapter: path too long");
            return -1;
        }
        return 0;
    }
    struct stat st;
    if (stat(ref, &st) == 0 && S_ISDIR(st.st_mode))
        return path_join(out, outlen, ref, "adapter.safetensors", err, errlen);
    if ((size_t)snprintf(out, outlen, "%s", ref) >= outlen) {
        snprintf(err, errlen, "init_adapter: path too long");
        return -1;
    }
    return 0;
}

/* ["a", "b", ...] for messages (the first few names). */
static void names_text(char *buf, size_t cap, const char *const *names, int n) {
    size_t used = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < n && used < cap; i++) {
        int k = i == 6 ? snprintf(buf + used, cap - used, ", ...")
                       : snprintf(buf + used, cap - used, "%s\"%.40s\"", i ? ", " : "", names[i]);
        if (k < 0) return;
        used += (size_t)k;
        if (i == 6) break;
    }
    if (used < cap) snprintf(buf + used, cap - used, "]");
}

static int check_init_labels(const adapter_native_meta *meta, const char *const *labels,
                             int num_labels, char *err, size_t errlen) {
    if (num_labels > 0 && meta->num_labels != num_labels) {
        snprintf(err, errlen, "init_adapter: the adapter has %d label%s, this job %d",
                 meta->num_labels, meta->num_labels == 1 ? "" : "s", num_labels);
        return -1;
    }
    if (!labels || meta->task == TASK_REGRESSION) return 0;
    cJSON *arr = cJSON_Parse(meta->labels_json);
    int n = cJSON_GetArraySize(arr), rc = 0;
    const char **have = calloc((size_t)(n > 0 ? n : 1), sizeof *have);
    if (!have) {
        cJSON_Delete(arr);
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    bool same = n == num_labels;
    for (int i = 0; i < n; i++) {
        cJSON *it = cJSON_GetArrayItem(arr, i);
        have[i] = cJSON_IsString(it) ? it->valuestring : "?";
        same = same && strcmp(have[i], labels[i]) == 0;
    }
    if (!same) {
        char a[400], b[400];
        names_text(a, sizeof a, have, n);
        names_text(b, sizeof b, labels, num_labels);
        snprintf(err, errlen,
                 "init_adapter: the adapter's labels %s differ from this job's %s "
                 "(in class-id order)",
                 a, b);
        rc = -1;
    }
    free(have);
    cJSON_Delete(arr);
    return rc;
}

int job_check_init_adapter(const char *models_dir, const aflo_job_spec *s, const char *path,
                           const char *const *labels, int num_labels, char *err, size_t errlen) {
    char model_dir[4096], why[1024];
    aflo_config c;
    if (job_model_dir(models_dir, s->model, model_dir, sizeof model_dir, err, errlen) != 0 ||
        hfmodel_read_config(model_dir, &c, err, errlen) != 0)
        return -2;
    adapter_native_meta meta;
    if (adapter_native_read_meta(path, &meta, why, sizeof why) != 0) {
        snprintf(err, errlen, "init_adapter: %s", why);
        return -2;
    }
    /* the spec's target_modules as bits of the model's family; the file's
     * are its model type's family's (adapter_native_read_meta) */
    const aflo_family *fam = family_for_config(c.model_type, NULL, NULL, why, sizeof why);
    bool same_family = fam && family_for_model_type(meta.model_type, NULL) == fam;
    aflo_adapter_config ac;
    if (!fam || spec_to_adapter_config(s, fam, &ac, why, sizeof why) != 0) {
        snprintf(err, errlen, "init_adapter: %s", why);
        adapter_native_meta_free(&meta);
        return fam ? -1 : -2;
    }
    int rc = -1;
    if (meta.ac.method != ac.method)
        snprintf(err, errlen,
                 "init_adapter: the adapter was trained with method %s, this job uses "
                 "%s",
                 method_names[meta.ac.method], method_names[ac.method]);
    else if (ac.method != METHOD_FULL && meta.ac.rank != ac.rank)
        snprintf(err, errlen, "init_adapter: the adapter has rank %d, this job %d", meta.ac.rank,
                 ac.rank);
    else if (ac.method != METHOD_FULL && same_family && meta.ac.targets != ac.targets)
        snprintf(err, errlen,
                 "init_adapter: the adapter adapts other target_modules than this "
                 "job");
    else if (ac.method == METHOD_LORA && meta.ac.alpha != ac.alpha)
        snprintf(err, errlen, "init_adapter: the adapter has alpha %g, this job %g",
                 (double)meta.ac.alpha, (double)ac.alpha);
    else if (meta.task != s->task)
        snprintf(err, errlen, "init_adapter: the adapter is for %s, this job does %s",
                 s->task == TASK_REGRESSION ? "classification" : "regression",
                 s->task == TASK_REGRESSION ? "regression" : "classification");
    else if (strcmp(meta.model_type, c.model_type) != 0 || meta.hidden_size != c.hidden_size ||
             meta.intermediate_size != c.intermediate_size ||
             meta.num_hidden_layers != c.num_hidden_layers ||
             meta.num_attention_heads != c.num_attention_heads || meta.vocab_size != c.vocab_size)
        snprintf(err, errlen,
                 "init_adapter: the adapter was trained on a %s model (%d layers, hidden %d, "
                 "intermediate %d, %d heads, vocab %d); %s is %s (%d, %d, %d, %d, %d)",
                 meta.model_type, meta.num_hidden_layers, meta.hidden_size, meta.intermediate_size,
                 meta.num_attention_heads, meta.vocab_size, s->model, c.model_type,
                 c.num_hidden_layers, c.hidden_size, c.intermediate_size, c.num_attention_heads,
                 c.vocab_size);
    else
        rc = check_init_labels(&meta, labels, num_labels, err, errlen);
    adapter_native_meta_free(&meta);
    return rc;
}

/* ---------------------------------------------------------------- data */

static int resolve_data_path(const job_args *a, const char *ref, char *out, size_t outlen,
                             char *err, size_t errlen) {
    if (a->datasets_dir && spec_is_dataset_id(ref))
        return path_join(out, outlen, a->datasets_dir, ref, err, errlen);
    snprintf(out, outlen, "%s", ref);
    return 0;
}

/* Tokenise every row of td into d. */
static int tokenise(const tokenizer *tok, const textdata *td, int max_len, aflo_dataset *d,
                    const char *what, char *err, size_t errlen) {
    int32_t *ids = malloc((size_t)max_len * sizeof *ids),
            *tt = malloc((size_t)max_len * sizeof *tt);
    int rc = -1;
    if (!ids || !tt) {
        snprintf(err, errlen, "out of memory tokenising %s", what);
        goto done;
    }
    for (int i = 0; i < textdata_count(td); i++) {
        int len;
        char e[256];
        if (tokenizer_encode(tok, textdata_text_a(td, i), textdata_text_b(td, i), max_len, ids, tt,
                             &len, e, sizeof e) != 0) {
            snprintf(err, errlen, "%s, row %d: %s", what, i + 1, e);
            goto done;
        }
        if (dataset_add(d, ids, tt, len, textdata_label_id(td, i), textdata_label_value(td, i))) {
            snprintf(err, errlen, "out of memory tokenising %s", what);
            goto done;
        }
    }
    rc = 0;
done:
    free(ids);
    free(tt);
    return rc;
}

typedef struct {
    textdata train_td, eval_td;
    bool has_eval;
    aflo_dataset train, eval;
    const char **labels; /* label names by id (classification) */
    int num_labels;
    adapter_inputs inputs; /* how the training text was read, kept with the adapter */
} job_data;

static void job_data_free(job_data *jd) {
    textdata_free(&jd->train_td);
    if (jd->has_eval) textdata_free(&jd->eval_td);
    dataset_free(&jd->train);
    dataset_free(&jd->eval);
    free(jd->labels);
}

/* Classification: the label map of the training data into jd, and what the
 * spec asks of it that only the data can answer. */
static int check_labels(const aflo_job_spec *s, const textdata *train, job_data *jd, char *err,
                        size_t errlen) {
    int n = textdata_label_count(train);
    jd->num_labels = n;
    jd->labels = calloc((size_t)n + 1, sizeof *jd->labels);
    if (!jd->labels) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    char list[256] = ""; /* for messages: whole names only, then "..." */
    bool full = false;
    for (int i = 0; i < n; i++) {
        jd->labels[i] = textdata_label_name(train, i);
        size_t used = strlen(list);
        if (full || used + strlen(jd->labels[i]) + sizeof ", ..." > sizeof list) {
            if (!full) snprintf(list + used, sizeof list - used, ", ...");
            full = true;
            continue;
        }
        snprintf(list + used, sizeof list - used, "%s%s", i ? ", " : "", jd->labels[i]);
    }
    /* textdata enforces a declared num_labels; a mismatch is a bug here */
    if (s->num_labels != SPEC_NUM_LABELS_UNSET && s->num_labels != n) {
        snprintf(err, errlen, "num_labels: %d, but the training data gives %d classes (%s)",
                 s->num_labels, n, list);
        return -1;
    }
    if (n < 2) {
        snprintf(err, errlen, "dataset: the training data has only one label (%s)", list);
        return -1;
    }
    if (s->metric == SPEC_METRIC_F1 && n > 2) {
        snprintf(err, errlen,
                 "metric: f1 scores class 1 against the rest and needs a binary task, but the "
                 "training data has %d labels (%s); use \"accuracy\" or \"mcc\"",
                 n, list);
        return -1;
    }
    return 0;
}

/* The columns, header and format the training file is read with: what
 * prediction needs to read the same kind of file. */
static void record_inputs(const textdata_spec *ts, const char *train_path, adapter_inputs *in) {
    memset(in, 0, sizeof *in);
    const textdata_field *f[2] = {&ts->text_a, &ts->text_b};
    for (int i = 0; i < 2 && f[i]->kind != TEXTDATA_FIELD_NONE; i++) {
        adapter_text_field *t = &in->fields[i];
        t->by_index = f[i]->kind == TEXTDATA_FIELD_INDEX;
        t->index = f[i]->index;
        if (!t->by_index) snprintf(t->name, sizeof t->name, "%s", f[i]->name);
        in->n_fields = i + 1;
    }
    in->has_header = !ts->no_header;
    in->format = ts->format != TEXTDATA_AUTO ? ts->format : textdata_format_from_path(train_path);
}

static void log_msg(const job_args *a, const char *fmt, const char *arg);

/* causal_lm: JSON Lines rows rendered, tokenised and labelled (lmdata.h);
 * what was cut at max_seq_len or skipped is logged. */
static int load_lm_data(const job_args *a, const tokenizer *tok, int vocab_size,
                        const char *train_path, const char *eval_path, job_data *jd, char *err,
                        size_t errlen) {
    const aflo_job_spec *s = a->spec;
    lmdata_opts o = {.max_seq_len = s->max_seq_len,
                     .train_on_inputs = s->train_on_inputs,
                     .vocab_size = vocab_size};
    const char *paths[2] = {train_path, eval_path};
    aflo_dataset *sets[2] = {&jd->train, &jd->eval};
    const char *what[2] = {"training data", "evaluation data"};
    dataset_init(&jd->train);
    dataset_init(&jd->eval);
    for (int k = 0; k < (jd->has_eval ? 2 : 1); k++) {
        lmdata_stats st;
        /* the evaluation rows' prompts and completions, to judge generations by */
        o.keep_references = k == 1 && s->answer_rule != ANSWER_NONE;
        if (lmdata_load(paths[k], tok, &o, sets[k], &st, err, errlen)) return -1;
        char line[512], msg[600];
        lmdata_describe(&st, s->max_seq_len, line, sizeof line);
        snprintf(msg, sizeof msg, "%s: %s", what[k], line);
        log_msg(a, "%s", msg);
    }
    jd->num_labels = vocab_size;
    return 0;
}

static int load_data(const job_args *a, const char *model_dir, const tokenizer *tok, int vocab_size,
                     job_data *jd, char *err, size_t errlen) {
    const aflo_job_spec *s = a->spec;
    textdata_spec ts;
    char train_path[4096], eval_path[4096];
    memset(&ts, 0, sizeof ts);
    if (s->has_dataset) {
        if (spec_to_textdata_spec(s, &ts) != 0) {
            snprintf(err, errlen, "dataset: missing");
            return -1;
        }
        if (resolve_data_path(a, s->dataset.train, train_path, sizeof train_path, err, errlen))
            return -1;
        jd->has_eval = s->dataset.eval != NULL;
        if (jd->has_eval &&
            resolve_data_path(a, s->dataset.eval, eval_path, sizeof eval_path, err, errlen))
            return -1;
    } else {
        /* the demo model's own synthetic task */
        ts.format = TEXTDATA_TSV;
        ts.text_a = (textdata_field){TEXTDATA_FIELD_NAME, "sentence", 0};
        ts.label = (textdata_field){TEXTDATA_FIELD_NAME, "label", 0};
        ts.task = TEXTDATA_CLASSIFICATION;
        if (path_join(train_path, sizeof train_path, model_dir, "train.tsv", err, errlen) ||
            path_join(eval_path, sizeof eval_path, model_dir, "dev.tsv", err, errlen))
            return -1;
        jd->has_eval = true;
    }
    record_inputs(&ts, train_path, &jd->inputs);
    if (s->task == TASK_CAUSAL_LM)
        return load_lm_data(a, tok, vocab_size, train_path, eval_path, jd, err, errlen);
    ts.task = s->task == TASK_REGRESSION ? TEXTDATA_REGRESSION : TEXTDATA_CLASSIFICATION;
    /* The training file fixes the class ids (textdata.h: integers are their
     * own ids, other labels sorted, or as declared) and the checks that need
     * the whole label set run here, before any training. */
    if (textdata_load(train_path, &ts, &jd->train_td, err, errlen) != 0) return -1;
    if (s->task == TASK_CLASSIFICATION && check_labels(s, &jd->train_td, jd, err, errlen) != 0)
        return -1;
    if (s->task == TASK_REGRESSION) jd->num_labels = 1;
    if (jd->has_eval) {
        /* the evaluation file must use the training file's label ids */
        textdata_spec es = ts;
        if (s->task == TASK_CLASSIFICATION) {
            es.labels = jd->labels;
            es.num_labels = jd->num_labels;
            es.labels_origin = "the training data's labels";
        }
        if (textdata_load(eval_path, &es, &jd->eval_td, err, errlen) != 0) {
            jd->has_eval = false;
            return -1;
        }
    }
    dataset_init(&jd->train);
    dataset_init(&jd->eval);
    if (tokenise(tok, &jd->train_td, s->max_seq_len, &jd->train, "training data", err, errlen))
        return -1;
    if (jd->has_eval &&
        tokenise(tok, &jd->eval_td, s->max_seq_len, &jd->eval, "evaluation data", err, errlen))
        return -1;
    return 0;
}

/* ---------------------------------------------------------------- outputs */

static cJSON *metrics_object(const aflo_metrics *m) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    if (m->causal_lm) {
        cJSON_AddNumberToObject(o, "perplexity", exp(m->loss));
    } else if (m->classification) {
        cJSON_AddNumberToObject(o, "accuracy", m->accuracy);
        cJSON_AddNumberToObject(o, "f1", m->f1);
        cJSON_AddNumberToObject(o, "mcc", m->mcc);
    } else {
        cJSON_AddNumberToObject(o, "pearson", m->pearson);
        cJSON_AddNumberToObject(o, "spearman", m->spearman);
        cJSON_AddNumberToObject(o, "mse", m->mse);
    }
    if (m->has_exact_match) {
        cJSON_AddNumberToObject(o, "exact_match", m->exact_match);
        cJSON_AddNumberToObject(o, "exact_match_rows", m->judged);
    }
    cJSON_AddNumberToObject(o, "loss", m->loss);
    cJSON_AddNumberToObject(o, "n", m->n);
    return o;
}

/* Exact-match evaluation's detokenizer (lmeval.h): the job's tokenizer,
 * special tokens skipped. */
static int detok(void *ctx, const int32_t *ids, int n, char **text, size_t *len, char *err,
                 size_t errlen) {
    return tokenizer_decode(ctx, ids, (size_t)n, 1, text, len, err, errlen);
}

typedef struct {
    const job_args *a;
    cJSON *epochs; /* array of {epoch, step, metrics} */
    const char *checkpoint;
} run_ctx;

static void fwd_step(void *ctx, const aflo_step_info *i) {
    run_ctx *c = ctx;
    if (c->a->ev.on_step) c->a->ev.on_step(c->a->ev.ctx, i);
}

static void fwd_freeze(void *ctx, const aflo_freeze_event *e) {
    run_ctx *c = ctx;
    if (c->a->ev.on_freeze) c->a->ev.on_freeze(c->a->ev.ctx, e);
}

static void fwd_eval(void *ctx, const aflo_eval_info *e) {
    run_ctx *c = ctx;
    cJSON *o = cJSON_CreateObject();
    if (o) {
        cJSON_AddNumberToObject(o, "epoch", JOB_EPOCH_SHOWN(e->epoch));
        cJSON_AddNumberToObject(o, "step", (double)e->step);
        cJSON_AddItemToObject(o, "metrics", metrics_object(e->metrics));
        cJSON_AddItemToArray(c->epochs, o);
    }
    if (c->a->ev.on_eval) c->a->ev.on_eval(c->a->ev.ctx, e);
}

static int save_at_epoch_end(void *ctx, aflo_trainer *t, int epoch, char *err, size_t errlen) {
    (void)epoch;
    run_ctx *c = ctx;
    return trainer_save_checkpoint(t, c->checkpoint, err, errlen);
}

static void log_msg(const job_args *a, const char *fmt, const char *arg) {
    if (!a->ev.on_log) return;
    char buf[1200];
    snprintf(buf, sizeof buf, fmt, arg);
    a->ev.on_log(a->ev.ctx, buf);
}

static long frozen_step_of(const void *ctx, const aflo_param *p) {
    return trainer_frozen_step(ctx, p);
}

/* The base model as a PEFT user can name it: the model folder's own
 * _name_or_path (a Hub id, or the path transformers loaded it from) when it
 * records one; otherwise the name the spec gave, which only this daemon
 * resolves (the PEFT README says which). */
typedef struct {
    char name[4096];
    adapter_base_source source;
} base_name;

static int resolve_base_name(const char *model, const char *model_dir, base_name *b, char *err,
                             size_t errlen) {
    int found = hfmodel_name_or_path(model_dir, b->name, sizeof b->name, err, errlen);
    if (found < 0) return -1;
    b->source = found ? ADAPTER_BASE_NAME_OR_PATH : ADAPTER_BASE_LOCAL_NAME;
    if (!found) snprintf(b->name, sizeof b->name, "%s", model);
    return 0;
}

static int write_outputs(const job_args *a, const char *model_dir, aflo_model *m, aflo_trainer *t,
                         const job_data *jd, const base_name *base, const char *metrics_json,
                         char *err, size_t errlen) {
    char dir[4096], path[4096];
    if (path_join(dir, sizeof dir, a->work_dir, "adapter", err, errlen) != 0 ||
        make_dir(dir, err, errlen) != 0)
        return -1;
    /* the native file keeps the spec's name: aflorad resolves it */
    adapter_export_info info = {.base_model = a->spec->model,
                                .labels = jd->labels,
                                .metrics_json = metrics_json,
                                .frozen_step = frozen_step_of,
                                .frozen_ctx = t,
                                .inputs = &jd->inputs};
    if (path_join(path, sizeof path, dir, "adapter.safetensors", err, errlen) != 0 ||
        adapter_export_native(m, path, &info, err, errlen) != 0)
        return -1;
    if (a->spec->method == METHOD_FULL) {
        /* the whole model, usable as --model and as a base model */
        if (path_join(path, sizeof path, dir, "model", err, errlen) != 0 ||
            adapter_export_hf_model(m, path, model_dir, &info, err, errlen) != 0)
            return -1;
    } else {
        info.base_model = base->name;
        info.base_model_source = base->source;
        if (path_join(path, sizeof path, dir, "peft", err, errlen) != 0 ||
            adapter_export_peft(m, path, &info, err, errlen) != 0)
            return -1;
    }
    if (path_join(path, sizeof path, a->work_dir, "metrics.json", err, errlen) != 0) return -1;
    return write_file_atomic(path, metrics_json, strlen(metrics_json), err, errlen);
}

static char *summary_json(const aflo_train_summary *s, cJSON *epochs, int num_labels,
                          const char *const *labels) {
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    /* null without evaluation: the last epoch's adapter was kept */
    if (s->best_epoch >= 0) {
        cJSON_AddNumberToObject(o, "best_epoch", JOB_EPOCH_SHOWN(s->best_epoch));
        cJSON_AddItemToObject(o, "best", metrics_object(&s->best_metrics));
    } else {
        cJSON_AddNullToObject(o, "best_epoch");
    }
    cJSON_AddItemReferenceToObject(o, "epochs", epochs);
    cJSON_AddNumberToObject(o, "steps", (double)s->steps_done);
    cJSON_AddNumberToObject(o, "final_loss", s->last_loss);
    cJSON *fl = cJSON_AddObjectToObject(o, "flops");
    for (int k = 0; k < FLOP_KINDS; k++)
        cJSON_AddNumberToObject(fl, flop_kind_names[k], (double)s->flops.by_kind[k]);
    cJSON_AddNumberToObject(o, "trainable_params_avg", s->trainable_avg);
    cJSON_AddNumberToObject(o, "trainable_params_final", (double)s->trainable_final);
    cJSON_AddNumberToObject(o, "elapsed_s", s->elapsed_s);
    if (labels) {
        cJSON *l = cJSON_AddArrayToObject(o, "labels");
        for (int i = 0; i < num_labels && labels[i]; i++)
            cJSON_AddItemToArray(l, cJSON_CreateString(labels[i]));
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return text;
}

/* ---------------------------------------------------------------- checkpoint records */

/* Spec fields that may differ between a checkpoint and the run resuming it:
 * threads changes speed, not what is trained (the checked thread count only
 * decides bit-identity with an uninterrupted run: resume_notes says so);
 * the datasets are compared by their content (data_record), not by path. */
static const char *const RESUME_FREE_FIELDS[] = {"threads", "dataset.train", "dataset.eval"};

static bool resume_free(const char *path) {
    for (size_t i = 0; i < sizeof RESUME_FREE_FIELDS / sizeof *RESUME_FREE_FIELDS; i++)
        if (strcmp(path, RESUME_FREE_FIELDS[i]) == 0) return true;
    return false;
}

/* Spec fields added after checkpoints began recording their run, with the
 * value every run had before the field existed: a record without one ran
 * that way, so a spec at that value is the same run (a checkpoint of an
 * older daemon still resumes) and any other value is a difference. */
static const struct {
    const char *path, *json;
} RESUME_ADDED_FIELDS[] = {
    {"freeze.enabled", "true"},
    {"freeze.sensitivity", "\"grad\""},
};

static bool added_at_old_value(const char *path, const cJSON *now) {
    for (size_t i = 0; i < sizeof RESUME_ADDED_FIELDS / sizeof *RESUME_ADDED_FIELDS; i++) {
        if (strcmp(path, RESUME_ADDED_FIELDS[i].path) != 0) continue;
        cJSON *old = cJSON_Parse(RESUME_ADDED_FIELDS[i].json);
        bool same = old && cJSON_Compare(old, now, true);
        cJSON_Delete(old);
        return same;
    }
    return false;
}

typedef struct {
    char *out;
    size_t cap, len;
    int count;
} diff_buf;

static void diff_add(diff_buf *d, const char *path, const cJSON *then, const cJSON *now) {
    char *a = then ? cJSON_PrintUnformatted(then) : NULL;
    char *b = now ? cJSON_PrintUnformatted(now) : NULL;
    if (d->len < d->cap) {
        int n = snprintf(d->out + d->len, d->cap - d->len, "%s%s: checkpoint %s, spec %s",
                         d->count ? "; " : "", path, a ? a : "(not set)", b ? b : "(not set)");
        d->len = n < 0 ? d->cap : d->len + (size_t)n;
    }
    d->count++;
    free(a);
    free(b);
}

/* Compare two spec objects key by key (nested objects by their keys). */
static void diff_objects(diff_buf *d, const char *prefix, const cJSON *then, const cJSON *now) {
    const cJSON *it;
    char path[SPEC_FIELD_PATH_MAX];
    cJSON_ArrayForEach (it, then) {
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        if (resume_free(path)) continue;
        const cJSON *other = cJSON_GetObjectItemCaseSensitive(now, it->string);
        if (cJSON_IsObject(it) && cJSON_IsObject(other))
            diff_objects(d, path, it, other);
        else if (!other || !cJSON_Compare(it, other, true))
            diff_add(d, path, it, other);
    }
    cJSON_ArrayForEach (it, now) { /* set now, absent then */
        snprintf(path, sizeof path, "%s%s%s", prefix, *prefix ? "." : "", it->string);
        if (!resume_free(path) && !cJSON_GetObjectItemCaseSensitive(then, it->string) &&
            !added_at_old_value(path, it))
            diff_add(d, path, NULL, it);
    }
}

static int spec_diff_trees(const cJSON *then, const cJSON *now, char *out, size_t outlen) {
    if (!cJSON_IsObject(then) || !cJSON_IsObject(now)) return -1;
    diff_buf d = {.out = out, .cap = outlen, .len = 0, .count = 0};
    if (outlen) out[0] = '\0';
    diff_objects(&d, "", then, now);
    return d.count;
}

int job_spec_differences(const char *checkpoint_spec, const char *spec, char *out, size_t outlen) {
    cJSON *then = cJSON_Parse(checkpoint_spec), *now = cJSON_Parse(spec);
    int n = spec_diff_trees(then, now, out, outlen);
    cJSON_Delete(then);
    cJSON_Delete(now);
    return n;
}

/* FNV-1a over every example's tokens, token types, label and target: equal
 * for the same rows read the same way (file, columns, labels, tokenizer,
 * max_seq_len), different when any of that changed. */
static uint64_t fnv1a(uint64_t h, const void *p, size_t n) {
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t data_fingerprint(const aflo_dataset *d) {
    uint64_t h = 0xcbf29ce484222325ULL;
    for (int i = 0; i < d->n; i++) {
        size_t from = d->offsets[i], len = d->offsets[i + 1] - from;
        uint64_t l = len;
        h = fnv1a(h, &l, sizeof l);
        h = fnv1a(h, d->ids + from, len * sizeof *d->ids);
        h = fnv1a(h, d->type_ids + from, len * sizeof *d->type_ids);
        h = fnv1a(h, &d->labels[i], sizeof d->labels[i]);
        h = fnv1a(h, &d->targets[i], sizeof d->targets[i]);
    }
    return h;
}

static cJSON *data_record(const aflo_dataset *d, const char *file) {
    cJSON *o = cJSON_CreateObject();
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)data_fingerprint(d));
    if (!o || !cJSON_AddNumberToObject(o, "rows", d->n) ||
        !cJSON_AddStringToObject(o, "fingerprint", hex) ||
        !cJSON_AddStringToObject(o, "file", file)) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static const char *train_file(const aflo_job_spec *s) {
    return s->has_dataset ? s->dataset.train : "the demo's train.tsv";
}

static const char *eval_file(const aflo_job_spec *s) {
    return s->has_dataset ? s->dataset.eval : "the demo's dev.tsv";
}

/* What this run is: {"spec": <normalised spec, exact text>, "data": {"train":
 * {rows, fingerprint, file}, "eval": ... or null}}. malloc'd or NULL. */
static char *run_record(const aflo_job_spec *s, const job_data *jd) {
    char *spec = spec_to_json_string(s, false);
    cJSON *data = cJSON_CreateObject();
    char *data_text = NULL, *out = NULL;
    if (!spec || !data ||
        !cJSON_AddItemToObject(data, "train", data_record(&jd->train, train_file(s))) ||
        !cJSON_AddItemToObject(data, "eval",
                               jd->has_eval ? data_record(&jd->eval, eval_file(s))
                                            : cJSON_CreateNull()) ||
        !(data_text = cJSON_PrintUnformatted(data)))
        goto done;
    size_t n = strlen(spec) + strlen(data_text) + 32;
    if ((out = malloc(n))) snprintf(out, n, "{\"spec\":%s,\"data\":%s}", spec, data_text);
done:
    free(spec);
    free(data_text);
    cJSON_Delete(data);
    return out;
}

static int refuse(const job_args *a, const char *checkpoint, const char *what, char *err,
                  size_t errlen) {
    snprintf(err, errlen, "checkpoint %s was made for a different run: %s%s%s", checkpoint, what,
             a->mismatch_hint ? "; " : "", a->mismatch_hint ? a->mismatch_hint : "");
    return -1;
}

/* Before anything is built: the recorded spec must match this one. */
static int check_recorded_spec(const job_args *a, const cJSON *record, const char *checkpoint,
                               char *err, size_t errlen) {
    char *text = spec_to_json_string(a->spec, false);
    cJSON *now = text ? cJSON_Parse(text) : NULL;
    free(text);
    if (!now) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    const cJSON *then = cJSON_GetObjectItemCaseSensitive(record, "spec");
    char diffs[1024];
    int n = spec_diff_trees(then, now, diffs, sizeof diffs);
    int rc = 0;
    if (n < 0) {
        snprintf(err, errlen, "checkpoint %s: its record of the run is damaged%s%s", checkpoint,
                 a->mismatch_hint ? "; " : "", a->mismatch_hint ? a->mismatch_hint : "");
        rc = -1;
    } else if (n > 0) {
        rc = refuse(a, checkpoint, diffs, err, errlen);
    } else {
        const cJSON *t = cJSON_GetObjectItemCaseSensitive(then, "threads");
        if (cJSON_IsNumber(t) && t->valueint != a->spec->threads) {
            char note[200];
            snprintf(note, sizeof note,
                     "threads: checkpoint %d, now %d: the run goes on, but "
                     "its results will not be bit-identical to an uninterrupted run",
                     t->valueint, a->spec->threads);
            log_msg(a, "%s", note);
        }
    }
    cJSON_Delete(now);
    return rc;
}

/* After tokenising: the recorded data must be this data. */
static int check_one_dataset(const job_args *a, const cJSON *then, const aflo_dataset *now,
                             bool has_now, const char *field, const char *file,
                             const char *checkpoint, char *err, size_t errlen) {
    char what[1024];
    if (cJSON_IsNull(then) && !has_now) return 0;
    if (cJSON_IsNull(then) || !has_now) {
        snprintf(what, sizeof what, "%s: checkpoint %s, spec %s", field,
                 has_now ? "has none" : "has one", has_now ? "has one" : "has none");
        return refuse(a, checkpoint, what, err, errlen);
    }
    const char *fp = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(then, "fingerprint"));
    const char *was = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(then, "file"));
    const cJSON *rows = cJSON_GetObjectItemCaseSensitive(then, "rows");
    char hex[17];
    snprintf(hex, sizeof hex, "%016llx", (unsigned long long)data_fingerprint(now));
    if (fp && strcmp(fp, hex) == 0) return 0;
    snprintf(what, sizeof what,
             "%s: the data differs from the checkpoint's (checkpoint %d rows of %s, now %d rows "
             "of %s)",
             field, cJSON_IsNumber(rows) ? rows->valueint : -1, was ? was : "?", now->n, file);
    return refuse(a, checkpoint, what, err, errlen);
}

static int check_recorded_data(const job_args *a, const cJSON *record, const job_data *jd,
                               const char *checkpoint, char *err, size_t errlen) {
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(record, "data");
    const cJSON *train = cJSON_GetObjectItemCaseSensitive(data, "train");
    const cJSON *eval = cJSON_GetObjectItemCaseSensitive(data, "eval");
    if (!cJSON_IsObject(train) || !eval) {
        snprintf(err, errlen, "checkpoint %s: its record of the run is damaged", checkpoint);
        return -1;
    }
    if (check_one_dataset(a, train, &jd->train, true, "dataset.train", train_file(a->spec),
                          checkpoint, err, errlen) != 0)
        return -1;
    return check_one_dataset(a, eval, &jd->eval, jd->has_eval, "dataset.eval", eval_file(a->spec),
                             checkpoint, err, errlen);
}

/* ---------------------------------------------------------------- the job */

/* The memory the job will hold (train/memory.h), logged before the model
 * loads; a job whose estimate exceeds what the machine has (sysmem.h) is
 * refused, naming the estimate, the limit and what to lower. The
 * activations grow with batch_size x the longest example, which max_seq_len
 * caps; the weights do not shrink with either. The plan follows the folder
 * (16-bit weights stay 16-bit under an adapter method) and the spec's
 * activation_checkpointing, whose "auto" also turns it on when the job fits
 * only with it; *checkpointing says what was chosen. When the limit cannot
 * be read the estimate is logged and the job runs. */
static int check_memory(const job_args *a, const char *model_dir, const aflo_config *mc,
                        const aflo_adapter_config *ac, const job_data *jd, bool *checkpointing,
                        char *err, size_t errlen) {
    const aflo_job_spec *s = a->spec;
    *checkpointing = s->task == TASK_CAUSAL_LM && s->activation_checkpointing == CHECKPOINTING_ON;
    int seq = jd->train.max_len;
    if (jd->has_eval && jd->eval.max_len > seq) seq = jd->eval.max_len;
    if (seq < 1) seq = 1; /* as trainer_create reserves */
    char why[512], limit_why[512];
    size_t limit;
    const char *source;
    int known = sysmem_limit(&limit, &source, limit_why, sizeof limit_why);
    if (known < 0) {
        snprintf(err, errlen, "memory: %s", limit_why);
        return -1;
    }
    hf_model_info info;
    bool half = ac->method != METHOD_FULL && hfmodel_info(model_dir, &info, why, sizeof why) == 0 &&
                (strcmp(info.dtype, "BF16") == 0 || strcmp(info.dtype, "F16") == 0);
    aflo_checkpointing ck =
        s->task == TASK_CAUSAL_LM ? s->activation_checkpointing : CHECKPOINTING_OFF;
    size_t data =
        train_dataset_bytes(&jd->train) + (jd->has_eval ? train_dataset_bytes(&jd->eval) : 0);
    aflo_memory_plan_choice plan;
    if (train_estimate_memory_plan(
            mc, ac, s->task, jd->num_labels, s->batch_size, seq, jd->has_eval, half, ck,
            known == 0 && limit > data ? limit - data : 0, &plan, why, sizeof why) != 0) {
        log_msg(a, "memory: not estimated (%s)", why);
        return 0; /* the model load reports the problem itself */
    }
    *checkpointing = plan.checkpointing;
    aflo_job_memory est = plan.mem;
    est.data = data;
    train_memory_total(&est);
    char total[32], w[32], act[32], opt[32], gr[32], dat[32], parts[400];
    sysmem_format(total, sizeof total, est.total);
    sysmem_format(w, sizeof w, est.weights);
    sysmem_format(act, sizeof act, est.activations);
    sysmem_format(opt, sizeof opt, est.optimizer);
    sysmem_format(gr, sizeof gr, est.grads);
    sysmem_format(dat, sizeof dat, est.data);
    snprintf(parts, sizeof parts,
             "weights %s (%s), activations %s (batch %d x %d tokens%s), optimizer %s, "
             "gradients %s, data %s",
             w, plan.half_weights ? "frozen base 16-bit" : "fp32", act, s->batch_size, seq,
             plan.checkpointing ? ", checkpointed" : "", opt, gr, dat);
    char line[1000];
    if (known > 0) {
        snprintf(line, sizeof line, "estimated %s (%s); not checked: %s", total, parts, limit_why);
        log_msg(a, "memory: %s", line);
        return 0;
    }
    char lim[32];
    sysmem_format(lim, sizeof lim, limit);
    snprintf(line, sizeof line, "estimated %s (%s); %s %s", total, parts, source, lim);
    log_msg(a, "memory: %s", line);
    if (est.total <= limit) return 0;
    /* would checkpointing, which the spec turned off, make it fit? */
    bool ckpt_fits = !plan.checkpointing && plan.can_checkpoint && plan.with.total + data <= limit;
    char with[32];
    sysmem_format(with, sizeof with, plan.with.total + data);
    char ckpt_hint[200];
    snprintf(ckpt_hint, sizeof ckpt_hint,
             "set activation_checkpointing to \"on\" (or \"auto\"): the job would then need "
             "an estimated %s",
             with);
    const char *hint =
        ckpt_fits ? ckpt_hint
        : est.weights + est.grads + est.optimizer + est.data > limit
            ? "the weights and optimizer alone exceed it: use a smaller model or a machine with "
              "more memory"
            : "lower batch_size or max_seq_len (activations grow with batch_size x the longest "
              "example), or use a smaller model";
    snprintf(err, errlen,
             "memory: this job needs an estimated %s (%s) but %s is %s; %s (batch_size %d, "
             "max_seq_len %d, longest example %d tokens)",
             total, parts, source, lim, hint, s->batch_size, s->max_seq_len, seq);
    return -1;
}

job_outcome job_run(const job_args *a, job_result *r, char *err, size_t errlen) {
    const aflo_job_spec *s = a->spec;
    memset(r, 0, sizeof *r);
    char model_dir[4096], checkpoint[4096];
    base_name base;
    job_data jd;
    memset(&jd, 0, sizeof jd);
    tokenizer *tok = NULL;
    aflo_model *m = NULL;
    aflo_trainer *t = NULL;
    run_ctx rc = {.a = a, .epochs = cJSON_CreateArray(), .checkpoint = checkpoint};
    job_outcome out = JOB_FAILED;
    char *recorded_text = NULL, *record_text = NULL;
    cJSON *recorded = NULL; /* the checkpoint's record of its run, when it has one */
    if (!rc.epochs) {
        snprintf(err, errlen, "out of memory");
        return JOB_FAILED;
    }
    if (make_dir(a->work_dir, err, errlen) != 0 ||
        path_join(checkpoint, sizeof checkpoint, a->work_dir, "checkpoint.ckpt", err, errlen))
        goto done;
    engine_set_threads(s->threads); /* this thread's kernels; OpenBLAS is the caller's */
    if (file_exists(checkpoint) && a->restart) {
        if (unlink(checkpoint) != 0) {
            snprintf(err, errlen, "%s: cannot remove: %s", checkpoint, strerror(errno));
            goto done;
        }
        log_msg(a, "discarded the checkpoint in %s: starting over", a->work_dir);
    }
    if (file_exists(checkpoint)) {
        /* whose is it? refuse before the model and data are loaded */
        if (checkpoint_read_note(checkpoint, &recorded_text, err, errlen) != 0) goto done;
        if (!recorded_text)
            log_msg(a, "%s",
                    "the checkpoint was written before checkpoints recorded their "
                    "spec: resuming without checking it");
        else if (!(recorded = cJSON_Parse(recorded_text))) {
            snprintf(err, errlen, "checkpoint %s: its record of the run is damaged", checkpoint);
            goto done;
        } else if (check_recorded_spec(a, recorded, checkpoint, err, errlen) != 0) {
            goto done;
        }
    }
    if (job_model_dir(a->models_dir, s->model, model_dir, sizeof model_dir, err, errlen) != 0 ||
        resolve_base_name(s->model, model_dir, &base, err, errlen) != 0)
        goto done;
    /* The API's check, again: an unusable folder fails here with the same
     * reason GET /models gives, before any data is read. */
    aflo_config mc;
    bool config_read;
    if (hfmodel_probe(model_dir, &mc, &config_read, err, errlen) != 0) goto done;
    /* a causal LM without tokenizer files trains on {"input_ids"} rows
     * (lmdata says so for any other row) */
    if (s->task != TASK_CAUSAL_LM ||
        tokenizer_probe_dir(model_dir, err, errlen) != TOKENIZER_NONE) {
        tok = tokenizer_load_dir(model_dir, err, errlen);
        if (!tok) goto done;
    }
    if (load_data(a, model_dir, tok, mc.vocab_size, &jd, err, errlen) != 0) goto done;
    if (recorded && check_recorded_data(a, recorded, &jd, checkpoint, err, errlen) != 0) goto done;
    if (!(record_text = run_record(s, &jd))) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }

    /* target_modules name the modules of the model's family */
    aflo_adapter_config ac;
    const aflo_family *fam = NULL;
    if (!(fam = family_for_config(mc.model_type, NULL, NULL, err, errlen)) ||
        spec_to_adapter_config(s, fam, &ac, err, errlen) != 0)
        goto done;
    bool checkpointing;
    if (check_memory(a, model_dir, &mc, &ac, &jd, &checkpointing, err, errlen) != 0) goto done;
    hf_load_report rep;
    m = hfmodel_load(model_dir, &ac, s->task, jd.num_labels, s->seed, &rep, err, errlen);
    if (!m) goto done;
    if (rep.info[0]) log_msg(a, "model: %s", rep.info);
    if (rep.tensors_half) {
        char n[16];
        snprintf(n, sizeof n, "%d", rep.tensors_half);
        log_msg(a, "model: %s frozen weights kept 16-bit, mapped from the folder", n);
    }
    if (model_set_checkpointing(m, checkpointing, err, errlen) != 0) goto done;
    if (checkpointing) log_msg(a, "%s", "activation checkpointing: on");
    if (s->init_adapter) {
        /* every class id has a name (textdata.h: ids the data lacks by their
         * number); regression has none */
        char init[4096];
        if (job_init_adapter_path(a->jobs_dir, s->init_adapter, init, sizeof init, err, errlen) ||
            job_check_init_adapter(a->models_dir, s, init, jd.labels, jd.num_labels, err, errlen) ||
            adapter_import_native(m, init, err, errlen))
            goto done;
    }

    aflo_train_config tc;
    spec_to_train_config(s, &tc);
    tc.pad_id = tok ? tokenizer_pad_id(tok) : -1;
    /* LLaMA tokenizers often have no pad token: any id does, the mask and
     * LABEL_IGNORE hide the padding */
    if (tc.pad_id < 0) tc.pad_id = tok && tokenizer_eos_id(tok) >= 0 ? tokenizer_eos_id(tok) : 0;
    tc.gen_eval.eos_id = tok ? tokenizer_eos_id(tok) : -1;
    tc.gen_eval.detok = detok;
    tc.gen_eval.detok_ctx = tok;
    t = trainer_create(m, &tc, &jd.train, jd.has_eval ? &jd.eval : NULL, err, errlen);
    if (!t) goto done;
    if (trainer_set_checkpoint_note(t, record_text) != 0) {
        snprintf(err, errlen, "out of memory (or a spec over 1 MiB)");
        goto done;
    }
    if (file_exists(checkpoint)) {
        if (trainer_load_checkpoint(t, checkpoint, err, errlen) != 0) goto done;
        if (a->ev.on_resume) a->ev.on_resume(a->ev.ctx, trainer_step(t));
    }
    aflo_progress pr = {.ctx = &rc,
                        .on_step = fwd_step,
                        .on_freeze = fwd_freeze,
                        .on_eval = fwd_eval,
                        .on_epoch_end = save_at_epoch_end};
    aflo_train_status st = trainer_run(t, &pr, a->cancel, &r->summary, err, errlen);
    if (st == TRAIN_FAILED) goto done;
    if (st == TRAIN_CANCELLED) {
        if (trainer_save_checkpoint(t, checkpoint, err, errlen) != 0) goto done;
        out = JOB_CANCELLED;
        goto done;
    }
    trainer_restore_best(t);
    r->metrics_json = summary_json(&r->summary, rc.epochs, jd.num_labels, jd.labels);
    if (!r->metrics_json) {
        snprintf(err, errlen, "out of memory");
        goto done;
    }
    if (write_outputs(a, model_dir, m, t, &jd, &base, r->metrics_json, err, errlen) != 0) goto done;
    unlink(checkpoint);
    out = JOB_SUCCEEDED;
done:
    if (out != JOB_SUCCEEDED) {
        free(r->metrics_json);
        r->metrics_json = NULL;
    }
    cJSON_Delete(rc.epochs);
    cJSON_Delete(recorded);
    free(recorded_text);
    free(record_text);
    trainer_free(t);
    model_free(m);
    job_data_free(&jd);
    tokenizer_free(tok);
    return out;
}

void job_result_free(job_result *r) {
    free(r->metrics_json);
    r->metrics_json = NULL;
}
