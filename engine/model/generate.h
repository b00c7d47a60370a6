/* generate.h — text generation from a causal language model: the prompt's
 * ids are fed through the incremental decoder (decode.h) in one prefill,
 * then one token at a time is chosen from the last position's logits and
 * fed back, until the end-of-sequence id or max_new_tokens.
 *
 * Choice of the next token: greedy (the arg-max, lowest id on ties) when
 * temperature is 0; else softmax(logits / temperature) restricted to the
 * smallest set of most probable tokens whose probability reaches top_p
 * (nucleus sampling; top_p 1 keeps every token), drawn with a generator
 * seeded by seed, so the same model, prompt and settings give the same
 * tokens. Adapters of the model apply (an inference forward). Used by
 * `aflorad generate` and, later, the daemon's generation endpoint. */
#ifndef AFLO_GENERATE_H
#define AFLO_GENERATE_H

#include <stddef.h>
#include <stdint.h>

#include "base/rng.h"
#include "model/model.h"

/* Why generation stopped. */
typedef enum { GEN_FINISH_EOS, GEN_FINISH_LENGTH, GEN_FINISH_STOPPED, GEN_FINISH_COUNT } gen_finish;
/* "eos", "length", "stopped" (the names OpenAI-style APIs and transformers
 * use: "stop" is "eos" here, since no stop strings exist; "stopped" is the
 * caller's on_token asking to end: a client gone, a server stopping). */
extern const char *const gen_finish_names[GEN_FINISH_COUNT];

typedef struct {
    int max_new_tokens; /* >= 0 */
    float temperature;  /* 0: greedy; else > 0 */
    float top_p;        /* in (0, 1]; 1: no nucleus cut */
    uint64_t seed;
    int32_t eos_id; /* generation stops after emitting it; -1: none */
    /* Called after each generated token (id, its 0-based index among the
     * new tokens) with user; non-zero ends generation at once with finish
     * "stopped" (the token stays in the result). NULL: none. Lets a caller
     * stream tokens and stop a generation nobody waits for any more. */
    int (*on_token)(void *user, int32_t id, int index);
    void *user;
} gen_params;

/* Defaults: 64 new tokens, greedy, top_p 1, seed 0, no EOS, no callback. */
gen_params gen_params_default(void);

typedef struct {
    int32_t *ids; /* the generated ids (EOS included when it ended so), malloc'd */
    int n;
    gen_finish finish;
} gen_result;

/* Generate after prompt (n_prompt >= 1 ids: a causal LM needs at least one
 * position, usually BOS). Stops at eos_id or after max_new_tokens, or when
 * the model's positions (family_max_tokens) run out: finish "length", or
 * when on_token returns non-zero: finish "stopped". The
 * caller frees out with gen_result_free. 0, or -1 with a message (bad
 * settings, ids outside the vocabulary, a prompt longer than the model's
 * positions, out of memory). */
int generate(aflo_model *m, const int32_t *prompt, int n_prompt, const gen_params *p,
             gen_result *out, char *err, size_t errlen);
void gen_result_free(gen_result *r);

/* A token and its probability: gen_choose's scratch. */
typedef struct {
    float p;
    int32_t id;
} gen_cand;

/* The choice of one token from V logits, as generate makes it (exposed for
 * tests): greedy when temperature is 0, else temperature + top_p with rng.
 * cand is scratch of V entries. */
int32_t gen_choose(const float *logits, int V, float temperature, float top_p, aflo_rng *rng,
                   gen_cand *cand);

#endif
