/* config.h — a BERT-family encoder's hyperparameters, read from a Hugging
 * Face config.json (text in memory; the caller reads the file). */
#ifndef AFLO_CONFIG_H
#define AFLO_CONFIG_H

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

/* Fill c from config.json text. Only the model types the engine implements
 * (config_supported_types) and hidden_act "gelu" (erf form) are accepted; any
 * other model_type, or an "architectures" class of another family, fails
 * with "unsupported architecture X (supported: ...)". On error returns -1
 * and writes a message naming the field. */
int config_from_json(aflo_config *c, const char *json, size_t len, char *err, size_t errlen);

/* The supported model types, comma-separated ("bert, roberta, ..."), into
 * buf (truncated to cap). */
void config_supported_types(char *buf, size_t cap);

/* Check internal consistency (positive sizes, heads divide hidden, ...). */
int config_validate(const aflo_config *c, char *err, size_t errlen);

/* Serialise as config.json text (malloc'd, NUL-terminated), NULL on OOM. */
char *config_to_json(const aflo_config *c);

#endif
