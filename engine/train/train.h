/* train.h — the training loop: batches, AdamW, schedule, adaptive freezing,
 * evaluation, and a progress interface for whoever drives it.
 *
 * One optimizer step = grad_accum micro-batches of batch_size examples:
 * forward, backward, clip by global norm, AdamW, then (AFLoRA) the freezing
 * score of every still-trainable projection and, at window boundaries, the
 * freezing decision (aflora.md §3-4). Matrices frozen at step t received
 * their last update at step t.
 *
 * The trainer is driven by a caller that knows nothing of its insides:
 * callbacks report each step, freeze event and evaluation, and a cancel flag
 * (set from any thread) is checked before every step. No files, no HTTP, no
 * database: the daemon and the CLI plug those in through the callbacks. */
#ifndef AFLO_TRAIN_H
#define AFLO_TRAIN_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "train/dataset.h"
#include "train/freeze.h"
#include "model/gemm.h"
#include "train/lmeval.h"
#include "train/metrics.h"
#include "model/model.h"

typedef struct {
    int epochs;
    int batch_size;
    int grad_accum; /* micro-batches per optimizer step */
    float lr;       /* adapter (and, for full, base) learning rate */
    float head_lr;  /* pooler + classifier */
    float weight_decay;
    float warmup_ratio;  /* of total steps, linear warm-up then linear decay */
    float max_grad_norm; /* <= 0: no clipping */
    float adam_beta1, adam_beta2, adam_eps;
    /* adaptive freezing (aflora.md §3-4); epochs may be fractional */
    double freeze_initial_epochs, freeze_final_epochs;
    int delta_t;
    double score_beta1, score_beta2;
    /* false: AFLoRA's A and B never freeze (no scoring at all): those that
     * start trainable train to the end (the paper's Table 4 "trainable") */
    bool freeze_enabled;
    aflo_freeze_sensitivity freeze_sensitivity; /* what the score smooths */
    uint64_t seed;
    bool dropout;
    int32_t pad_id;
    /* Metric that picks the best epoch (metrics_lookup name); NULL:
     * accuracy for classification, pearson for regression, perplexity for
     * a causal LM. "mse" and "perplexity" are minimised, every other
     * metric maximised ("exact_match" needs gen_eval). */
    const char *select_metric;
    /* Length bucketing: batches of similar-length examples (less padding),
     * still in random batch order; see train_epoch_order. */
    bool length_bucketing;
    /* Causal LM: exact-match evaluation after each epoch's loss pass
     * (lmeval.h); rule ANSWER_NONE (the default): none. */
    aflo_gen_eval gen_eval;
} aflo_train_config;

/* Length bucketing sorts chunks of this many optimizer steps' worth of
 * examples (batch_size x grad_accum x 50): Hugging Face's group_by_length
 * sampler uses the same 50-batch "mega-batches". Large enough that a chunk
 * holds many examples of each length, small enough that a batch's examples
 * are still drawn from a random 1/(n/chunk) of the data. */
#define TRAIN_BUCKET_BATCHES 50

/* ---- defaults ---------------------------------------------------------------
 * The one set of training defaults: train_config_defaults fills them in, and
 * the job spec's field table (daemon/spec.c) takes its defaults from these
 * same constants, so `aflorad run`, the API, the dashboard's form and
 * `aflorad demo` all train alike. The paper's settings (aflora.md §5, the
 * authors' GLUE recipe) unless a comment says otherwise; the freezing score's
 * own (delta_t, beta1, beta2) are freeze.h's AFLO_FREEZE_DEFAULT_*. */

/* AdamW, linear warm-up then linear decay, clipping (aflora.md §5). Written
 * as doubles, the job spec's type; the trainer's floats are these rounded. */
#define TRAIN_DEFAULT_LR 1e-2      /* adapter parameters */
#define TRAIN_DEFAULT_HEAD_LR 4e-2 /* the task head: 4e-2 to 8e-2 by task in the paper */
#define TRAIN_DEFAULT_WEIGHT_DECAY 0.1
#define TRAIN_DEFAULT_WARMUP_RATIO 0.06
#define TRAIN_DEFAULT_MAX_GRAD_NORM 0.1
/* Adam's moments: PyTorch's AdamW defaults, which the Hugging Face Trainer
 * the authors train with keeps (the job spec does not expose them). */
#define TRAIN_ADAM_BETA1 0.9f
#define TRAIN_ADAM_BETA2 0.999f
#define TRAIN_ADAM_EPS 1e-8f
/* 32, not the paper's 64 (a GPU's): on CPUs activation memory grows with the
 * batch while a bigger one buys little speed once every matrix product has
 * thousands of rows; grad_accum 2 gives the paper's 64 examples per step. */
#define TRAIN_DEFAULT_BATCH_SIZE 32
#define TRAIN_DEFAULT_GRAD_ACCUM 1
#define TRAIN_DEFAULT_SEED 42
/* The base model's own dropout (its config's probabilities), as transformers
 * fine-tunes; the paper's "adapter dropout 0" is the adapters having none. */
#define TRAIN_DEFAULT_DROPOUT true
/* Off: batches are drawn in plain random order, as the paper's are. */
#define TRAIN_DEFAULT_LENGTH_BUCKETING false

/* The freezing phases (aflora.md §4): no freezing in an initial warm-up of
 * 1 epoch; everything frozen in a final phase of 70% of the epochs (the
 * paper; 14 of 20 in the authors' RTE script). The paper trains 20-30
 * epochs: below TRAIN_SHORT_RUN_EPOCHS the initial warm-up is 10% of the
 * epochs instead, so 1 + 70% still leaves a middle phase. Integer literals:
 * the job spec's documentation spells them out. */
#define TRAIN_DEFAULT_INITIAL_WARMUP_EPOCHS 1
#define TRAIN_DEFAULT_FINAL_WARMUP_PERCENT 70
#define TRAIN_SHORT_RUN_EPOCHS 10
#define TRAIN_SHORT_RUN_INITIAL_PERCENT 10

/* The default phases of a run of `epochs` epochs, as above, worked out from
 * integers so that 70% of 20 is exactly 14 (and 70% of 3 exactly 2.1). */
double train_default_initial_warmup_epochs(int epochs);
double train_default_final_warmup_epochs(int epochs);

/* Every field at its default: the constants above, the freezing phases for
 * `epochs`, freeze.h's delta_t and score betas, freezing enabled with the
 * grad sensitivity, pad_id 0, select_metric
 * NULL (accuracy, pearson or perplexity by task), no exact-match
 * evaluation. */
void train_config_defaults(aflo_train_config *tc, int epochs);

typedef struct {
    long step, total_steps; /* 1-based optimizer step */
    int epoch;              /* 0-based */
    float loss;             /* mean over the step's examples */
    float lr, head_lr;
    double grad_norm;       /* before clipping */
    aflo_flops step_flops;  /* executed in this step */
    aflo_flops total_flops; /* since the start of training */
    size_t trainable_now;   /* elements of tensors trainable after this step */
    double trainable_avg;   /* time average over steps so far (paper's count) */
    int projections_trainable, projections_total;
    double remaining_fraction; /* r(t) of the schedule, 1 without freezing */
    size_t memory_bytes;       /* weights + trainable tensors + gradients + Adam
                                    moments still held + activations: the step's peak
                                    working set (allocated once, so peak = this) */
    double elapsed_s;
    /* A causal LM's next-token targets (tokens carrying a label): in this
     * step, and since the start of training (a resumed run recounts the
     * steps before it); 0 for encoders. step_s: this step's wall time. */
    long tokens, tokens_seen;
    double step_s;
} aflo_step_info;

typedef struct {
    long step;
    int layer;
    int module;              /* index into the model's module table (model_module) */
    const char *module_name; /* that module's target_modules name: "intermediate.dense" */
    char matrix;             /* 'A' or 'B' */
    const char *name;        /* tensor name */
    double score;            /* s(P) when frozen */
} aflo_freeze_event;

typedef struct {
    int epoch;
    long step;
    const aflo_metrics *metrics;
} aflo_eval_info;

typedef struct aflo_trainer aflo_trainer;

typedef struct {
    void *ctx;
    void (*on_step)(void *ctx, const aflo_step_info *info);
    void (*on_freeze)(void *ctx, const aflo_freeze_event *ev);
    void (*on_eval)(void *ctx, const aflo_eval_info *ev);
    /* After each epoch (and its evaluation): the place to checkpoint.
     * Returning nonzero fails the run with the message written to err. */
    int (*on_epoch_end)(void *ctx, aflo_trainer *t, int epoch, char *err, size_t errlen);
} aflo_progress;

typedef enum { TRAIN_DONE = 0, TRAIN_CANCELLED = 1, TRAIN_FAILED = -1 } aflo_train_status;

typedef struct {
    long steps_done, total_steps;
    float last_loss;
    aflo_flops flops;
    double trainable_avg;
    size_t trainable_final;
    int best_epoch; /* -1 without evaluation */
    aflo_metrics best_metrics, last_metrics;
    double elapsed_s;
} aflo_train_summary;

/* eval may be NULL. The datasets and model must outlive the trainer. */
aflo_trainer *trainer_create(aflo_model *m, const aflo_train_config *tc, const aflo_dataset *train,
                             const aflo_dataset *eval, char *err, size_t errlen);
void trainer_free(aflo_trainer *t);

long trainer_total_steps(const aflo_trainer *t);
long trainer_steps_per_epoch(const aflo_trainer *t);

/* Run to the end, or until *cancel becomes nonzero (checked before each
 * step). A trainer restored from a checkpoint continues where it stopped;
 * a cancelled trainer can be checkpointed and run again to continue. */
aflo_train_status trainer_run(aflo_trainer *t, const aflo_progress *progress,
                              const atomic_int *cancel, aflo_train_summary *summary, char *err,
                              size_t errlen);

/* The example order of epoch `epoch`, exactly as the trainer uses it: a
 * Fisher-Yates shuffle seeded by (seed, epoch) only, so a resumed run
 * rebuilds any epoch's order without saved RNG state; with
 * length_bucketing, then dataset_bucket_by_length in chunks of
 * batch_size x grad_accum x TRAIN_BUCKET_BATCHES examples, its batches
 * shuffled by the same generator. order: d->n ints; scratch: d->n ints,
 * used only with length_bucketing (may be NULL without). */
void train_epoch_order(const aflo_train_config *tc, const aflo_dataset *d, int epoch, int *order,
                       int *scratch);

/* Evaluate the model on a dataset (no dropout): mean loss and metrics. */
int evaluate(aflo_model *m, const aflo_dataset *d, int batch_size, int32_t pad_id,
             aflo_metrics *out, char *err, size_t errlen);

/* Step at which a projection froze (-1: still trainable; 0: never trained). */
long trainer_frozen_step(const aflo_trainer *t, const aflo_param *p);

/* Copy the adapter and head of the best epoch back into the model (the
 * authors keep the best checkpoint). No-op without evaluation. */
void trainer_restore_best(aflo_trainer *t);
long trainer_step(const aflo_trainer *t);

/* The whole training state — every trainable tensor, Adam moments, step and
 * position in the data order, freezing state, best-epoch snapshot — in one
 * file, written atomically (temp file, fsync, rename, fsync of the folder).
 * Dropout masks and data order derive from (seed, step) and (seed, epoch),
 * so no RNG state needs saving. Loading requires a trainer built from the
 * same model, configuration and datasets. */
int trainer_save_checkpoint(const aflo_trainer *t, const char *path, char *err, size_t errlen);
int trainer_load_checkpoint(aflo_trainer *t, const char *path, char *err, size_t errlen);

/* Text written into every checkpoint of this trainer from now on: the
 * caller's record of what the run was made from (aflorad: the job spec and
 * a fingerprint of the data), so a later run can tell whether a checkpoint
 * is its own before building anything. The engine does not interpret it.
 * Copied; NULL clears. -1 when out of memory or over 1 MiB. */
int trainer_set_checkpoint_note(aflo_trainer *t, const char *note);
/* The note of the checkpoint at path: *note is malloc'd, or NULL for a file
 * written before notes existed (version 1). Reads the header only (magic,
 * version, bounds); trainer_load_checkpoint verifies the rest. -1 with a
 * message. */
int checkpoint_read_note(const char *path, char **note, char *err, size_t errlen);

#endif
