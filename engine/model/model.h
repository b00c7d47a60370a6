/* model.h — a model of some family with low-rank adapters: its tensor
 * table, forward and backward, whatever the architecture.
 *
 * What it owns: every tensor of one model (frozen base weights, adapter
 * matrices and vectors, the task head), their gradients, and the activations
 * of one batch. Memory follows llm.c: the base weights live in one arena, the
 * adapters and head in a second, the gradients of everything trainable in a
 * third, and the activations in a fourth sized once for (batch, seq) by
 * model_reserve(); nothing is allocated per step.
 *
 * The architecture is the model's family (family.h): BERT/RoBERTa today
 * (bert.c). The family declares the tensors, lays out the activations and
 * does forward and backward; this interface, and everything built on it —
 * trainer, freezer, FLOP accounting, checkpoints, adapter files, the daemon —
 * is the same for every family. The family is chosen by the config's
 * model_type when the model is created.
 *
 * Every tensor is described by an aflo_param (name, shape, group, role,
 * trainable flag), named as Hugging Face names it inside the base model
 * ("encoder.layer.3.attention.self.query.weight"); adapter tensors append
 * ".lora_A", ".lora_B", ".s_d", ".s_b" to the linear layer's path. The
 * optimizer, the freezing logic and the file formats all work from that one
 * table. A tensor of an adapted linear layer names its module: an index into
 * the family's module table (model_module()), which gives the names users
 * write in target_modules, PEFT's keys and the heatmap's rows.
 *
 * Adapted linear layer (aflora.md §2):   y = W0 x + b0 + s_b ⊙ B (s_d ⊙ A x)
 * LoRA:                                  y = W0 x + b0 + (alpha/r) B A x
 * A frozen projection costs no weight-gradient GEMM: backward checks the
 * param's trainable flag every step.
 *
 * The model knows nothing of files, threads of a daemon, or the optimizer. */
#ifndef AFLO_MODEL_H
#define AFLO_MODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/config.h"
#include "model/gemm.h"
#include "model/half.h"

typedef enum { METHOD_AFLORA, METHOD_ELORA, METHOD_LORA, METHOD_FULL, METHOD_COUNT } aflo_method;
extern const char *const method_names[METHOD_COUNT];

/* Which adapters' A and B start trainable (aflora.md §2). */
typedef enum { PROJ_FFN, PROJ_ALL, PROJ_NONE, PROJ_COUNT } aflo_projections;
extern const char *const projections_names[PROJ_COUNT];

/* One adapted linear layer of a family's block (family.h): the family's
 * module table lists them in forward order. */
typedef struct {
    const char *path;   /* HF path inside a block: "attention.self.query" */
    const char *target; /* name in target_modules and PEFT: "query", "output.dense", ... */
    const char *label;  /* short display name (heatmap rows): "attention output" */
    bool ffn;           /* a feed-forward layer (trains its projections under PROJ_FFN) */
} aflo_module_info;

/* aflo_adapter_config.targets selecting every module of the model's
 * family, whichever it is (model_create keeps the family's bits). */
#define ALL_MODULES (~0u)

typedef struct {
    aflo_method method;
    int rank;         /* r; ignored for METHOD_FULL */
    float alpha;      /* LoRA scaling numerator (scale = alpha / r) */
    unsigned targets; /* bit m set: module m of the family's table is adapted in every
                               block */
    aflo_projections projections;
} aflo_adapter_config;

/* TASK_CAUSAL_LM: next-token prediction over the vocabulary (num_labels =
 * vocab_size); labels per token in aflo_batch.token_labels. */
typedef enum { TASK_CLASSIFICATION, TASK_REGRESSION, TASK_CAUSAL_LM, TASK_COUNT } aflo_task;

/* A token label that carries no loss (padding, a prompt): PyTorch's
 * cross-entropy ignore_index, which Hugging Face's data collators write. */
#define LABEL_IGNORE (-100)

typedef enum { PGROUP_BASE, PGROUP_ADAPTER, PGROUP_HEAD } aflo_param_group;
typedef enum {
    PROLE_WEIGHT,
    PROLE_BIAS,
    PROLE_NORM_WEIGHT,
    PROLE_NORM_BIAS,
    PROLE_EMBEDDING,
    PROLE_A,
    PROLE_B,
    PROLE_SD,
    PROLE_SB
} aflo_param_role;

typedef struct {
    char name[96];
    float *data; /* NULL when the tensor is kept 16-bit (half) */
    /* A frozen base tensor kept in its stored 16-bit form (model_keep_half):
     * read it through param_f32(). NULL otherwise. */
    const uint16_t *half;
    aflo_half_kind half_kind;
    float *grad; /* NULL when this tensor never trains in this job */
    size_t size;
    int ndim, shape[2];
    aflo_param_group group;
    aflo_param_role role;
    bool trainable; /* receives gradients now (false once frozen) */
    int layer;      /* block (encoder layer), -1 outside the blocks */
    int module;     /* index into the family's module table, -1 when not part of an
                               adapted linear layer */
} aflo_param;

/* One batch, row-major [batch x seq]; seq is the batch's own padded length. */
typedef struct {
    int batch, seq;
    const int32_t *input_ids;
    const int32_t *token_type_ids; /* may be NULL: all zero */
    const uint8_t *attention_mask; /* 1 = real token; may be NULL: all real */
    const int32_t *labels;         /* classification targets, or NULL */
    const float *targets;          /* regression targets, or NULL */
    /* causal LM: batch x seq labels, unshifted (the model predicts
     * token_labels[t+1] from position t, as transformers' LlamaForCausalLM
     * does), LABEL_IGNORE where no loss is taken; or NULL */
    const int32_t *token_labels;
} aflo_batch;

typedef struct aflo_model aflo_model;
typedef struct aflo_family aflo_family;

/* Build a model from a config with seeded random base weights (normal,
 * std 0.02, LayerNorm 1/0, biases 0 — the initializer of BERT and of most
 * transformers models) and the adapter initialisation of the chosen method.
 * The family is the one whose model types include c->model_type; none is an
 * error. Returns NULL with a message on error. */
aflo_model *model_create(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                         int num_labels, uint64_t seed, char *err, size_t errlen);
/* Same, but with init_base false the base weights stay zero (the caller
 * loads every one of them: skips ~10^8 random draws for a BERT-base). The
 * adapter and the head are initialised as usual, from the same seed stream. */
aflo_model *model_create_ex(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                            int num_labels, uint64_t seed, bool init_base, char *err,
                            size_t errlen);
void model_free(aflo_model *m);

const aflo_config *model_config(const aflo_model *m);
const aflo_family *model_family(const aflo_model *m);
/* The family's adapted linear layers (family.h): module i of every block. */
int model_module_count(const aflo_model *m);
const aflo_module_info *model_module(const aflo_model *m, int i);
const aflo_adapter_config *model_adapter_config(const aflo_model *m);
aflo_task model_task(const aflo_model *m);
int model_num_labels(const aflo_model *m);

/* The tensor table. */
int model_param_count(const aflo_model *m);
aflo_param *model_param(aflo_model *m, int i);
/* By HF name; a leading model prefix of the family's checkpoints ("bert.",
 * "roberta.") is ignored. NULL if absent. */
aflo_param *model_find_param(aflo_model *m, const char *name);
/* The tensor's name in a transformers checkpoint of the model's type, as a
 * task class (BertForSequenceClassification, RobertaFor...) names it: the
 * base model's attribute + the engine name ("bert.encoder.layer.0..."), and
 * the task head under the names the family gives it ("classifier.weight";
 * RoBERTa: "classifier.dense.weight", "classifier.out_proj.weight").
 * -1 when it does not fit cap. */
int model_hf_name(const aflo_model *m, const aflo_param *p, char *buf, size_t cap);
/* Copy n floats into the named tensor; error if absent or n != size. */
int model_set_tensor(aflo_model *m, const char *name, const float *data, size_t n, char *err,
                     size_t errlen);

/* Stop training a tensor (a frozen projection): no more gradient for it. */
void model_freeze_param(aflo_model *m, aflo_param *p);
/* 16-bit base weights. A LLaMA-family model under an adapter method may
 * keep its frozen projection and embedding weights as the BF16/F16 values of
 * the checkpoint (mapped from the safetensors file), widened to float32 just
 * before each product into one scratch buffer per model: half the memory of
 * the weights, the same floats in every product (widening is exact).
 *
 * Whether p may be kept 16-bit: a base weight or embedding of a family
 * with half_weights that does not train (method full trains them: float32). */
bool model_may_keep_half(const aflo_model *m, const aflo_param *p);
/* Keep p as the p->size 16-bit values at bits (p->data becomes NULL). bits
 * must stay valid while the model lives (model_attach); when not 2-byte
 * aligned they are copied to an aligned buffer the model owns. Grows the
 * model's widening buffer to p->size floats. -1 with a message (not
 * allowed for p, out of memory). */
int model_keep_half(aflo_model *m, aflo_param *p, const void *bits, aflo_half_kind kind, char *err,
                    size_t errlen);
/* After the model_keep_half calls: move the float32 base tensors into an
 * arena of their own size, releasing the space of those kept 16-bit. */
int model_compact_base(aflo_model *m, char *err, size_t errlen);
/* release(ctx) runs at model_free, after everything else (the mapped files
 * the 16-bit weights live in). One per model; a second call is an error. */
int model_attach(aflo_model *m, void (*release)(void *), void *ctx, char *err, size_t errlen);
/* p's values as float32: p->data, or p's 16-bit values widened into wide
 * (at least p->size floats), which is returned. */
const float *param_f32(const aflo_param *p, float *wide);
/* The model's widening buffer: room for its largest 16-bit tensor; NULL
 * when it has none. One product at a time uses it. */
float *model_wide_buffer(aflo_model *m);

/* Activation checkpointing: keep only each block's input through the
 * forward and, in backward, run the block's forward again to rebuild what
 * its backward needs, then its backward. Saves the activations of all
 * blocks but one for one extra forward of the blocks (counted as forward
 * FLOPs). Dropout masks come from counters (rng.h), so the rerun draws the
 * same ones. Off by default; a family without support (family.h:
 * checkpointing) refuses it. Changing it re-lays a reserved activation
 * arena for the same batch x seq. */
int model_set_checkpointing(aflo_model *m, bool on, char *err, size_t errlen);
bool model_checkpointing(const aflo_model *m);

/* Checkpointing by default ("auto") when it saves more than this much
 * activation memory: below a GiB it saves less than a tenth of a 24 GiB
 * machine, which does not decide whether a job fits, while it costs a
 * third more forward compute (one more forward of every block). The
 * TinyLlama-1.1B shape at 1 x 256 saves 0.44 GiB (stays off); at 4 x 512
 * 3.6 GiB (on) (train/memory.h's estimate). */
#define CHECKPOINT_AUTO_MIN_SAVING ((size_t)1 << 30)

/* Elements of all currently trainable tensors. */
size_t model_trainable_elements(const aflo_model *m);

/* Size the activation arena for batches up to (batch x seq). Idempotent
 * when already large enough. */
int model_reserve(aflo_model *m, int batch, int seq, char *err, size_t errlen);

/* Dropout on/off (off by default) and the key that seeds this step's masks. */
void model_set_dropout(aflo_model *m, bool enabled);
void model_set_dropout_key(aflo_model *m, uint64_t key);

/* Training forwards (a backward follows; off by default) may take paths
 * whose rounding depends on the batch size, such as merging the adapter into
 * the weight when the batch is large. Inference forwards never do: a row's
 * logits have the same bits alone or inside any batch. */
void model_set_training(aflo_model *m, bool training);

/* Forward a batch. Returns the mean loss when the batch has labels/targets,
 * else 0 (causal LM: the mean over the positions whose next token has a
 * label, 0 when none has). Logits (batch x num_labels; causal LM batch x seq
 * x vocab_size) stay readable via model_logits() until
 * the next forward. Fails (-1 with message) on ids out of range or a batch
 * larger than reserved. */
int model_forward(aflo_model *m, const aflo_batch *b, float *loss, char *err, size_t errlen);
const float *model_logits(const aflo_model *m);

/* Backward of the last forward (which must have had labels). Accumulates
 * into the gradients of trainable tensors, scaled by loss_scale (1/accum
 * for gradient accumulation). */
void model_backward(aflo_model *m, float loss_scale);
void model_zero_grad(aflo_model *m);

/* FLOPs executed so far by kind; reset by the caller (e.g. per step). */
aflo_flops *model_flops(aflo_model *m);

/* Bytes in each arena: base weights, adapters+head, gradients, activations;
 * and, within the trainable arena, the A and B matrices that train now (what
 * AFLoRA's freezer keeps scores for: train/memory.h). */
typedef struct {
    size_t base, trainable, grads, activations;
    size_t projections;
    size_t base_half; /* of base: the tensors kept 16-bit (pages of the mapped file) */
    size_t widen;     /* the widening buffer of 16-bit weights */
} aflo_memory;
aflo_memory model_memory(const aflo_model *m);
/* What model_create + model_reserve(batch, seq) would hold, from the family's
 * tensor declarations and activation layout, without allocating the arenas:
 * for sizing a job before it runs. 0, or -1 with a message (the config or
 * settings model_create would refuse). */
int model_estimate_memory(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                          int num_labels, int batch, int seq, aflo_memory *out, char *err,
                          size_t errlen);
/* How the estimated model would be held: half_weights, every tensor
 * model_may_keep_half allows kept 16-bit; checkpointing as
 * model_set_checkpointing (an error for a family without it). */
typedef struct {
    bool half_weights, checkpointing;
} aflo_memory_plan;
int model_estimate_memory_plan(const aflo_config *c, const aflo_adapter_config *ac, aflo_task task,
                               int num_labels, int batch, int seq, const aflo_memory_plan *plan,
                               aflo_memory *out, char *err, size_t errlen);

#endif
