/* config.h — a BERT-family encoder's hyperparameters, read from a Hugging
 * Face config.json (text in memory; the caller reads the file). */
#ifndef AFLO_CONFIG_H
#define AFLO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char  model_type[32];      /* "bert", "roberta", ... */
    int   vocab_size;
    int   hidden_size;
    int   num_hidden_layers;
    int   num_attention_heads;
    int   intermediate_size;
    int   max_position_embeddings;
    int   type_vocab_size;
    int   pad_token_id;
    /* RoBERTa numbers positions from pad_token_id + 1 and gives padding the
     * position pad_token_id; BERT numbers from 0. 1 = RoBERTa scheme. */
    int   roberta_positions;
    float layer_norm_eps;
    float hidden_dropout_prob;
    float attention_probs_dropout_prob;
} aflo_config;

/* Fill c from config.json text. Only hidden_act "gelu" (erf form) is
 * accepted. On error returns -1 and writes a message naming the field. */
int config_from_json(aflo_config *c, const char *json, size_t len, char *err, size_t errlen);

/* Check internal consistency (positive sizes, heads divide hidden, ...). */
int config_validate(const aflo_config *c, char *err, size_t errlen);

/* Serialise as config.json text (malloc'd, NUL-terminated), NULL on OOM. */
char *config_to_json(const aflo_config *c);

/* A sequence-classification head as transformers describes it in
 * config.json: id2label and label2id (num_labels is their size) and
 * problem_type, so a fine-tuned folder loads with its labels and loss. */
typedef struct {
    int num_labels;                /* 0: no head keys are written */
    const char *const *labels;     /* names in id order; NULL or a NULL entry: "LABEL_<id>" */
    bool regression;               /* problem_type "regression", else single-label */
} config_head;

/* config_to_json plus the head's keys (head may be NULL). */
char *config_to_json_with_head(const aflo_config *c, const config_head *head);

#endif
