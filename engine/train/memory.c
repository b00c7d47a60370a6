/* memory.c — a training job's memory, estimated before it starts (memory.h).
 * The counts follow what trainer_create (train.c), freezer_create
 * (freeze.c), adam_state_init (optim.c) and the dataset (dataset.c)
 * allocate; the model's part is model_estimate_memory's. */
#include "train/memory.h"

#include <stdint.h>

#include "base/errmsg.h"

/* AFLoRA's freezer: three score arrays per trainable projection element
 * (freeze.c SCORE_ARRAYS) and a selection scratch of at most one more. */
#define FREEZER_FLOATS_PER_ELEMENT 4

void train_memory_total(aflo_job_memory *out) {
    out->total = out->weights + out->grads + out->optimizer + out->activations + out->data;
}

int train_estimate_memory(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                          int num_labels, int batch, int seq, bool has_eval, aflo_job_memory *out,
                          char *err, size_t errlen) {
    aflo_memory mm;
    if (model_estimate_memory(c, ac, task, num_labels, batch, seq, &mm, err, errlen) != 0)
        return -1;
    /* grads holds one float per element trainable at the start, which is
     * also what Adam keeps two moments for and the best-epoch copy saves */
    size_t trainable = mm.grads;
    if (trainable > SIZE_MAX / 4)
        return set_err(err, errlen, "memory estimate: %zu trainable bytes overflow", trainable);
    out->weights = mm.base + mm.trainable;
    out->grads = mm.grads;
    out->optimizer = 2 * trainable + (has_eval ? trainable : 0);
    if (ac->method == METHOD_AFLORA) out->optimizer += FREEZER_FLOATS_PER_ELEMENT * mm.projections;
    out->activations = mm.activations;
    out->data = 0;
    train_memory_total(out);
    return 0;
}

size_t train_dataset_bytes(const aflo_dataset *d) {
    /* ids, type_ids and (causal LM) token_labels per token of capacity;
     * offsets, labels and targets per example of capacity */
    size_t per_token = 2 * sizeof(int32_t) + (d->token_labels ? sizeof(int32_t) : 0);
    size_t per_example = sizeof(size_t) + sizeof(int32_t) + sizeof(float);
    return d->cap_tokens * per_token + d->cap_n * per_example;
}
