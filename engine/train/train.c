/* train.c — the training loop (see train.h for the order of a step). */
#include "train/train.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "base/errmsg.h"
#include "base/rng.h"
#include "train/train_internal.h"

double train_default_initial_warmup_epochs(int epochs) {
    return epochs >= TRAIN_SHORT_RUN_EPOCHS ? (double)TRAIN_DEFAULT_INITIAL_WARMUP_EPOCHS
                                            : epochs * TRAIN_SHORT_RUN_INITIAL_PERCENT / 100.0;
}

double train_default_final_warmup_epochs(int epochs) {
    return epochs * TRAIN_DEFAULT_FINAL_WARMUP_PERCENT / 100.0;
}

void train_config_defaults(aflo_train_config *tc, int epochs) {
    memset(tc, 0, sizeof *tc);
    tc->epochs = epochs;
    tc->batch_size = TRAIN_DEFAULT_BATCH_SIZE;
    tc->grad_accum = TRAIN_DEFAULT_GRAD_ACCUM;
    tc->lr = (float)TRAIN_DEFAULT_LR;
    tc->head_lr = (float)TRAIN_DEFAULT_HEAD_LR;
    tc->weight_decay = (float)TRAIN_DEFAULT_WEIGHT_DECAY;
    tc->warmup_ratio = (float)TRAIN_DEFAULT_WARMUP_RATIO;
    tc->max_grad_norm = (float)TRAIN_DEFAULT_MAX_GRAD_NORM;
    tc->adam_beta1 = TRAIN_ADAM_BETA1;
    tc->adam_beta2 = TRAIN_ADAM_BETA2;
    tc->adam_eps = TRAIN_ADAM_EPS;
    tc->freeze_initial_epochs = train_default_initial_warmup_epochs(epochs);
    tc->freeze_final_epochs = train_default_final_warmup_epochs(epochs);
    tc->delta_t = AFLO_FREEZE_DEFAULT_DELTA_T;
    tc->score_beta1 = AFLO_FREEZE_DEFAULT_BETA1;
    tc->score_beta2 = AFLO_FREEZE_DEFAULT_BETA2;
    tc->freeze_enabled = true;
    tc->freeze_sensitivity = FREEZE_SENS_GRAD;
    tc->seed = TRAIN_DEFAULT_SEED;
    tc->dropout = TRAIN_DEFAULT_DROPOUT;
    tc->pad_id = 0;
    tc->select_metric = NULL;
    tc->length_bucketing = TRAIN_DEFAULT_LENGTH_BUCKETING;
    tc->gen_eval = (aflo_gen_eval){
        .rule = ANSWER_NONE, .max_new_tokens = LMEVAL_DEFAULT_MAX_NEW_TOKENS, .eos_id = -1};
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static bool decays(const aflo_param *p) {
    /* Hugging Face's convention: no weight decay on biases and LayerNorm. */
    return p->role != PROLE_BIAS && p->role != PROLE_NORM_WEIGHT && p->role != PROLE_NORM_BIAS;
}

static int validate(const aflo_model *m, const aflo_train_config *tc, const aflo_dataset *train,
                    const aflo_dataset *eval, char *err, size_t errlen) {
#define CHECK(cond, ...)                                       \
    do {                                                       \
        if (!(cond)) return set_err(err, errlen, __VA_ARGS__); \
    } while (0)
    CHECK(train && train->n > 0, "dataset: the training set is empty");
    CHECK((model_task(m) == TASK_CAUSAL_LM) == (train->token_labels != NULL), "dataset: %s",
          model_task(m) == TASK_CAUSAL_LM ? "a causal LM trains on examples with labels per token"
                                          : "examples with labels per token need a causal LM");
    CHECK(tc->epochs >= 1, "epochs: must be >= 1");
    CHECK(tc->batch_size >= 1, "batch_size: must be >= 1");
    CHECK(tc->grad_accum >= 1, "grad_accum: must be >= 1");
    CHECK(tc->lr > 0 && isfinite(tc->lr), "learning_rate: must be > 0");
    CHECK(tc->head_lr > 0 && isfinite(tc->head_lr), "head_learning_rate: must be > 0");
    CHECK(tc->weight_decay >= 0, "weight_decay: must be >= 0");
    CHECK(tc->warmup_ratio >= 0 && tc->warmup_ratio < 1, "warmup_ratio: must be in [0, 1)");
    CHECK(tc->delta_t >= 1, "delta_t: must be >= 1");
    CHECK(tc->score_beta1 >= 0 && tc->score_beta1 < 1, "beta1: must be in [0, 1)");
    CHECK(tc->score_beta2 >= 0 && tc->score_beta2 < 1, "beta2: must be in [0, 1)");
    CHECK(tc->freeze_initial_epochs >= 0 && tc->freeze_final_epochs >= 0,
          "freeze warm-up epochs must be >= 0");
    CHECK(tc->freeze_initial_epochs + tc->freeze_final_epochs <= tc->epochs,
          "initial_warmup_epochs + final_warmup_epochs (%g + %g) exceed epochs (%d)",
          tc->freeze_initial_epochs, tc->freeze_final_epochs, tc->epochs);
    if (tc->gen_eval.rule != ANSWER_NONE) {
        CHECK(model_task(m) == TASK_CAUSAL_LM, "answer_rule: applies only to a causal LM");
        /* without evaluation data it has nothing to do */
        if (eval && eval->n > 0 && lmeval_check(&tc->gen_eval, eval, err, errlen)) return -1;
    }
#undef CHECK
    return 0;
}

void trainer_free(aflo_trainer *t) {
    if (!t) return;
    if (t->adam)
        for (int i = 0; i < t->np; i++) adam_state_free(&t->adam[i]);
    free(t->p);
    free(t->adam);
    free(t->grads);
    free(t->sizes);
    free(t->fp);
    free(t->fp_index);
    free(t->fgrads);
    free(t->fparams);
    free(t->newly);
    freezer_free(t->freezer);
    free(t->order);
    free(t->best);
    free(t->ckpt_note);
    batch_buffers_free(&t->bb);
    free(t);
}

aflo_trainer *trainer_create(aflo_model *m, const aflo_train_config *tc, const aflo_dataset *train,
                             const aflo_dataset *eval, char *err, size_t errlen) {
    if (validate(m, tc, train, eval, err, errlen) != 0) return NULL;
    aflo_trainer *t = calloc(1, sizeof *t);
    if (!t) goto oom;
    t->m = m;
    t->tc = *tc;
    t->train = train;
    t->eval = eval;
    long batches = (train->n + tc->batch_size - 1) / tc->batch_size;
    t->steps_per_epoch = (batches + tc->grad_accum - 1) / tc->grad_accum;
    t->total_steps = t->steps_per_epoch * tc->epochs;
    t->warmup_steps = (long)ceil(tc->warmup_ratio * (double)t->total_steps);
    t->best_epoch = -1;
    t->best_score = -INFINITY;

    int n = model_param_count(m);
    t->p = calloc((size_t)n, sizeof *t->p);
    t->adam = calloc((size_t)n, sizeof *t->adam);
    t->grads = calloc((size_t)n, sizeof *t->grads);
    t->sizes = calloc((size_t)n, sizeof *t->sizes);
    t->fp = calloc((size_t)n, sizeof *t->fp);
    t->fp_index = calloc((size_t)n, sizeof *t->fp_index);
    t->fgrads = calloc((size_t)n, sizeof *t->fgrads);
    t->fparams = calloc((size_t)n, sizeof *t->fparams);
    t->newly = calloc((size_t)n, sizeof *t->newly);
    t->order = calloc((size_t)train->n * (tc->length_bucketing ? 2 : 1), sizeof *t->order);
    if (!t->p || !t->adam || !t->grads || !t->sizes || !t->fp || !t->fp_index || !t->fgrads ||
        !t->fparams || !t->newly || !t->order)
        goto oom;

    bool freezing = model_adapter_config(m)->method == METHOD_AFLORA;
    bool *ftrain = calloc((size_t)n, sizeof *ftrain);
    size_t *fsizes = calloc((size_t)n, sizeof *fsizes);
    if (!ftrain || !fsizes) {
        free(ftrain);
        free(fsizes);
        goto oom;
    }
    for (int i = 0; i < n; i++) {
        aflo_param *p = model_param(m, i);
        int pi = -1;
        if (p->trainable) {
            pi = t->np++;
            t->p[pi] = p;
            t->grads[pi] = p->grad;
            t->sizes[pi] = p->size;
            if (adam_state_init(&t->adam[pi], p->size) != 0) {
                free(ftrain);
                free(fsizes);
                goto oom;
            }
        }
        if (freezing && (p->role == PROLE_A || p->role == PROLE_B)) {
            t->fp[t->nf] = p;
            t->fp_index[t->nf] = pi;
            ftrain[t->nf] = p->trainable;
            fsizes[t->nf] = p->size;
            t->nf++;
        }
    }
    /* Without freezing the projections are still listed (the step report
     * counts them), but nothing scores them: no freezer at all. */
    if (t->nf > 0 && tc->freeze_enabled) {
        long spe = t->steps_per_epoch;
        t->fc = (aflo_freeze_config){
            .beta1 = tc->score_beta1,
            .beta2 = tc->score_beta2,
            .delta_t = tc->delta_t,
            .total_steps = t->total_steps,
            .initial_steps = lround(tc->freeze_initial_epochs * (double)spe),
            .final_steps = lround(tc->freeze_final_epochs * (double)spe),
            .sensitivity = tc->freeze_sensitivity,
        };
        t->freezer = freezer_create(&t->fc, t->nf, fsizes, ftrain, err, errlen);
        if (!t->freezer) {
            free(ftrain);
            free(fsizes);
            trainer_free(t);
            return NULL;
        }
    }
    free(ftrain);
    free(fsizes);

    int max_seq = train->max_len;
    if (eval && eval->max_len > max_seq) max_seq = eval->max_len;
    if (max_seq < 1) max_seq = 1;
    if (batch_buffers_init(&t->bb, tc->batch_size, max_seq) != 0) goto oom;
    if (eval && eval->n > 0) {
        size_t total = 0;
        for (int i = 0; i < t->np; i++) total += t->sizes[i];
        t->best = malloc((total ? total : 1) * sizeof *t->best);
        if (!t->best) goto oom;
    }
    if (model_reserve(m, tc->batch_size, max_seq, err, errlen) != 0) {
        trainer_free(t);
        return NULL;
    }
    return t;
oom:
    set_err(err, errlen, "out of memory setting up training");
    trainer_free(t);
    return NULL;
}

long trainer_total_steps(const aflo_trainer *t) { return t->total_steps; }
long trainer_steps_per_epoch(const aflo_trainer *t) { return t->steps_per_epoch; }

long trainer_frozen_step(const aflo_trainer *t, const aflo_param *p) {
    for (int i = 0; i < t->nf; i++)
        if (t->fp[i] == p) return t->freezer ? freezer_frozen_step(t->freezer, i) : -1;
    return -1;
}

/* Epoch e's example order: a Fisher-Yates shuffle seeded by (seed, e), so a
 * resumed run can rebuild any epoch's order without saved RNG state. */
void train_epoch_order(const aflo_train_config *tc, const aflo_dataset *d, int epoch, int *order,
                       int *scratch) {
    aflo_rng rng;
    rng_seed(&rng, rng_hash(tc->seed, 0x5eed0000ULL + (uint64_t)epoch));
    int n = d->n;
    for (int i = 0; i < n; i++) order[i] = i;
    for (int i = n - 1; i > 0; i--) {
        int j = (int)rng_below(&rng, (uint64_t)i + 1);
        int tmp = order[i];
        order[i] = order[j];
        order[j] = tmp;
    }
    if (tc->length_bucketing)
        dataset_bucket_by_length(d, order, n, tc->batch_size,
                                 (long)tc->batch_size * tc->grad_accum * TRAIN_BUCKET_BATCHES, &rng,
                                 scratch);
}

/* With length bucketing, t->order holds 2n ints: the order, then the sort's
 * scratch (allocated once with the trainer, not per epoch). */
static void epoch_order(aflo_trainer *t, int epoch) {
    train_epoch_order(&t->tc, t->train, epoch, t->order,
                      t->tc.length_bucketing ? t->order + t->train->n : NULL);
}

static size_t working_set(const aflo_trainer *t) {
    aflo_memory mem = model_memory(t->m);
    size_t bytes = mem.base + mem.trainable + mem.grads + mem.activations;
    for (int i = 0; i < t->np; i++)
        if (t->adam[i].m) bytes += 2 * t->adam[i].size * sizeof(float);
    return bytes;
}

static int projections_trainable(const aflo_trainer *t) {
    int k = 0;
    for (int i = 0; i < t->nf; i++) k += t->fp[i]->trainable;
    return k;
}

static void apply_freezes(aflo_trainer *t, long step, int count, const aflo_progress *pr) {
    for (int j = 0; j < count; j++) {
        int i = t->newly[j];
        aflo_param *p = t->fp[i];
        double score = freezer_frozen_score(t->freezer, i);
        model_freeze_param(t->m, p);
        if (t->fp_index[i] >= 0) adam_state_free(&t->adam[t->fp_index[i]]);
        if (pr && pr->on_freeze) {
            aflo_freeze_event ev = {.step = step,
                                    .layer = p->layer,
                                    .module = p->module,
                                    .module_name = model_module(t->m, p->module)->target,
                                    .matrix = p->role == PROLE_A ? 'A' : 'B',
                                    .name = p->name,
                                    .score = score};
            pr->on_freeze(pr->ctx, &ev);
        }
    }
}

/* What an example weighs in a step's mean loss: 1, or a causal LM's target
 * tokens (its loss is a mean over those). */
static double example_weight(const aflo_dataset *d, int i) {
    return d->token_labels ? (double)dataset_loss_tokens(d, i) : 1.0;
}

/* One optimizer step (1-based `step`) over micro-batches starting at
 * position *pos of this epoch's order. Returns the mean loss, NAN on error. */
static float train_step(aflo_trainer *t, long step, int *pos, double *grad_norm, long *tokens,
                        char *err, size_t errlen) {
    const aflo_train_config *tc = &t->tc;
    aflo_model *m = t->m;
    model_zero_grad(m);
    int n = t->train->n;
    int micro = 0;
    int remaining = n - *pos;
    int micro_count = (remaining + tc->batch_size - 1) / tc->batch_size;
    if (micro_count > tc->grad_accum) micro_count = tc->grad_accum;
    /* Each micro-batch's loss is a mean over its examples (a causal LM's:
     * over its target tokens); weighting it by its share of the step's
     * examples (tokens) makes the step's gradient their mean. */
    int total = remaining < micro_count * tc->batch_size ? remaining : micro_count * tc->batch_size;
    double weight_total = 0;
    for (int i = 0; i < total; i++) weight_total += example_weight(t->train, t->order[*pos + i]);
    *tokens = t->train->token_labels ? (long)weight_total : 0;
    if (weight_total <= 0) weight_total = 1; /* no target at all: a zero step */
    double loss_sum = 0;
    model_set_training(m, true);
    for (micro = 0; micro < micro_count; micro++) {
        int count = n - *pos < tc->batch_size ? n - *pos : tc->batch_size;
        double w = 0;
        for (int i = 0; i < count; i++) w += example_weight(t->train, t->order[*pos + i]);
        aflo_batch b;
        dataset_make_batch(t->train, t->order + *pos, count, tc->pad_id, &t->bb, &b);
        model_set_dropout_key(m, rng_hash(tc->seed, (uint64_t)step * 1024 + (uint64_t)micro));
        float loss;
        if (model_forward(m, &b, &loss, err, errlen) != 0) return NAN;
        model_backward(m, (float)(w / weight_total));
        loss_sum += (double)loss * w;
        *pos += count;
    }
    *grad_norm = tc->max_grad_norm > 0
                     ? grad_clip_global_norm(t->grads, t->sizes, t->np, tc->max_grad_norm)
                     : grad_global_norm((const float *const *)t->grads, t->sizes, t->np);

    long s = step - 1;
    float lr = lr_linear_warmup(tc->lr, s, t->warmup_steps, t->total_steps);
    float head_lr = lr_linear_warmup(tc->head_lr, s, t->warmup_steps, t->total_steps);
    for (int i = 0; i < t->np; i++) {
        aflo_param *p = t->p[i];
        if (!p->trainable) continue;
        adamw_update(p->data, p->grad, &t->adam[i], p->group == PGROUP_HEAD ? head_lr : lr,
                     decays(p) ? tc->weight_decay : 0.0f, tc->adam_beta1, tc->adam_beta2,
                     tc->adam_eps, step);
    }
    return (float)(loss_sum / weight_total);
}

static double metric_score(const aflo_trainer *t, const aflo_metrics *mt) {
    const char *name = t->tc.select_metric;
    if (!name) name = mt->causal_lm ? "perplexity" : mt->classification ? "accuracy" : "pearson";
    double v;
    if (metrics_lookup(mt, name, &v) != 0) return -INFINITY;
    return metrics_lower_is_better(name) ? -v : v;
}

static void snapshot_best(aflo_trainer *t) {
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        memcpy(t->best + off, t->p[i]->data, t->sizes[i] * sizeof(float));
        off += t->sizes[i];
    }
}

void trainer_restore_best(aflo_trainer *t) {
    if (!t->best || t->best_epoch < 0) return;
    size_t off = 0;
    for (int i = 0; i < t->np; i++) {
        memcpy(t->p[i]->data, t->best + off, t->sizes[i] * sizeof(float));
        off += t->sizes[i];
    }
}

long trainer_step(const aflo_trainer *t) { return t->step; }

static void fill_summary(const aflo_trainer *t, aflo_train_summary *sum, double elapsed) {
    memset(sum, 0, sizeof *sum);
    sum->steps_done = t->step;
    sum->total_steps = t->total_steps;
    sum->last_loss = t->last_loss;
    sum->flops = *model_flops(t->m);
    sum->trainable_avg = t->step ? t->trainable_sum / (double)t->step : 0;
    sum->trainable_final = model_trainable_elements(t->m);
    sum->best_epoch = t->best_epoch;
    sum->best_metrics = t->best_metrics;
    sum->last_metrics = t->last_metrics;
    sum->elapsed_s = elapsed;
}

/* One step with its freezing decision and report. 0, or -1 on failure. */
static int run_one_step(aflo_trainer *t, const aflo_progress *pr, double t0, char *err,
                        size_t errlen) {
    aflo_model *m = t->m;
    long step = t->step + 1;
    aflo_flops before = *model_flops(m);
    double gnorm = 0, start = now_s();
    long tokens = 0;
    float loss = train_step(t, step, &t->pos, &gnorm, &tokens, err, errlen);
    if (isnan(loss)) return -1;
    if (!isfinite(loss))
        return set_err(err, errlen, "training diverged: loss is %g at step %ld", loss, step);
    t->step = step;
    t->last_loss = loss;
    t->tokens_seen += tokens;
    if (t->freezer) {
        for (int i = 0; i < t->nf; i++) {
            bool on = t->fp[i]->trainable;
            t->fgrads[i] = on ? t->fp[i]->grad : NULL;
            t->fparams[i] = on ? t->fp[i]->data : NULL; /* after this step's update */
        }
        freeze_score_update(t->freezer, step, t->fgrads, t->fparams);
        int count = freeze_decide(t->freezer, step, t->newly);
        if (count < 0) return set_err(err, errlen, "out of memory in the freezing decision");
        apply_freezes(t, step, count, pr);
    }
    size_t trainable_now = model_trainable_elements(m);
    t->trainable_sum += (double)trainable_now;
    if (!pr || !pr->on_step) return 0;
    aflo_step_info info = {
        .step = step,
        .total_steps = t->total_steps,
        .epoch = t->epoch,
        .loss = loss,
        .lr = lr_linear_warmup(t->tc.lr, step - 1, t->warmup_steps, t->total_steps),
        .head_lr = lr_linear_warmup(t->tc.head_lr, step - 1, t->warmup_steps, t->total_steps),
        .grad_norm = gnorm,
        .total_flops = *model_flops(m),
        .trainable_now = trainable_now,
        .trainable_avg = t->trainable_sum / (double)step,
        .projections_trainable = projections_trainable(t),
        .projections_total = t->nf,
        .remaining_fraction = t->freezer ? schedule_remaining_fraction(&t->fc, step) : 1.0,
        .memory_bytes = working_set(t),
        .elapsed_s = t->elapsed_before + now_s() - t0,
        .tokens = tokens,
        .tokens_seen = t->tokens_seen,
        .step_s = now_s() - start,
    };
    for (int kind = 0; kind < FLOP_KINDS; kind++)
        info.step_flops.by_kind[kind] = model_flops(m)->by_kind[kind] - before.by_kind[kind];
    pr->on_step(pr->ctx, &info);
    return 0;
}

static int end_of_epoch(aflo_trainer *t, const aflo_progress *pr, char *err, size_t errlen) {
    if (t->eval && t->eval->n > 0) {
        aflo_metrics mt;
        aflo_flops keep = *model_flops(t->m);
        if (evaluate(t->m, t->eval, t->tc.batch_size, t->tc.pad_id, &mt, err, errlen) != 0)
            return -1;
        if (t->tc.gen_eval.rule != ANSWER_NONE) {
            int matched, judged;
            if (evaluate_exact_match(t->m, t->eval, &t->tc.gen_eval, &matched, &judged, err,
                                     errlen) != 0)
                return -1;
            mt.has_exact_match = true;
            mt.judged = judged;
            mt.exact_match = (double)matched / judged; /* lmeval_check: judged >= 1 */
        }
        *model_flops(t->m) = keep; /* FLOPs of training only */
        model_set_dropout(t->m, t->tc.dropout);
        t->last_metrics = mt;
        double score = metric_score(t, &mt);
        if (t->best_epoch < 0 || score > t->best_score) {
            t->best_score = score;
            t->best_epoch = t->epoch;
            t->best_metrics = mt;
            snapshot_best(t);
        }
        if (pr && pr->on_eval) {
            aflo_eval_info ev = {.epoch = t->epoch, .step = t->step, .metrics = &mt};
            pr->on_eval(pr->ctx, &ev);
        }
    }
    int done_epoch = t->epoch;
    t->epoch++;
    t->pos = 0;
    if (t->epoch < t->tc.epochs) epoch_order(t, t->epoch);
    if (pr && pr->on_epoch_end && pr->on_epoch_end(pr->ctx, t, done_epoch, err, errlen) != 0)
        return -1;
    return 0;
}

/* The targets of the steps already taken: every finished epoch saw each
 * example once, the current one the first pos of its order (built by the
 * caller), so a run resumed from a checkpoint counts as one that never
 * stopped. */
static void recount_tokens_seen(aflo_trainer *t) {
    const aflo_dataset *d = t->train;
    t->tokens_seen = 0;
    if (!d->token_labels) return;
    long per_epoch = 0;
    for (int i = 0; i < d->n; i++) per_epoch += (long)dataset_loss_tokens(d, i);
    int epochs = t->epoch < t->tc.epochs ? t->epoch : t->tc.epochs;
    t->tokens_seen = per_epoch * epochs;
    if (t->epoch < t->tc.epochs)
        for (int i = 0; i < t->pos && i < d->n; i++)
            t->tokens_seen += (long)dataset_loss_tokens(d, t->order[i]);
}

aflo_train_status trainer_run(aflo_trainer *t, const aflo_progress *pr, const atomic_int *cancel,
                              aflo_train_summary *sum, char *err, size_t errlen) {
    aflo_train_summary local;
    if (!sum) sum = &local;
    double t0 = now_s();
    model_set_dropout(t->m, t->tc.dropout);
    if (t->step == 0) memset(model_flops(t->m), 0, sizeof(aflo_flops));
    if (t->epoch < t->tc.epochs) epoch_order(t, t->epoch);
    recount_tokens_seen(t);
    aflo_train_status st = TRAIN_DONE;
    while (t->epoch < t->tc.epochs) {
        if (t->pos < t->train->n) {
            if (cancel && atomic_load(cancel)) {
                st = TRAIN_CANCELLED;
                break;
            }
            if (run_one_step(t, pr, t0, err, errlen) != 0) {
                st = TRAIN_FAILED;
                break;
            }
            continue;
        }
        if (end_of_epoch(t, pr, err, errlen) != 0) {
            st = TRAIN_FAILED;
            break;
        }
    }
    double elapsed = t->elapsed_before + now_s() - t0;
    t->elapsed_before = elapsed;
    fill_summary(t, sum, elapsed);
    return st;
}

/* A causal LM: the mean next-token loss over every target token of the
 * set (each batch's mean weighted by its tokens) and its exponential, the
 * perplexity. */
static int evaluate_lm(aflo_model *m, const aflo_dataset *d, int batch_size, int32_t pad_id,
                       aflo_metrics *out, char *err, size_t errlen) {
    if (!d->token_labels && d->n > 0)
        return set_err(err, errlen, "evaluation data: a causal LM needs labels per token");
    aflo_batch_buffers bb;
    int *idx = malloc((size_t)batch_size * sizeof *idx);
    int rc = -1;
    if (!idx || batch_buffers_init(&bb, batch_size, d->max_len ? d->max_len : 1)) {
        free(idx);
        return set_err(err, errlen, "out of memory during evaluation");
    }
    if (model_reserve(m, batch_size, d->max_len ? d->max_len : 1, err, errlen) != 0) goto done;
    model_set_dropout(m, false);
    model_set_training(m, false);
    double loss_sum = 0, tokens = 0;
    for (int start = 0; start < d->n; start += batch_size) {
        int count = d->n - start < batch_size ? d->n - start : batch_size;
        double w = 0;
        for (int i = 0; i < count; i++) {
            idx[i] = start + i;
            w += (double)dataset_loss_tokens(d, start + i);
        }
        aflo_batch b;
        dataset_make_batch(d, idx, count, pad_id, &bb, &b);
        float loss;
        if (model_forward(m, &b, &loss, err, errlen) != 0) goto done;
        loss_sum += (double)loss * w;
        tokens += w;
    }
    out->causal_lm = true;
    out->loss = tokens > 0 ? loss_sum / tokens : 0;
    out->n = d->n;
    rc = 0;
done:
    batch_buffers_free(&bb);
    free(idx);
    return rc;
}

int evaluate(aflo_model *m, const aflo_dataset *d, int batch_size, int32_t pad_id,
             aflo_metrics *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    if (model_task(m) == TASK_CAUSAL_LM)
        return evaluate_lm(m, d, batch_size, pad_id, out, err, errlen);
    int n = d->n, L = model_num_labels(m);
    bool cls = model_task(m) == TASK_CLASSIFICATION;
    aflo_batch_buffers bb;
    int32_t *pred = malloc((size_t)(n ? n : 1) * sizeof *pred);
    float *val = malloc((size_t)(n ? n : 1) * sizeof *val);
    int *idx = malloc((size_t)batch_size * sizeof *idx);
    int rc = -1;
    if (!pred || !val || !idx || batch_buffers_init(&bb, batch_size, d->max_len ? d->max_len : 1)) {
        set_err(err, errlen, "out of memory during evaluation");
        free(pred);
        free(val);
        free(idx);
        return -1;
    }
    if (model_reserve(m, batch_size, d->max_len ? d->max_len : 1, err, errlen) != 0) goto done;
    model_set_dropout(m, false);
    model_set_training(m, false);
    double loss_sum = 0;
    for (int start = 0; start < n; start += batch_size) {
        int count = n - start < batch_size ? n - start : batch_size;
        for (int i = 0; i < count; i++) idx[i] = start + i;
        aflo_batch b;
        dataset_make_batch(d, idx, count, pad_id, &bb, &b);
        float loss;
        if (model_forward(m, &b, &loss, err, errlen) != 0) goto done;
        loss_sum += (double)loss * count;
        const float *logits = model_logits(m);
        for (int i = 0; i < count; i++) {
            const float *row = logits + (size_t)i * L;
            if (cls) {
                int best = 0;
                for (int c = 1; c < L; c++)
                    if (row[c] > row[best]) best = c;
                pred[start + i] = best;
            } else {
                val[start + i] = row[0];
            }
        }
    }
    rc = cls ? metrics_classification(pred, d->labels, n, L, out)
             : metrics_regression(val, d->targets, n, out);
    if (rc != 0) set_err(err, errlen, "metrics could not be computed");
    out->loss = n ? loss_sum / n : 0;
    out->n = n;
done:
    batch_buffers_free(&bb);
    free(pred);
    free(val);
    free(idx);
    return rc;
}
