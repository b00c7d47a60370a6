/* hfmodel.h — Hugging Face model folders in: config.json + safetensors
 * weights into an aflo_model, and a cheap description of such a folder.
 *
 * A folder is what transformers' save_pretrained() writes: config.json and
 * either model.safetensors or model.safetensors.index.json plus the shards its
 * "weight_map" names. Tensor names of BertModel, BertForSequenceClassification,
 * RobertaModel and RobertaForSequenceClassification are understood, with or
 * without the "bert." / "roberta." prefix, as are the pre-training heads
 * (cls.*, lm_head.*), which are skipped.
 *
 * The engine's task head is pooler dense + tanh + classifier. RoBERTa's
 * classification head (classifier.dense -> tanh -> classifier.out_proj) has
 * the same shape, so classifier.dense fills the pooler and classifier.out_proj
 * the classifier. A pretrained classifier is used only when its number of
 * labels is the task's; otherwise, like a missing pooler, the fresh
 * initialisation stays and the load report says so. Everything else the
 * encoder needs must be present with the right shape: one error lists every
 * tensor that is missing or mis-shaped.
 *
 * Only safetensors are read: a pickled pytorch_model.bin can run code when
 * loaded, so the loader refuses it and says how to convert it. */
#ifndef AFLO_HFMODEL_H
#define AFLO_HFMODEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"
#include "model.h"

/* Room for the human-readable notes of one load. */
#define HF_REPORT_INFO_LEN 1024

/* What a load did beyond the plain copy, for the user to see. */
typedef struct {
    bool pooler_pretrained;      /* pooler from the file (pooler.dense or RoBERTa classifier.dense) */
    bool classifier_pretrained;  /* classifier from the file (its label count matched) */
    int file_num_labels;         /* rows of the file's classifier; 0 when it has none */
    int tensors_loaded;          /* tensors copied into the model */
    int tensors_ignored;         /* known-unused tensors skipped (lm_head.*, position_ids, ...) */
    int tensors_unknown;         /* names the engine does not know, skipped */
    int shards;                  /* safetensors files read */
    char info[HF_REPORT_INFO_LEN]; /* notes ("; "-separated), "" when there is nothing to say */
} hf_load_report;

/* Read dir/config.json into c (config_from_json: validated). */
int hfmodel_read_config(const char *dir, aflo_config *c, char *err, size_t errlen);

/* Create a model from dir/config.json with the caller's adapter config, task,
 * labels and seed (model_create), then fill its base weights (and the head
 * where the file has a usable one) from the folder's safetensors. F16 and
 * BF16 weights are converted exactly. report may be NULL. Returns NULL with
 * a message on any error. */
aflo_model *hfmodel_load(const char *dir, const aflo_adapter_config *ac, aflo_task task,
                         int num_labels, uint64_t seed, hf_load_report *report, char *err,
                         size_t errlen);

/* Whether dir is a model folder the engine can fine-tune, checked without
 * loading it: config.json (a supported architecture, consistent sizes), the
 * tokenizer files (tokenizer_probe_dir) and the weights (model.safetensors or
 * every shard of the index, headers validated, tensor data never read; a
 * folder with only pytorch_model.bin gets the command that converts it).
 * Returns 0 when usable, else -1 with the reason in err. *config_read is set
 * when config.json itself was fine (*c then holds it), so a caller can still
 * describe a folder that lacks, say, its tokenizer. */
int hfmodel_probe(const char *dir, aflo_config *c, bool *config_read, char *err, size_t errlen);

/* A folder described from config.json and the safetensors headers only (the
 * weight data is never read): for listing available models. */
typedef struct {
    char architecture[64];       /* config "architectures"[0], "" when absent */
    char model_type[32];
    int num_hidden_layers, hidden_size, intermediate_size, num_attention_heads;
    int vocab_size, max_position_embeddings;
    uint64_t num_params;         /* elements of every tensor in the weight files */
    uint64_t weight_bytes;       /* bytes of tensor data */
    char dtype[8];               /* "F32", "F16", "BF16", ... or "mixed" */
    int shards;                  /* safetensors files */
    int head_num_labels;         /* rows of a sequence-classification head, 0 if none */
} hf_model_info;

int hfmodel_info(const char *dir, hf_model_info *info, char *err, size_t errlen);

#endif
