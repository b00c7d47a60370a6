/* lmeval.h — exact-match evaluation of a causal LM: for every evaluation
 * row with a generation reference (dataset_set_reference: a prompt and its
 * reference completion), greedy generation from the prompt (generate.h,
 * temperature 0) until the end-of-sequence id or max_new_tokens, the new
 * ids turned into text by the caller's detokenizer, and the answer rule
 * (answer.h) applied to that text and the reference.
 *
 * The engine knows no tokenizer here: text comes from a callback, so the
 * daemon passes its tokenizer's decode and a test can pass anything. The
 * trainer runs this after each epoch's loss pass when its config's
 * gen_eval.rule is not ANSWER_NONE (train.h); like the rest of evaluation
 * its FLOPs are not counted as training FLOPs. */
#ifndef AFLO_LMEVAL_H
#define AFLO_LMEVAL_H

#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "train/answer.h"
#include "train/dataset.h"

/* ids[0..n) as text: *text malloc'd (NUL-terminated, *len its length; the
 * caller frees it). 0, or -1 with a message. */
typedef int (*aflo_detok_fn)(void *ctx, const int32_t *ids, int n, char **text, size_t *len,
                             char *err, size_t errlen);

typedef struct {
    answer_rule rule;   /* ANSWER_NONE: no generation */
    int max_new_tokens; /* >= 1 */
    int32_t eos_id;     /* ends a generation, not part of its text; -1: none */
    aflo_detok_fn detok;
    void *detok_ctx;
} aflo_gen_eval;

/* The bounds of max_new_tokens (the job spec's eval_max_new_tokens). */
#define LMEVAL_DEFAULT_MAX_NEW_TOKENS 256
#define LMEVAL_MAX_NEW_TOKENS 4096

/* Whether g can run on d: a rule, a detokenizer, max_new_tokens in
 * [1, LMEVAL_MAX_NEW_TOKENS] and at least one row of d with a reference.
 * 0, or -1 with a message naming the setting ("answer_rule: ..."). */
int lmeval_check(const aflo_gen_eval *g, const aflo_dataset *d, char *err, size_t errlen);

/* Generate for every row of d with a reference and judge it: *matched of
 * *judged rows gave the reference's answer. Adapters apply, no dropout.
 * 0, or -1 with a message (the row's index when generation or decoding of
 * it failed). */
int evaluate_exact_match(aflo_model *m, const aflo_dataset *d, const aflo_gen_eval *g, int *matched,
                         int *judged, char *err, size_t errlen);

#endif
