/* adapter_io.h — adapters out (and back in): a PEFT LoRA folder for the
 * Hugging Face ecosystem, and aflorad's own single-file format.
 *
 * PEFT folder (adapter_config.json + adapter_model.safetensors), loadable by
 * peft.PeftModel.from_pretrained on top of the base model:
 *   - LoRA exports A and B as they are, lora_alpha = alpha (PEFT's scale is
 *     lora_alpha / r, as ours).
 *   - AFLoRA and ELoRA fold their vectors in exactly:
 *         s_b ⊙ B (s_d ⊙ A x) = (diag(s_b) B)(diag(s_d) A) x
 *     so lora_A = diag(s_d)·A, lora_B = diag(s_b)·B and lora_alpha = r
 *     (scale 1). The folded adapter computes the same function.
 *   - The head (pooler + classifier) goes under modules_to_save.
 *   - Full fine-tuning has no low-rank adapter: PEFT export is refused.
 *
 * Native file (one .safetensors): every adapter tensor (A, B, s_d, s_b) and
 * the head under the model's own tensor names — for method "full", every
 * base tensor too — and a "__metadata__" block describing the job: format
 * "aflorad-adapter", version "1", method, rank, alpha, target_modules,
 * trainable_projections, base model and its dimensions, task, num_labels,
 * labels, metrics and the step at which each projection froze. Importing
 * checks all of it against the model before copying a single value.
 *
 * Writes are atomic: the native file via the safetensors writer (tmp + fsync
 * + rename); a PEFT folder is assembled in a sibling temporary directory and
 * swapped in with one rename (renameat2 RENAME_EXCHANGE when replacing an
 * existing folder), so readers see the old pair of files or the new pair. */
#ifndef AFLO_ADAPTER_IO_H
#define AFLO_ADAPTER_IO_H

#include <stdbool.h>
#include <stddef.h>

#include "model.h"

#define ADAPTER_NATIVE_FORMAT "aflorad-adapter"
#define ADAPTER_NATIVE_VERSION "1"
#define PEFT_CONFIG_FILE "adapter_config.json"
#define PEFT_WEIGHTS_FILE "adapter_model.safetensors"

/* What the caller knows about the job that the model does not. Every field
 * may be NULL / zero. */
typedef struct {
    const char *base_model;          /* name or path of the base model ("" if NULL) */
    const char *const *labels;       /* model_num_labels() names, or NULL */
    const char *metrics_json;        /* JSON text stored as given (validated); NULL: null */
    /* Step at which projection p froze, or < 0 when it did not (e.g. a
     * wrapper around trainer_frozen_step). NULL: no freezing information. */
    long (*frozen_step)(const void *ctx, const aflo_param *p);
    const void *frozen_ctx;
} adapter_export_info;

/* ---- PEFT ----------------------------------------------------------------- */

/* Write dir/adapter_config.json and dir/adapter_model.safetensors, keyed as
 * PEFT keys the model's type (bert, roberta, ...: its family's naming). An
 * existing dir is replaced only when it holds nothing but those two files. */
int adapter_export_peft(aflo_model *m, const char *dir, const adapter_export_info *info,
                        char *err, size_t errlen);

/* The adapter config a model must be created with to load a PEFT LoRA folder
 * exactly: METHOD_LORA, rank r, alpha lora_alpha, targets = the modules that
 * have lora_A/lora_B tensors in the file. base_model (may be NULL) receives
 * base_model_name_or_path ("" when absent). */
int adapter_peft_read_config(const char *dir, aflo_adapter_config *ac, char *base_model,
                             size_t base_model_cap, char *err, size_t errlen);

typedef struct {
    bool pooler_loaded, classifier_loaded;   /* the folder carried them (modules_to_save) */
} adapter_import_report;

/* Load a PEFT LoRA folder into m for inference: A <- lora_A, B <- lora_B.
 * m must have the same rank and adapted modules. A LoRA model must have
 * alpha == lora_alpha (so its scale is PEFT's); an AFLoRA/ELoRA model gets
 * s_d = lora_alpha / r and s_b = 1, the same function. The head is loaded
 * when present. report may be NULL. */
int adapter_import_peft(aflo_model *m, const char *dir, adapter_import_report *report,
                        char *err, size_t errlen);

/* ---- native ----------------------------------------------------------------- */

int adapter_export_native(aflo_model *m, const char *path, const adapter_export_info *info,
                          char *err, size_t errlen);

/* The metadata of a native file, parsed and checked. */
typedef struct {
    aflo_adapter_config ac;
    aflo_task task;
    int num_labels;
    char model_type[32];
    int vocab_size, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads;
    /* malloc'd, NUL-terminated; released by adapter_native_meta_free */
    char *base_model;      /* as given at export */
    char *labels_json;     /* JSON array of label names */
    char *metrics_json;    /* JSON text, "null" when none was given */
    char *frozen_json;     /* JSON object: projection name -> step or null */
} adapter_native_meta;

int adapter_native_read_meta(const char *path, adapter_native_meta *meta, char *err, size_t errlen);
void adapter_native_meta_free(adapter_native_meta *meta);

/* Load a native file into m, which must match it (method, rank, alpha,
 * targets, task, labels, model type and dimensions): clear errors otherwise,
 * and m is untouched on any error. */
int adapter_import_native(aflo_model *m, const char *path, char *err, size_t errlen);

#endif
