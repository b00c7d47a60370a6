/* decode.c — the family-agnostic side of incremental decoding (decode.h):
 * checks, chunking and the position counter; the family does the maths. */
#include "model/decode.h"

#include <stdlib.h>

#include "base/errmsg.h"
#include "model/family.h"

struct aflo_decode {
    aflo_model *m;
    const aflo_decoder *dec;
    void *state;
    int len, cap, vocab;
};

aflo_decode *decode_open(aflo_model *m, int max_tokens, char *err, size_t errlen) {
    const aflo_family *f = model_family(m);
    if (!f->decoder || model_task(m) != TASK_CAUSAL_LM) {
        set_err(err, errlen,
                "the %s family has no incremental decoder (generation needs a "
                "causal language model)",
                f->name);
        return NULL;
    }
    if (max_tokens < 1) {
        set_err(err, errlen, "decode: max_tokens must be positive, got %d", max_tokens);
        return NULL;
    }
    aflo_decode *d = calloc(1, sizeof *d);
    if (!d) {
        set_err(err, errlen, "out of memory for the decoder");
        return NULL;
    }
    d->m = m;
    d->dec = f->decoder;
    d->cap = max_tokens;
    d->vocab = model_config(m)->vocab_size;
    d->state = d->dec->open(m, max_tokens, err, errlen);
    if (!d->state) {
        free(d);
        return NULL;
    }
    return d;
}

int decode_append(aflo_decode *d, const int32_t *ids, int n, float *logits, char *err,
                  size_t errlen) {
    if (n < 1) return set_err(err, errlen, "decode: nothing to append");
    if (n > d->cap - d->len)
        return set_err(err, errlen, "decode: %d more tokens exceed the %d positions reserved", n,
                       d->cap);
    for (int i = 0; i < n; i++)
        if (ids[i] < 0 || ids[i] >= d->vocab)
            return set_err(err, errlen, "decode: id %d outside the vocabulary of %d", (int)ids[i],
                           d->vocab);
    for (int done = 0; done < n; done += DECODE_CHUNK) {
        int k = n - done < DECODE_CHUNK ? n - done : DECODE_CHUNK;
        /* A failure midway leaves positions beyond d->len written but not
         * counted: the next append overwrites them. */
        if (d->dec->append(d->state, ids + done, k, d->len + done, logits, err, errlen)) return -1;
    }
    d->len += n;
    return 0;
}

int decode_length(const aflo_decode *d) { return d->len; }

void decode_reset(aflo_decode *d) { d->len = 0; }

void decode_close(aflo_decode *d) {
    if (!d) return;
    d->dec->close(d->state);
    free(d);
}
