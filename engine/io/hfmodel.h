/* hfmodel.h — Hugging Face model folders in: config.json + safetensors
 * weights into an aflo_model, and a cheap description of such a folder.
 *
 * A folder is what transformers' save_pretrained() writes: config.json and
 * either model.safetensors or model.safetensors.index.json plus the shards its
 * "weight_map" names. The config's model type picks the model family
 * (family.h), whose naming the loader follows: for the BERT family, tensor
 * names of BertModel, BertForSequenceClassification, RobertaModel and
 * RobertaForSequenceClassification are understood, with or without the
 * "bert." / "roberta." prefix, and the pre-training heads (cls.*, lm_head.*)
 * are skipped. For the LLaMA family (llama, mistral, qwen2) the
 * LlamaForCausalLM names are read ("model." prefix, lm_head.weight beside
 * it, absent when tie_word_embeddings; rotary_emb.inv_freq buffers
 * skipped), as a TASK_CAUSAL_LM model. A model type no family reads is refused: "unsupported
 * architecture X, model_type "t" (supported: ...)".
 *
 * The task head is the family's head layers (BERT: pooler dense + tanh +
 * classifier). RoBERTa's classification head (classifier.dense -> tanh ->
 * classifier.out_proj) has the same shape, so classifier.dense fills the
 * pooler and classifier.out_proj the classifier. A pretrained output layer is
 * used only when its number of labels is the task's; otherwise, like a
 * missing pooler, the fresh initialisation stays and the load report says so. Everything else the
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

#include "model/config.h"
#include "model/model.h"

/* Room for the human-readable notes of one load. */
#define HF_REPORT_INFO_LEN 1024

/* What a load did beyond the plain copy, for the user to see. */
typedef struct {
    bool pooler_pretrained;        /* every head layer before the output layer from the file
                                    (BERT's pooler: pooler.dense or RoBERTa classifier.dense) */
    bool classifier_pretrained;    /* the head's output layer from the file (labels matched) */
    int file_num_labels;           /* rows of the file's classifier; 0 when it has none */
    int tensors_loaded;            /* tensors copied into the model (or kept 16-bit) */
    int tensors_half;              /* of those, kept 16-bit in the mapped file (model_keep_half) */
    int tensors_ignored;           /* known-unused tensors skipped (lm_head.*, position_ids, ...) */
    int tensors_unknown;           /* names the engine does not know, skipped */
    int shards;                    /* safetensors files read */
    char info[HF_REPORT_INFO_LEN]; /* notes ("; "-separated), "" when there is nothing to say */
} hf_load_report;

/* Read dir/config.json into c (config_from_json: validated); -1 also when no
 * model family reads it ("unsupported architecture ...", family_for_config's
 * words, from config_from_json). */
int hfmodel_read_config(const char *dir, aflo_config *c, char *err, size_t errlen);

/* The "_name_or_path" transformers records in a saved folder's config.json
 * (the Hub id or path it was loaded from) into out: 1, or 0 when the config
 * has none (or an empty one), -1 with a message when it cannot be read or
 * does not fit cap. */
int hfmodel_name_or_path(const char *dir, char *out, size_t cap, char *err, size_t errlen);

/* The fine-tuned head dir/config.json describes (config.h's config_task, as
 * config_to_json_task writes it; the one reader of a folder's labels, for a
 * full model's folder and a PEFT folder alike): labels in id order from
 * id2label (whose keys must be the ids 0..n-1, each once), or transformers'
 * "LABEL_<id>" for each of num_labels when it has no id2label; regression
 * when problem_type says so (or, without one, for a single label).
 * num_labels 0: the folder describes no head. Release with
 * hf_head_info_free (also after an error: h is then empty). */
typedef struct {
    int num_labels;
    bool regression;
    char **labels; /* num_labels malloc'd names */
} hf_head_info;

int hfmodel_read_head(const char *dir, hf_head_info *h, char *err, size_t errlen);
void hf_head_info_free(hf_head_info *h);

/* Create a model from dir/config.json with the caller's adapter config, task,
 * labels and seed (model_create), then fill its base weights (and the head
 * where the file has a usable one) from the folder's safetensors. F16 and
 * BF16 weights are converted exactly, or, where the model may keep them
 * 16-bit (model_may_keep_half), used in place from the mapped file, which
 * the model then keeps open until model_free: do not rewrite a model folder
 * in place while a job uses it. report may be NULL. For
 * TASK_CAUSAL_LM num_labels is ignored (the vocabulary size is used). Returns NULL with
 * a message on any error. */
aflo_model *hfmodel_load(const char *dir, const aflo_adapter_config *ac, aflo_task task,
                         int num_labels, uint64_t seed, hf_load_report *report, char *err,
                         size_t errlen);

/* Whether dir is a model folder the engine can fine-tune, checked without
 * loading it: config.json (an architecture a model family reads, consistent
 * sizes: config_from_json), the
 * tokenizer files (tokenizer_probe_dir; a causal LM may have none: it can
 * train on token ids) and the weights (model.safetensors or
 * every shard of the index, headers validated, tensor data never read; a
 * folder with only pytorch_model.bin gets the command that converts it).
 * Returns 0 when usable, else -1 with the reason in err. *config_read is set
 * when config.json itself was fine (*c then holds it), so a caller can still
 * describe a folder that lacks, say, its tokenizer. */
int hfmodel_probe(const char *dir, aflo_config *c, bool *config_read, char *err, size_t errlen);

/* A folder described from config.json and the safetensors headers only (the
 * weight data is never read): for listing available models. */
typedef struct {
    char architecture[64]; /* config "architectures"[0], "" when absent */
    char model_type[32];
    int num_hidden_layers, hidden_size, intermediate_size, num_attention_heads;
    int vocab_size, max_position_embeddings;
    uint64_t num_params;   /* elements of every tensor in the weight files */
    uint64_t weight_bytes; /* bytes of tensor data */
    char dtype[8];         /* "F32", "F16", "BF16", ... or "mixed" */
    int shards;            /* safetensors files */
    int head_num_labels;   /* rows of a sequence-classification head, 0 if none */
} hf_model_info;

int hfmodel_info(const char *dir, hf_model_info *info, char *err, size_t errlen);

#endif
