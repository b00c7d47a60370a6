/* train_internal.h — the trainer's state, shared by train.c (the loop) and
 * checkpoint.c (its serialisation). Not part of the engine's API. */
#ifndef AFLO_TRAIN_INTERNAL_H
#define AFLO_TRAIN_INTERNAL_H

#include "train/freeze.h"
#include "train/optim.h"
#include "train/train.h"

struct aflo_trainer {
    aflo_model *m;
    aflo_train_config tc;
    const aflo_dataset *train, *eval;
    long steps_per_epoch, total_steps, warmup_steps;

    /* trainable tensors at the start, in table order */
    int np;
    aflo_param **p;
    aflo_adam_state *adam;
    float **grads;
    size_t *sizes;

    /* freezable projections (AFLoRA only) */
    int nf;
    aflo_param **fp; /* matrix i of the freezer */
    int *fp_index;   /* its index in p[], -1 if it never trained */
    const float **fgrads;
    const float **fparams; /* their values, for sensitivities that read weights */
    int *newly;
    aflo_freezer *freezer;
    aflo_freeze_config fc;

    int *order;
    aflo_batch_buffers bb;

    /* where training stands: the next step is step+1, at position pos of
     * epoch's order; this and the tensors are what a checkpoint holds */
    long step;
    int epoch;
    int pos;
    double trainable_sum;
    double best_score;
    int best_epoch; /* -1: none yet */
    aflo_metrics best_metrics, last_metrics;
    float last_loss;
    float *best;           /* snapshot of every p[i]->data at the best epoch */
    double elapsed_before; /* seconds spent before a resume */
    /* a causal LM's target tokens trained on so far; not checkpointed:
     * trainer_run recounts them from (epoch, pos), since every epoch visits
     * each example once in an order rebuilt from the seed */
    long tokens_seen;
    char *ckpt_note; /* written into every checkpoint (owned; may be NULL) */
};

#endif
