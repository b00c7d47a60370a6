/* config.h — a model's hyperparameters, read from a Hugging Face
 * config.json (text in memory; the caller reads the file): BERT-family
 * encoders and LLaMA-family decoders (LLaMA, Mistral, Qwen2) share one
 * struct; each family reads the fields it needs. */
#ifndef AFLO_CONFIG_H
#define AFLO_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

/* config.json's rope_scaling (transformers' ROPE_INIT_FUNCTIONS): none,
 * "linear" (positions divided by factor) and "llama3" (per-frequency). */
typedef enum { ROPE_SCALING_NONE, ROPE_SCALING_LINEAR, ROPE_SCALING_LLAMA3 } aflo_rope_scaling;

typedef struct {
    char model_type[32]; /* "bert", "roberta", ... */
    int vocab_size;
    int hidden_size;
    int num_hidden_layers;
    int num_attention_heads;
    int intermediate_size;
    int max_position_embeddings;
    int type_vocab_size;
    int pad_token_id;
    /* RoBERTa numbers positions from pad_token_id + 1 and gives padding the
     * position pad_token_id; BERT numbers from 0. 1 = RoBERTa scheme. */
    int roberta_positions;
    float layer_norm_eps;
    float hidden_dropout_prob;
    float attention_probs_dropout_prob;

    /* LLaMA family (llama.c); BERT ignores them. */
    float rms_norm_eps;
    float rope_theta;
    aflo_rope_scaling rope_scaling;
    float rope_factor;                         /* linear, llama3 */
    float rope_low_freq_factor;                /* llama3 */
    float rope_high_freq_factor;               /* llama3 */
    int rope_original_max_position_embeddings; /* llama3 */
    int num_key_value_heads; /* grouped-query attention; num_attention_heads when absent */
    int head_dim;            /* 0: hidden_size / num_attention_heads */
    bool tie_word_embeddings;
    int sliding_window;      /* Mistral: keys within this many positions; 0: none */
    bool use_sliding_window; /* Qwen2's switch (refused: it windows some layers only) */
    bool attention_bias;     /* LLaMA's: q, k, v and o_proj have biases */
    bool qkv_bias;           /* Qwen2: q, k, v_proj have biases (set by the variant) */
    bool mlp_bias;           /* gate/up/down biases (refused) */
    float attention_dropout; /* LLaMA family: dropout on the attention weights (0 in
                                released configs) */

    /* DeBERTa-v2/v3 (deberta.c, docs/deberta.md); other families ignore
     * them. Relative positions are bucketed when position_buckets > 0;
     * max_relative_positions < 1 means max_position_embeddings. */
    bool relative_attention;
    bool position_biased_input;   /* absolute position embeddings added to the input */
    bool share_att_key;           /* positional keys/queries through key_proj/query_proj */
    bool norm_rel_ebd_layer_norm; /* norm_rel_ebd "layer_norm": LayerNorm on rel_embeddings */
    unsigned pos_att_type;        /* CONFIG_POS_C2P | CONFIG_POS_P2C */
    int position_buckets;
    int max_relative_positions;
    int conv_kernel_size;   /* refused when > 0 (DeBERTa's ConvLayer) */
    int embedding_size;     /* 0: hidden_size; another is refused (embed_proj) */
    int pooler_hidden_size; /* 0: hidden_size; another is refused */
} aflo_config;

/* aflo_config.pos_att_type bits: content-to-position and position-to-content. */
#define CONFIG_POS_C2P 1u
#define CONFIG_POS_P2C 2u

/* The attention head size: head_dim when given, else hidden / heads. */
static inline int config_head_dim(const aflo_config *c) {
    return c->head_dim > 0 ? c->head_dim : c->hidden_size / c->num_attention_heads;
}
/* KV heads: num_key_value_heads when given, else one per query head. */
static inline int config_kv_heads(const aflo_config *c) {
    return c->num_key_value_heads > 0 ? c->num_key_value_heads : c->num_attention_heads;
}

/* Fill c from config.json text. Only model types a family of the registry
 * reads (family.h; without model_type, the type of architectures[0], and
 * without either BERT) and hidden_act "gelu" (erf form) are accepted; any
 * other fails, before the other fields are read, with family_for_config's
 * "unsupported architecture X (supported: ...)". On error returns -1 and
 * writes a message naming the field. */
int config_from_json(aflo_config *c, const char *json, size_t len, char *err, size_t errlen);

/* Check internal consistency (positive sizes, heads divide hidden, ...). */
int config_validate(const aflo_config *c, char *err, size_t errlen);

/* Serialise as config.json text (malloc'd, NUL-terminated), NULL on OOM. */
char *config_to_json(const aflo_config *c);

/* A task head as transformers' config.json describes it. */
typedef struct {
    bool regression;           /* one output: problem_type "regression" */
    int num_labels;            /* classification: classes */
    const char *const *labels; /* classification: num_labels names by id; NULL: the ids */
} config_task;

/* config_to_json plus the head of a sequence-classification model: num_labels,
 * problem_type and, for classification, id2label and label2id (what
 * AutoConfig.from_pretrained gives AutoModelForSequenceClassification).
 * task NULL: as config_to_json. */
char *config_to_json_task(const aflo_config *c, const config_task *task);

#endif
