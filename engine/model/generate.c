/* generate.c — prefill, then choose-and-feed one token at a time (see
 * generate.h). The last token chosen is never fed: nothing needs its
 * logits, so a sequence of P prompt and G generated tokens takes
 * P + G - 1 positions of the model. */
#include "model/generate.h"

#include <math.h>
#include <stdlib.h>

#include "base/errmsg.h"
#include "model/decode.h"
#include "model/family.h"

const char *const gen_finish_names[GEN_FINISH_COUNT] = {"eos", "length", "stopped"};

gen_params gen_params_default(void) {
    return (gen_params){.max_new_tokens = 64, .temperature = 0.0f, .top_p = 1.0f, .eos_id = -1};
}

static int32_t argmax(const float *x, int V) {
    int32_t best = 0;
    for (int i = 1; i < V; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* Probability order for the nucleus: descending, ties by id, so the cut is
 * the same on every platform (qsort is not stable). */
static int by_prob_desc(const void *a, const void *b) {
    const gen_cand *x = a, *y = b;
    if (x->p != y->p) return x->p > y->p ? -1 : 1;
    return (x->id > y->id) - (x->id < y->id);
}

/* Uniform in [0, 1) with 53 random bits: 24 bits would make tokens of
 * probability below 2^-24 unreachable. */
static double uniform53(aflo_rng *rng) { return (double)(rng_next(rng) >> 11) * 0x1p-53; }

int32_t gen_choose(const float *logits, int V, float temperature, float top_p, aflo_rng *rng,
                   gen_cand *cand) {
    if (temperature <= 0.0f) return argmax(logits, V);
    float mx = logits[argmax(logits, V)];
    double sum = 0.0;
    for (int i = 0; i < V; i++) {
        cand[i] = (gen_cand){expf((logits[i] - mx) / temperature), i};
        sum += cand[i].p;
    }
    for (int i = 0; i < V; i++) cand[i].p = (float)(cand[i].p / sum);
    int kept = V;
    double mass = 1.0;
    if (top_p < 1.0f) {
        qsort(cand, (size_t)V, sizeof *cand, by_prob_desc);
        mass = 0.0;
        for (kept = 0; kept < V;) {
            mass += cand[kept++].p;
            if (mass >= top_p) break;
        }
    }
    double u = uniform53(rng) * mass, acc = 0.0;
    for (int k = 0; k < kept; k++) {
        acc += cand[k].p;
        if (u < acc) return cand[k].id;
    }
    return cand[kept - 1].id; /* u at the top of the mass, by rounding */
}

static int check_params(const gen_params *p, int n_prompt, char *err, size_t errlen) {
    if (n_prompt < 1)
        return set_err(err, errlen,
                       "the prompt is empty (a causal LM needs at least one token, "
                       "usually BOS)");
    if (p->max_new_tokens < 0)
        return set_err(err, errlen, "max_new_tokens must be >= 0, got %d", p->max_new_tokens);
    if (!(p->temperature >= 0.0f) || !isfinite(p->temperature))
        return set_err(err, errlen, "temperature must be >= 0, got %g", (double)p->temperature);
    if (!(p->top_p > 0.0f && p->top_p <= 1.0f))
        return set_err(err, errlen, "top_p must be in (0, 1], got %g", (double)p->top_p);
    return 0;
}

int generate(aflo_model *m, const int32_t *prompt, int n_prompt, const gen_params *p,
             gen_result *out, char *err, size_t errlen) {
    *out = (gen_result){.finish = GEN_FINISH_LENGTH};
    if (check_params(p, n_prompt, err, errlen)) return -1;
    int max_pos = family_max_tokens(model_config(m));
    if (n_prompt > max_pos)
        return set_err(err, errlen,
                       "a prompt of %d tokens exceeds the model's %d "
                       "positions",
                       n_prompt, max_pos);
    /* P + G - 1 positions: at most max_pos - P + 1 new tokens. */
    int max_new = p->max_new_tokens;
    if (max_new > max_pos - n_prompt + 1) max_new = max_pos - n_prompt + 1;
    if (max_new == 0) return 0;

    int V = model_config(m)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    gen_cand *cand = malloc((size_t)V * sizeof *cand);
    out->ids = malloc((size_t)max_new * sizeof *out->ids);
    aflo_decode *d = NULL;
    int rc = -1;
    if (!logits || !cand || !out->ids) {
        set_err(err, errlen, "out of memory for generation");
        goto done;
    }
    d = decode_open(m, n_prompt + max_new - 1, err, errlen);
    if (!d || decode_append(d, prompt, n_prompt, logits, err, errlen)) goto done;
    aflo_rng rng;
    rng_seed(&rng, p->seed);
    for (;;) {
        int32_t t = gen_choose(logits, V, p->temperature, p->top_p, &rng, cand);
        out->ids[out->n++] = t;
        if (p->on_token && p->on_token(p->user, t, out->n - 1)) {
            out->finish = GEN_FINISH_STOPPED;
            break;
        }
        if (t == p->eos_id) {
            out->finish = GEN_FINISH_EOS;
            break;
        }
        if (out->n == max_new) break;
        if (decode_append(d, &t, 1, logits, err, errlen)) goto done;
    }
    rc = 0;
done:
    decode_close(d);
    free(logits);
    free(cand);
    if (rc) gen_result_free(out);
    return rc;
}

void gen_result_free(gen_result *r) {
    free(r->ids);
    r->ids = NULL;
    r->n = 0;
}
