/* lmeval.c — greedy generation from each reference row's prompt, judged
 * by an answer rule (see lmeval.h). One row at a time: generate() keeps
 * its own KV cache per row, sized for that prompt and max_new_tokens. */
#include "train/lmeval.h"

#include <stdlib.h>

#include "base/errmsg.h"
#include "model/generate.h"

int lmeval_check(const aflo_gen_eval *g, const aflo_dataset *d, char *err, size_t errlen) {
    if (g->rule <= ANSWER_NONE || g->rule >= ANSWER_RULE_COUNT)
        return set_err(err, errlen, "answer_rule: no rule to judge generations by");
    if (!g->detok)
        return set_err(err, errlen, "answer_rule: generations need a detokenizer to become text");
    if (g->max_new_tokens < 1 || g->max_new_tokens > LMEVAL_MAX_NEW_TOKENS)
        return set_err(err, errlen, "eval_max_new_tokens: must be in [1, %d], got %d",
                       LMEVAL_MAX_NEW_TOKENS, g->max_new_tokens);
    for (int i = 0; d && i < d->n; i++)
        if (dataset_has_reference(d, i)) return 0;
    return set_err(err, errlen,
                   "answer_rule: the evaluation data has no row with a completion to judge "
                   "({\"prompt\", \"completion\"} or Alpaca rows whose prompt fits max_seq_len)");
}

int evaluate_exact_match(aflo_model *m, const aflo_dataset *d, const aflo_gen_eval *g, int *matched,
                         int *judged, char *err, size_t errlen) {
    *matched = *judged = 0;
    if (lmeval_check(g, d, err, errlen)) return -1;
    model_set_dropout(m, false);
    model_set_training(m, false);
    gen_params p = gen_params_default();
    p.max_new_tokens = g->max_new_tokens;
    p.eos_id = g->eos_id;
    for (int i = 0; i < d->n; i++) {
        if (!dataset_has_reference(d, i)) continue;
        gen_result r;
        char why[400];
        if (generate(m, d->ids + d->offsets[i], d->prompt_len[i], &p, &r, why, sizeof why))
            return set_err(err, errlen, "exact-match evaluation, row %d: %s", i + 1, why);
        /* the end-of-sequence id ends the answer; it is not text */
        int n = r.n;
        if (n > 0 && r.finish == GEN_FINISH_EOS) n--;
        char *text = NULL;
        size_t len = 0;
        int rc = g->detok(g->detok_ctx, r.ids, n, &text, &len, why, sizeof why);
        gen_result_free(&r);
        if (rc) return set_err(err, errlen, "exact-match evaluation, row %d: %s", i + 1, why);
        const char *ref = d->ref_text + d->ref_offsets[i];
        size_t ref_len = d->ref_offsets[i + 1] - d->ref_offsets[i];
        int hit = answer_match(g->rule, text, len, ref, ref_len);
        free(text);
        if (hit < 0) return set_err(err, errlen, "out of memory judging row %d", i + 1);
        *matched += hit;
        (*judged)++;
    }
    return 0;
}
