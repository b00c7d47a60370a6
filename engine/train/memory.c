/* memory.c — a training job's memory, estimated before it starts (memory.h).
 * The counts follow what trainer_create (train.c), freezer_create
 * (freeze.c), adam_state_init (optim.c) and the dataset (dataset.c)
 * allocate; the model's part is model_estimate_memory's. */
#include "train/memory.h"

#include <stdint.h>
#include <string.h>

#include "model/family.h"

#include "base/errmsg.h"

/* AFLoRA's freezer: three score arrays per trainable projection element
 * (freeze.c SCORE_ARRAYS) and a selection scratch of at most one more. */
#define FREEZER_FLOATS_PER_ELEMENT 4

void train_memory_total(aflo_job_memory *out) {
    out->total = out->weights + out->grads + out->optimizer + out->activations + out->data;
}

const char *const checkpointing_names[CHECKPOINTING_COUNT] = {"auto", "off", "on"};

static int estimate(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                    int num_labels, int batch, int seq, bool has_eval, const aflo_memory_plan *plan,
                    aflo_job_memory *out, char *err, size_t errlen) {
    aflo_memory mm;
    if (model_estimate_memory_plan(c, ac, task, num_labels, batch, seq, plan, &mm, err, errlen) !=
        0)
        return -1;
    /* grads holds one float per element trainable at the start, which is
     * also what Adam keeps two moments for and the best-epoch copy saves */
    size_t trainable = mm.grads;
    if (trainable > SIZE_MAX / 4)
        return set_err(err, errlen, "memory estimate: %zu trainable bytes overflow", trainable);
    out->weights = mm.base + mm.trainable + mm.widen;
    out->grads = mm.grads;
    out->optimizer = 2 * trainable + (has_eval ? trainable : 0);
    if (ac->method == METHOD_AFLORA) out->optimizer += FREEZER_FLOATS_PER_ELEMENT * mm.projections;
    out->activations = mm.activations;
    out->data = 0;
    train_memory_total(out);
    return 0;
}

int train_estimate_memory(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                          int num_labels, int batch, int seq, bool has_eval, aflo_job_memory *out,
                          char *err, size_t errlen) {
    aflo_memory_plan plan = {false, false};
    return estimate(c, ac, task, num_labels, batch, seq, has_eval, &plan, out, err, errlen);
}

int train_estimate_memory_plan(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                               int num_labels, int batch, int seq, bool has_eval, bool half_weights,
                               aflo_checkpointing ckpt, size_t limit, aflo_memory_plan_choice *out,
                               char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    out->half_weights = half_weights;
    const aflo_family *fam = family_for_config(c->model_type, NULL, NULL, err, errlen);
    if (!fam) return -1;
    out->can_checkpoint = fam->checkpointing;
    if (ckpt == CHECKPOINTING_ON && !fam->checkpointing)
        return set_err(err, errlen,
                       "activation_checkpointing: the %s family does not support it (only "
                       "causal language models do)",
                       fam->name);
    aflo_memory_plan off = {half_weights, false}, on = {half_weights, true};
    if (estimate(c, ac, task, num_labels, batch, seq, has_eval, &off, &out->without, err, errlen) !=
        0)
        return -1;
    if (fam->checkpointing &&
        estimate(c, ac, task, num_labels, batch, seq, has_eval, &on, &out->with, err, errlen) != 0)
        return -1;
    switch (ckpt) {
    case CHECKPOINTING_ON: out->checkpointing = true; break;
    case CHECKPOINTING_OFF: out->checkpointing = false; break;
    default:
        out->checkpointing =
            fam->checkpointing &&
            (out->without.total - out->with.total > CHECKPOINT_AUTO_MIN_SAVING ||
             (limit > 0 && out->without.total > limit && out->with.total <= limit));
    }
    out->mem = out->checkpointing ? out->with : out->without;
    return 0;
}

size_t train_dataset_bytes(const aflo_dataset *d) {
    /* ids, type_ids and (causal LM) token_labels per token of capacity;
     * offsets, labels and targets per example of capacity */
    size_t per_token = 2 * sizeof(int32_t) + (d->token_labels ? sizeof(int32_t) : 0);
    size_t per_example = sizeof(size_t) + sizeof(int32_t) + sizeof(float);
    return d->cap_tokens * per_token + d->cap_n * per_example;
}
