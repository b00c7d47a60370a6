/* memory.h — how much memory a training job will hold, before it starts.
 *
 * The estimate adds what the engine allocates for the job, from the model's
 * tensor declarations and activation layout (model_estimate_memory) and the
 * trainer's own state:
 *   weights      every tensor of the model as held: fp32, except the frozen
 *                base weights a LLaMA-family model keeps 16-bit under an
 *                adapter method (model_keep_half), which count 2 bytes each
 *                (their pages of the mapped safetensors file become
 *                resident as they are read), plus the buffer they are
 *                widened into before each product (the largest of them)
 *   grads        one float per element trainable at the start
 *   optimizer    AdamW's two moments per trainable element; AFLoRA's freezer
 *                keeps three score arrays per element of a trainable A or B
 *                and a selection scratch of at most one more; with an
 *                evaluation set, a copy of the trainable tensors at the best
 *                epoch
 *   activations  the activation arena sized for (batch, seq): what forward
 *                saves for backward in every block (with activation
 *                checkpointing, each block's input and one block's set), the
 *                logits and their
 *                gradient (a causal LM: 2 x batch x seq x vocab floats), the
 *                backward's and the kernels' scratch
 *   data         the tokenised datasets, when the caller has them
 * It is what the job holds at its peak (after the first optimizer step, when
 * every moment is written), not counting the process itself, the libraries'
 * own buffers (OpenBLAS's packing buffers) or, for float32 weights, the
 * files mapped while loading.
 * Training only lowers it: freezing frees moments. Nothing here reads the
 * machine: comparing with what is available is the caller's business. */
#ifndef AFLO_TRAIN_MEMORY_H
#define AFLO_TRAIN_MEMORY_H

#include <stdbool.h>
#include <stddef.h>

#include "model/model.h"
#include "train/dataset.h"

typedef struct {
    size_t weights, grads, optimizer, activations, data;
    size_t total; /* the sum */
} aflo_job_memory;

/* The estimate for a job training model config c with adapter ac on batches
 * of up to batch x seq tokens (seq: the longest example the trainer will
 * reserve for), with or without an evaluation set. data starts at 0 (add
 * train_dataset_bytes and train_memory_total again). 0, or -1 with a message
 * for settings model_create would refuse. */
int train_estimate_memory(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                          int num_labels, int batch, int seq, bool has_eval, aflo_job_memory *out,
                          char *err, size_t errlen);

/* Activation checkpointing as a job asks for it (spec
 * activation_checkpointing); model.h's model_set_checkpointing does it. */
typedef enum {
    CHECKPOINTING_AUTO,
    CHECKPOINTING_OFF,
    CHECKPOINTING_ON,
    CHECKPOINTING_COUNT
} aflo_checkpointing;
extern const char *const checkpointing_names[CHECKPOINTING_COUNT]; /* "auto", "off", "on" */

/* The plan for a job: how its weights are held and whether it checkpoints,
 * with the estimate of that plan. */
typedef struct {
    bool half_weights;       /* the 16-bit weights stay 16-bit (the folder's are BF16/F16) */
    bool checkpointing;      /* chosen */
    bool can_checkpoint;     /* the model's family supports it */
    aflo_job_memory mem;     /* of the chosen plan */
    aflo_job_memory without; /* the plan without checkpointing (== mem when off) */
    aflo_job_memory with;    /* with checkpointing (valid when can_checkpoint) */
} aflo_memory_plan_choice;

/* Estimate a job as train_estimate_memory does, for weights stored 16-bit
 * (half_weights: the folder's floating-point tensors are BF16 or F16) and
 * checkpointing as asked. AUTO turns it on when it saves more than
 * CHECKPOINT_AUTO_MIN_SAVING (model.h), or when limit (0: unknown) is
 * exceeded without it and not with it. ON for a family that cannot is an
 * error naming activation_checkpointing. data as train_estimate_memory. */
int train_estimate_memory_plan(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                               int num_labels, int batch, int seq, bool has_eval, bool half_weights,
                               aflo_checkpointing ckpt, size_t limit, aflo_memory_plan_choice *out,
                               char *err, size_t errlen);

/* Bytes a tokenised dataset holds (its arrays as allocated). */
size_t train_dataset_bytes(const aflo_dataset *d);

/* Recompute out->total from the parts. */
void train_memory_total(aflo_job_memory *out);

#endif
