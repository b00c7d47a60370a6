/* adapter_peft.h — an adapter as a PEFT LoRA folder for the Hugging Face
 * ecosystem, out and back in.
 *
 * PEFT folder (adapter_config.json + adapter_model.safetensors), loadable by
 * peft.PeftModel.from_pretrained on top of the base model, plus three files
 * PEFT ignores (it reads only those two; its own save_pretrained writes a
 * README.md beside them):
 *   - config.json: the base model's configuration with the task head's
 *     num_labels, problem_type, id2label and label2id, since adapter_config
 *     has no field for label names (and older PEFT versions refuse
 *     unknown keys there). AutoConfig.from_pretrained(folder) reads it and gives
 *     AutoModelForSequenceClassification the labels; aflorad's predict reads
 *     its id2label to name classes as the native file does.
 *   - README.md: a model card saying where base_model_name_or_path came from
 *     (the model folder's _name_or_path, or a name only the daemon knows),
 *     the labels, and how to load the folder with them.
 *   - aflorad.json: how the training text was read (adapter_info.h), when known.
 *   - LoRA exports A and B as they are, lora_alpha = alpha (PEFT's scale is
 *     lora_alpha / r, as ours).
 *   - AFLoRA and ELoRA fold their vectors in exactly:
 *         s_b ⊙ B (s_d ⊙ A x) = (diag(s_b) B)(diag(s_d) A) x
 *     so lora_A = diag(s_d)·A, lora_B = diag(s_b)·B and lora_alpha = r
 *     (scale 1). The folded adapter computes the same function.
 *   - The head (pooler + classifier) goes under modules_to_save.
 *   - A causal LM (the LLaMA family) is task_type "CAUSAL_LM" with
 *     modules_to_save null: its lm_head is a base weight, so the folder
 *     holds only lora_A/lora_B, keyed
 *     base_model.model.model.layers.N.self_attn.q_proj.lora_A.weight
 *     (PEFT's root + LlamaForCausalLM's names); config.json is the base
 *     model's, and the README says what vLLM (--max-lora-rank above 16)
 *     and llama.cpp need to take it.
 *   - Full fine-tuning has no low-rank adapter: PEFT export is refused.
 *
 * The folder is written as a whole (folder.h): assembled in a sibling
 * temporary directory and swapped in with one rename, so readers see the old
 * set of files or the new set. */
#ifndef AFLO_ADAPTER_PEFT_H
#define AFLO_ADAPTER_PEFT_H

#include <stdbool.h>
#include <stddef.h>

#include "io/adapter_info.h"
#include "io/hfmodel.h"
#include "model/model.h"

#define PEFT_CONFIG_FILE "adapter_config.json"
#define PEFT_WEIGHTS_FILE "adapter_model.safetensors"
#define PEFT_MODEL_CONFIG_FILE HF_CONFIG_FILE
#define PEFT_README_FILE "README.md"

/* Write dir/adapter_config.json, dir/adapter_model.safetensors, dir/config.json,
 * dir/README.md and, when info has inputs, dir/aflorad.json; the tensors keyed
 * as PEFT keys the model's type (bert, roberta, llama, ...: its family's
 * naming). An
 * existing dir is replaced only when it holds nothing but those files. */
int adapter_export_peft(aflo_model *m, const char *dir, const adapter_export_info *info, char *err,
                        size_t errlen);

/* The adapter config a model must be created with to load a PEFT LoRA folder
 * exactly: METHOD_LORA, rank r, alpha lora_alpha, targets = the modules that
 * have lora_A/lora_B tensors in the file. base_model (may be NULL) receives
 * base_model_name_or_path ("" when absent). */
int adapter_peft_read_config(const char *dir, aflo_adapter_config *ac, char *base_model,
                             size_t base_model_cap, char *err, size_t errlen);

/* The class names of a PEFT folder: its config.json's head, read by
 * hfmodel_read_head (the reader of every folder's labels), which must name
 * exactly num_labels classes (the classifier's rows). head->num_labels is 0,
 * and 0 returned, when the folder has no config.json (one PEFT wrote) or it
 * names no labels. Release head with hf_head_info_free. */
int adapter_peft_read_labels(const char *dir, int num_labels, hf_head_info *head, char *err,
                             size_t errlen);

typedef struct {
    /* the folder carried them (modules_to_save): every head layer before
     * the output layer (BERT's pooler), the output layer (the classifier) */
    bool pooler_loaded, classifier_loaded;
} adapter_import_report;

/* Load a PEFT LoRA folder into m for inference: A <- lora_A, B <- lora_B.
 * m must have the same rank and adapted modules. A LoRA model must have
 * alpha == lora_alpha (so its scale is PEFT's); an AFLoRA/ELoRA model gets
 * s_d = lora_alpha / r and s_b = 1, the same function. The head is loaded
 * when present. report may be NULL. */
int adapter_import_peft(aflo_model *m, const char *dir, adapter_import_report *report, char *err,
                        size_t errlen);

#endif
