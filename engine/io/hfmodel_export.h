/* hfmodel_export.h — a fully fine-tuned model (method full) out as a Hugging
 * Face model folder: the writing counterpart of hfmodel.h's loader.
 *
 * The folder holds config.json (the base model's configuration with the
 * task head's num_labels, problem_type, id2label and label2id),
 * model.safetensors under the names transformers' *ForSequenceClassification
 * class gives them (model_hf_name: the encoder under "bert."/"roberta.", the
 * head as the family's variant names it), the base model's tokenizer files
 * and, when known, aflorad.json with how the training text was read
 * (adapter_info.h). It is usable as a base model by aflorad (hfmodel_load)
 * and by transformers' AutoModelForSequenceClassification.
 *
 * A causal LM (the LLaMA family) is written as its *ForCausalLM checkpoint:
 * the decoder's config.json (config_to_json_task: no head to describe),
 * tensors under "model." and lm_head.weight beside it (left out when tied to
 * embed_tokens), for AutoModelForCausalLM.
 *
 * The folder is written as a whole (folder.h): readers see the old set of
 * files or the new set. */
#ifndef AFLO_HFMODEL_EXPORT_H
#define AFLO_HFMODEL_EXPORT_H

#include <stddef.h>

#include "io/adapter_info.h"
#include "model/model.h"

/* Write dir as a Hugging Face folder of the fine-tuned model: config.json
 * with id2label/label2id/problem_type from info's labels, model.safetensors
 * under transformers' names (RoBERTa's head as classifier.dense/out_proj),
 * every tokenizer file of tokenizer_dir (tokenizer_file_names), and
 * aflorad.json when info has inputs. Replaces an existing dir only when it
 * holds nothing but those files. */
int adapter_export_hf_model(aflo_model *m, const char *dir, const char *tokenizer_dir,
                            const adapter_export_info *info, char *err, size_t errlen);

#endif
