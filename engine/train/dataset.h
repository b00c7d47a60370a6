/* dataset.h — tokenised examples in memory and their batching.
 *
 * A dataset is three flat arrays (token ids, token types, per-example
 * offsets) plus one label per example, so a million short examples cost
 * a few allocations, not a million. Batches use dynamic padding: each batch
 * is padded to its own longest example, never to max_seq_len; length
 * bucketing (optional) groups examples of similar length into the same
 * batches so that padding shrinks further. */
#ifndef AFLO_DATASET_H
#define AFLO_DATASET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/model.h"
#include "base/rng.h"

typedef struct {
    int n; /* examples */
    size_t ntokens;
    int32_t *ids, *type_ids; /* ntokens each */
    size_t *offsets;         /* n + 1 */
    int32_t *labels;         /* n: class ids (classification) */
    float *targets;          /* n: values (regression) */
    /* ntokens: causal LM's labels per token (model.h: unshifted,
     * LABEL_IGNORE where no loss is taken), NULL for the other tasks */
    int32_t *token_labels;
    int max_len; /* longest example */
    size_t cap_n, cap_tokens;
    /* Causal-LM evaluation references (dataset_set_reference), NULL when
     * none were kept: per example, how many of its first tokens are the
     * prompt to generate from (BOS included; 0: the row has no completion
     * to judge) and its reference completion text,
     * ref_text[ref_offsets[i] .. ref_offsets[i + 1]), not NUL-terminated. */
    int32_t *prompt_len;
    size_t *ref_offsets;
    char *ref_text;
    int n_refs;
    size_t cap_refs, cap_ref_bytes;
} aflo_dataset;

void dataset_init(aflo_dataset *d);
void dataset_free(aflo_dataset *d);
/* Append one example (copied). type_ids may be NULL (all 0). -1 on OOM. */
int dataset_add(aflo_dataset *d, const int32_t *ids, const int32_t *type_ids, int len,
                int32_t label, float target);
/* Append one causal-LM example: ids and their labels (both len). -1 on OOM
 * or when the dataset already holds examples of the other kind. */
int dataset_add_lm(aflo_dataset *d, const int32_t *ids, const int32_t *token_labels, int len);
/* Give the example just added (the last) its generation reference:
 * prompt_len (0 <= prompt_len <= its length; 0 when it has no completion)
 * and the reference completion text (len bytes, copied). A dataset keeps
 * references for every example or for none: call it after each add from
 * the first example on. -1 on OOM or when that order is broken. */
int dataset_set_reference(aflo_dataset *d, int prompt_len, const char *text, size_t len);
/* Whether example i has a prompt and reference to judge a generation by. */
static inline bool dataset_has_reference(const aflo_dataset *d, int i) {
    return d->prompt_len && i < d->n_refs && d->prompt_len[i] > 0;
}
/* Next-token targets of example i: labels other than LABEL_IGNORE after its
 * first token (0 without token labels). */
size_t dataset_loss_tokens(const aflo_dataset *d, int i);
static inline int dataset_len(const aflo_dataset *d, int i) {
    return (int)(d->offsets[i + 1] - d->offsets[i]);
}

/* Buffers for one batch of up to max_batch examples of up to max_seq tokens. */
typedef struct {
    int max_batch, max_seq;
    int32_t *ids, *type_ids, *labels, *token_labels;
    uint8_t *mask;
    float *targets;
} aflo_batch_buffers;

int batch_buffers_init(aflo_batch_buffers *bb, int max_batch, int max_seq);
void batch_buffers_free(aflo_batch_buffers *bb);

/* Gather examples idx[0..count) into a padded batch (pad with pad_id, mask
 * 0; right padding, token labels LABEL_IGNORE there). Examples longer than max_seq are cut (the tokenizer normally already
 * truncated them). */
void dataset_make_batch(const aflo_dataset *d, const int *idx, int count, int32_t pad_id,
                        aflo_batch_buffers *bb, aflo_batch *out);

/* Length bucketing of an already shuffled order[0..n): cut it into chunks of
 * `chunk` examples (rounded up to whole batches), sort each chunk by example
 * length — stably, so equal lengths keep their shuffled order and the result
 * depends on nothing but the input order — then shuffle the full batches of
 * batch_size with rng. Each batch then holds examples of similar length
 * (little padding) while the batch sequence stays random. A last, partial
 * batch (n not a multiple of batch_size) stays last, because the trainer
 * takes full batches until the end of the order. scratch: min(n, chunk)
 * ints. */
void dataset_bucket_by_length(const aflo_dataset *d, int *order, int n, int batch_size, long chunk,
                              aflo_rng *rng, int *scratch);

#endif
