/* family.h — the seam between the engine and one model architecture.
 *
 * A model family (BERT/RoBERTa, DeBERTa, LLaMA) is one
 * constant aflo_family: data — the config.json model types it reads, the
 * Hugging Face names of its tensors, its adapted linear layers — and the few
 * functions that know its mathematics. aflo_model (model.h) holds a pointer
 * to its family, and everything else works through the model and this
 * descriptor without naming a family: the trainer, the freezer, FLOP
 * accounting, checkpoints, the adapter formats (PEFT keys and target_modules
 * come from the module table), the Hugging Face loader, the job spec, the
 * workers and the API (the heatmap's rows are the module table's).
 *
 * What a family implements (bert.c is the worked example):
 *
 *   modules      its adapted linear layers in forward order: the Hugging Face
 *                path inside a block ("self_attn.q_proj"), the name users
 *                write in target_modules and PEFT matches ("q_proj"), a short
 *                label for display, and whether it is a feed-forward layer
 *                (AFLoRA's trainable_projections "ffn" trains only those).
 *                aflo_param.module and the bits of aflo_adapter_config.targets
 *                index this table; at most 32 entries.
 *   block_prefix the engine name of a block's tensors is block_prefix, the
 *                block number, ".", then the module path or another tensor's
 *                path: "encoder.layer." + "3" + ".attention.self.query.weight".
 *   variants     one per config.json model_type it reads: the transformers
 *                class prefix (architectures it accepts: <prefix>Model and
 *                <prefix>For*), the sequence-classification class written
 *                into config.json, the attribute under which task classes
 *                keep the base model ("roberta."), and the task head's
 *                checkpoint names where they are not that prefix + the
 *                engine's name (RoBERTa: classifier.dense, classifier.out_proj;
 *                LLaMA's lm_head, a base tensor outside the blocks and
 *                outside "model.").
 *   hf_ignored   checkpoint tensors a sequence-classification load skips
 *                (pre-training heads, buffers); an entry ending in "." is a
 *                prefix, one starting with "*" a suffix.
 *   head_layers  the task head's linear layers (BERT: pooler.dense,
 *                classifier), which a checkpoint may or may not carry.
 *   tasks        the heads it has, bit (1u << aflo_task).
 *   hidden_act   the one activation it implements, by config.json's name.
 *   functions    config_finish (config fields that follow from the variant),
 *                max_tokens (the longest sequence its positions reach),
 *                max_params + build (declare every tensor with
 *                model_add_param, in table order, and set up the family's
 *                own state in m->impl), layout (the activation arena: count
 *                its floats when the arena is NULL, else assign pointers),
 *                forward, backward and destroy. model_internal.h is the
 *                contract these functions work against.
 *
 * Memory: parameters live in the model's arenas, which model.c sizes from
 * what build declares; activations in one arena that model.c sizes by
 * calling layout with no arena, so model_estimate_memory() answers "how much
 * for this batch" without allocating any of it.
 *
 * What the next families add beyond their own file (docs/deberta.md,
 * docs/llama.md), known now so the seam does not need to move:
 *   - DeBERTa (deberta.c, done): its relative-attention settings
 *     (position_buckets, max_relative_positions, pos_att_type,
 *     share_att_key, norm_rel_ebd) joined aflo_config and config.c's field
 *     table; config_check refuses what it does not implement and
 *     token_types_optional lets type_vocab_size be 0. It shares BERT's block
 *     paths and FFN modules, has its own query_proj/key_proj/value_proj
 *     targets and a "deberta." prefix; rel_embeddings and the encoder
 *     LayerNorm are base tensors outside the blocks (layer -1).
 *   - LLaMA (llama.c, done): TASK_CAUSAL_LM with labels per token
 *     (aflo_batch.token_labels), its config fields in aflo_config, "model."
 *     as its prefix, "layers." as its block prefix, modules q/k/v/o_proj,
 *     gate/up/down_proj (ffn: the mlp ones). lm_head (absent when tied to
 *     embed_tokens) is a base tensor, frozen for adapter methods, named
 *     beside "model." through head_names; head_layers is empty, so the
 *     loader's head rule (output rows = labels) does not apply; RoPE's
 *     rotary_emb.inv_freq buffers are ignored ("*" suffix entries).
 *
 * The registry (family.c) is one table of families. Lookups: by family name,
 * by config.json model_type, by model_type and architectures together (the
 * loader's check, with the message that lists what is supported), and the
 * union of every family's target_modules names (what a job spec accepts
 * before its model is known). */
#ifndef AFLO_FAMILY_H
#define AFLO_FAMILY_H

#include <stdbool.h>
#include <stddef.h>

#include "model/config.h"
#include "model/decode.h"
#include "model/model.h"

/* Bits of aflo_adapter_config.targets and of a job spec's target_modules. */
#define FAMILY_MAX_MODULES 32

/* A task-head tensor whose checkpoint name is not the variant's prefix + the
 * engine name: engine name prefix -> checkpoint name prefix (no model prefix). */
typedef struct {
    const char *engine; /* "pooler.dense." */
    const char *hf;     /* "classifier.dense." */
} aflo_name_map;

typedef struct {
    const char *model_type;   /* config.json "model_type": "roberta" */
    const char *class_prefix; /* transformers classes: "Roberta" (RobertaModel, RobertaFor*) */
    const char *architecture; /* written into config.json: "RobertaForSequenceClassification" */
    const char *hf_prefix;    /* the base model's attribute in task classes: "roberta." */
    const aflo_name_map *head_names;  /* ends with {NULL, NULL}; NULL: none renamed */
    const char *peft_modules_to_save; /* PEFT's modules_to_save for the head (JSON list) */
    unsigned flags;                   /* the family's own switches (bert.h) */
} aflo_family_variant;

struct aflo_family {
    const char *name;        /* "bert" */
    const char *description; /* "BERT/RoBERTa encoder" */
    const aflo_family_variant *variants;
    int n_variants;
    const aflo_module_info *modules;
    int n_modules;
    const char *block_prefix;      /* "encoder.layer." */
    const char *const *hf_ignored; /* NULL-terminated */
    /* The task head's linear layers by engine name, input to output, each
     * with .weight and .bias; the last has num_labels rows. The loader keeps
     * a checkpoint's layer when it is complete and fits. NULL-terminated. */
    const char *const *head_layers;
    unsigned tasks; /* bit (1u << aflo_task) per head it has */
    /* The modules a job adapts when its spec leaves target_modules at its
     * default; 0: every module. */
    unsigned default_targets;
    const char *hidden_act; /* the config.json hidden_act it implements; NULL: "gelu" */
    /* Frozen base weights (role weight and embedding) may stay 16-bit
     * (model_keep_half): every read of them goes through param_f32(). */
    bool half_weights;
    /* Its layout and backward honour m->checkpointing (model_set_checkpointing). */
    bool checkpointing;

    /* Fields of c that follow from the variant (config.c calls it after
     * reading config.json). May be NULL. */
    void (*config_finish)(aflo_config *c, const aflo_family_variant *v);
    /* Refuse what the family does not implement (config_validate calls
     * it), with a message naming the key. May be NULL. */
    int (*config_check)(const aflo_config *c, char *err, size_t errlen);
    /* type_vocab_size may be 0: no token-type embeddings (DeBERTa-v3). */
    bool token_types_optional;
    /* Its config.json carries DeBERTa's relative-attention keys
     * (relative_attention, pos_att_type, ...): config_to_json writes them. */
    bool relative_attention_keys;
    /* The longest token sequence (special tokens included) a model of this
     * config takes: what its position embeddings reach. May be NULL:
     * max_position_embeddings. */
    int (*max_tokens)(const aflo_config *c);
    /* Upper bound of the tensors build declares for this config. */
    int (*max_params)(const aflo_config *c);
    /* Declare every tensor (model_add_param) and allocate m->impl. Tensor
     * data is not there yet: model.c allocates the arenas afterwards. */
    int (*build)(aflo_model *m, char *err, size_t errlen);
    void (*destroy)(aflo_model *m);
    /* The activation arena for batches up to (batch x seq): with arena NULL,
     * only its size in floats; else the same walk assigning pointers, which
     * returns the same size (model_reserve asserts it). Must point m->logits
     * at batch x num_labels floats. */
    size_t (*layout)(aflo_model *m, float *arena, int batch, int seq);
    /* model_forward / model_backward (model.h), after model.c's checks. */
    int (*forward)(aflo_model *m, const aflo_batch *b, float *loss, char *err, size_t errlen);
    void (*backward)(aflo_model *m, float loss_scale);
    /* Incremental decoding for generation (decode.h); NULL: the family
     * cannot generate (encoders). */
    const aflo_decoder *decoder;
};

/* The variant of a model's config.json model_type. */
const aflo_family_variant *model_variant(const aflo_model *m);

/* ---- the registry ------------------------------------------------------------ */

int family_count(void);
const aflo_family *family_at(int i);
/* By family name ("bert"), NULL when unknown. */
const aflo_family *family_by_name(const char *name);
/* The family (and its variant, when v is not NULL) reading this config.json
 * model_type, NULL when none does. */
const aflo_family *family_for_model_type(const char *model_type, const aflo_family_variant **v);
/* The family for a config.json: by model_type when given (as transformers'
 * AutoConfig decides), else by architectures[0] (<prefix>Model,
 * <prefix>For*). Either may be NULL. NULL with "unsupported architecture
 * ElectraForPreTraining, model_type "electra" (supported:
 * BertForSequenceClassification (bert), ...)" when no family reads it. */
const aflo_family *family_for_config(const char *model_type, const char *architecture,
                                     const aflo_family_variant **v, char *err, size_t errlen);
/* Human-readable list of what is supported: "BertForSequenceClassification
 * (bert), RobertaForSequenceClassification (roberta), ...". */
void family_supported_text(char *buf, size_t cap);

/* c's family's max_tokens (config fields filled by config_from_json);
 * max_position_embeddings when the family has none or none reads c. */
int family_max_tokens(const aflo_config *c);

/* The checkpoint name of an engine tensor under variant v, as its task class
 * names it: v's hf_prefix + name, or for a task-head tensor or another
 * tensor outside the blocks (head; model_hf_name passes both) whose
 * name starts with an entry of v->head_names, that entry's hf + the rest
 * (RoBERTa: "classifier.weight" -> "classifier.out_proj.weight"). 0, or -1
 * when it does not fit cap. model_hf_name() is this for a model's tensor. */
int family_hf_name(const aflo_family_variant *v, const char *name, bool head, char *buf,
                   size_t cap);
/* The task head's output layer (the last of head_layers: BERT "classifier"),
 * NULL when the family declares no head layers. */
const char *family_head_output(const aflo_family *f);

/* The family's module by target_modules name, -1 when it has none. */
int family_module_index(const aflo_family *f, const char *target);
/* Every module of the family, as a targets bit mask. */
unsigned family_all_modules(const aflo_family *f);

/* Every target_modules name some family accepts, without repeats, in
 * registry order (BERT's six first); at most FAMILY_MAX_MODULES. Only
 * families with a task a job spec offers (classification, regression,
 * causal_lm) count, so LLaMA's seven follow. A job spec
 * checks names against these before its model (and so its family) is known;
 * family_module_index() checks them against the model's family at job
 * start. Returns the count; names[i] point into the module tables. */
int family_target_names(const char *names[FAMILY_MAX_MODULES]);

#endif
