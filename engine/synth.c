/* synth.c — demo config and synthetic sentiment-like task (see synth.h). */
#include "synth.h"

#include <string.h>

#include "rng.h"

void synth_demo_config(aflo_config *c) {
    memset(c, 0, sizeof *c);
    strcpy(c->model_type, "bert");
    c->vocab_size = 96;
    c->hidden_size = 32;
    c->num_hidden_layers = 2;
    c->num_attention_heads = 4;
    c->intermediate_size = 64;
    c->max_position_embeddings = 64;
    c->type_vocab_size = 2;
    c->pad_token_id = SYNTH_PAD;
    c->layer_norm_eps = 1e-12f;
    c->hidden_dropout_prob = 0.1f;
    c->attention_probs_dropout_prob = 0.1f;
}

#define SYNTH_MIN_FILLER 3
#define SYNTH_MAX_FILLER 12
#define SYNTH_MAX_LEN (2 + SYNTH_MAX_FILLER + 5)

int synth_sentiment(aflo_dataset *d, int n, int vocab_size, uint64_t seed) {
    int first_filler = SYNTH_FIRST_WORD + SYNTH_POS_WORDS + SYNTH_NEG_WORDS;
    if (vocab_size <= first_filler) return -1;
    aflo_rng rng;
    rng_seed(&rng, seed);
    int32_t ids[SYNTH_MAX_LEN];
    for (int e = 0; e < n; e++) {
        int label = (int)rng_below(&rng, 2);
        /* 2 or 3 words of the label's kind, at most 1 of the other kind. */
        int major = 2 + (int)rng_below(&rng, 2);
        int minor = (int)rng_below(&rng, 2);
        int filler = SYNTH_MIN_FILLER + (int)rng_below(&rng, SYNTH_MAX_FILLER - SYNTH_MIN_FILLER + 1);
        int words = filler + major + minor;
        int32_t body[SYNTH_MAX_LEN];
        int k = 0;
        for (int i = 0; i < filler; i++)
            body[k++] = first_filler + (int)rng_below(&rng, (uint64_t)(vocab_size - first_filler));
        int pos_base = SYNTH_FIRST_WORD, neg_base = SYNTH_FIRST_WORD + SYNTH_POS_WORDS;
        for (int i = 0; i < major; i++)
            body[k++] = (label ? pos_base : neg_base) + (int)rng_below(&rng, SYNTH_POS_WORDS);
        for (int i = 0; i < minor; i++)
            body[k++] = (label ? neg_base : pos_base) + (int)rng_below(&rng, SYNTH_NEG_WORDS);
        for (int i = words - 1; i > 0; i--) { /* shuffle word order */
            int j = (int)rng_below(&rng, (uint64_t)i + 1);
            int32_t t = body[i];
            body[i] = body[j];
            body[j] = t;
        }
        int len = 0;
        ids[len++] = SYNTH_CLS;
        for (int i = 0; i < words; i++) ids[len++] = body[i];
        ids[len++] = SYNTH_SEP;
        if (dataset_add(d, ids, NULL, len, label, (float)label) != 0) return -1;
    }
    return 0;
}

/* BERT's N(0, 0.02) describes a network about to be pretrained; frozen at
 * that scale, a random encoder passes almost nothing from the words to
 * [CLS], so no adapter can learn from it. N(0, 0.1) gives a random encoder
 * that behaves like a (poor) pretrained one. */
#define SYNTH_BASE_SCALE 5.0f

void synth_demo_weights(aflo_model *m) {
    for (int i = 0; i < model_param_count(m); i++) {
        aflo_param *p = model_param(m, i);
        if (p->group != PGROUP_BASE) continue;
        if (p->role != PROLE_WEIGHT && p->role != PROLE_EMBEDDING) continue;
        for (size_t j = 0; j < p->size; j++) p->data[j] *= SYNTH_BASE_SCALE;
    }
}
