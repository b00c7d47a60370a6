/* dataset.c — growable flat arrays of tokenised examples; padded batches
 * (with per-token labels for causal LMs); length bucketing of an epoch's
 * order. */
#include "train/dataset.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

void dataset_init(aflo_dataset *d) { memset(d, 0, sizeof *d); }

void dataset_free(aflo_dataset *d) {
    free(d->ids);
    free(d->type_ids);
    free(d->offsets);
    free(d->labels);
    free(d->targets);
    free(d->token_labels);
    free(d->prompt_len);
    free(d->ref_offsets);
    free(d->ref_text);
    memset(d, 0, sizeof *d);
}

/* Grow each array of arrs to hold need elements of size elem (they share
 * one capacity). Arrays already grown stay valid if a later one fails. */
static int grow_all(void **arrs[], int n, size_t *cap, size_t need, size_t elem) {
    if (need <= *cap) return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    for (int i = 0; i < n; i++) {
        void *q = realloc(*arrs[i], c * elem);
        if (!q) return -1;
        *arrs[i] = q;
    }
    *cap = c;
    return 0;
}

/* One example; token_labels non-NULL exactly for a causal-LM dataset (a
 * dataset is one kind or the other from its first example on). */
static int add_row(aflo_dataset *d, const int32_t *ids, const int32_t *type_ids,
                   const int32_t *token_labels, int len, int32_t label, float target) {
    if (len < 0) return -1;
    bool lm = token_labels != NULL;
    if (d->n > 0 && lm != (d->token_labels != NULL)) return -1;
    void **tok[] = {(void **)&d->ids, (void **)&d->type_ids, (void **)&d->token_labels};
    void **per[] = {(void **)&d->labels, (void **)&d->targets};
    /* offsets (size_t) and labels/targets (4 bytes) share cap_n: offsets grows
     * from a copy first, then the same need takes cap_n to the same value */
    size_t off_cap = d->cap_n;
    if (grow_all(tok, lm ? 3 : 2, &d->cap_tokens, d->ntokens + (size_t)len, sizeof(int32_t)) ||
        grow_all((void **[]){(void **)&d->offsets}, 1, &off_cap, (size_t)d->n + 2,
                 sizeof *d->offsets) ||
        grow_all(per, 2, &d->cap_n, (size_t)d->n + 2, sizeof(int32_t)))
        return -1;
    if (d->n == 0) d->offsets[0] = 0;
    memcpy(d->ids + d->ntokens, ids, (size_t)len * sizeof *ids);
    if (type_ids)
        memcpy(d->type_ids + d->ntokens, type_ids, (size_t)len * sizeof *type_ids);
    else
        memset(d->type_ids + d->ntokens, 0, (size_t)len * sizeof *type_ids);
    if (lm) memcpy(d->token_labels + d->ntokens, token_labels, (size_t)len * sizeof *ids);
    d->ntokens += (size_t)len;
    d->labels[d->n] = label;
    d->targets[d->n] = target;
    d->n++;
    d->offsets[d->n] = d->ntokens;
    if (len > d->max_len) d->max_len = len;
    return 0;
}

int dataset_add(aflo_dataset *d, const int32_t *ids, const int32_t *type_ids, int len,
                int32_t label, float target) {
    return add_row(d, ids, type_ids, NULL, len, label, target);
}

int dataset_add_lm(aflo_dataset *d, const int32_t *ids, const int32_t *token_labels, int len) {
    if (!token_labels) return -1;
    return add_row(d, ids, NULL, token_labels, len, 0, 0.0f);
}

int dataset_set_reference(aflo_dataset *d, int prompt_len, const char *text, size_t len) {
    if (d->n == 0 || d->n_refs != d->n - 1 || prompt_len < 0 ||
        prompt_len > dataset_len(d, d->n - 1))
        return -1;
    /* ref_offsets has one more entry than prompt_len: grow it from a copy
     * of the capacity first, as add_row does with offsets */
    size_t off_cap = d->cap_refs;
    size_t used = d->n_refs ? d->ref_offsets[d->n_refs] : 0;
    if (grow_all((void **[]){(void **)&d->ref_offsets}, 1, &off_cap, (size_t)d->n + 1,
                 sizeof *d->ref_offsets) ||
        grow_all((void **[]){(void **)&d->prompt_len}, 1, &d->cap_refs, (size_t)d->n + 1,
                 sizeof *d->prompt_len) ||
        grow_all((void **[]){(void **)&d->ref_text}, 1, &d->cap_ref_bytes, used + len + 1, 1))
        return -1;
    d->ref_offsets[0] = 0;
    if (len) memcpy(d->ref_text + used, text, len);
    d->prompt_len[d->n_refs] = prompt_len;
    d->ref_offsets[d->n_refs + 1] = used + len;
    d->n_refs++;
    return 0;
}

size_t dataset_loss_tokens(const aflo_dataset *d, int i) {
    if (!d->token_labels) return 0;
    size_t n = 0;
    /* position t predicts label t+1: the first label is never a target */
    for (size_t k = d->offsets[i] + 1; k < d->offsets[i + 1]; k++)
        n += d->token_labels[k] != LABEL_IGNORE;
    return n;
}

int batch_buffers_init(aflo_batch_buffers *bb, int max_batch, int max_seq) {
    memset(bb, 0, sizeof *bb);
    size_t n = (size_t)max_batch * (size_t)max_seq;
    bb->max_batch = max_batch;
    bb->max_seq = max_seq;
    bb->ids = malloc(n * sizeof *bb->ids);
    bb->type_ids = malloc(n * sizeof *bb->type_ids);
    bb->mask = malloc(n);
    bb->labels = malloc((size_t)max_batch * sizeof *bb->labels);
    bb->targets = malloc((size_t)max_batch * sizeof *bb->targets);
    bb->token_labels = malloc(n * sizeof *bb->token_labels);
    if (!bb->ids || !bb->type_ids || !bb->mask || !bb->labels || !bb->targets ||
        !bb->token_labels) {
        batch_buffers_free(bb);
        return -1;
    }
    return 0;
}

void batch_buffers_free(aflo_batch_buffers *bb) {
    free(bb->ids);
    free(bb->type_ids);
    free(bb->mask);
    free(bb->labels);
    free(bb->targets);
    free(bb->token_labels);
    memset(bb, 0, sizeof *bb);
}

void dataset_make_batch(const aflo_dataset *d, const int *idx, int count, int32_t pad_id,
                        aflo_batch_buffers *bb, aflo_batch *out) {
    int S = 1;
    for (int i = 0; i < count; i++) {
        int len = dataset_len(d, idx[i]);
        if (len > S) S = len;
    }
    if (S > bb->max_seq) S = bb->max_seq;
    for (int i = 0; i < count; i++) {
        const int32_t *ids = d->ids + d->offsets[idx[i]];
        const int32_t *tt = d->type_ids + d->offsets[idx[i]];
        int len = dataset_len(d, idx[i]);
        if (len > S) len = S;
        size_t row = (size_t)i * S;
        memcpy(bb->ids + row, ids, (size_t)len * sizeof *ids);
        memcpy(bb->type_ids + row, tt, (size_t)len * sizeof *tt);
        memset(bb->mask + row, 1, (size_t)len);
        if (d->token_labels)
            memcpy(bb->token_labels + row, d->token_labels + d->offsets[idx[i]],
                   (size_t)len * sizeof *ids);
        for (int s = len; s < S; s++) {
            bb->ids[row + s] = pad_id;
            bb->type_ids[row + s] = 0;
            bb->mask[row + s] = 0;
            bb->token_labels[row + s] = LABEL_IGNORE; /* padding carries no loss */
        }
        bb->labels[i] = d->labels[idx[i]];
        bb->targets[i] = d->targets[idx[i]];
    }
    *out = (aflo_batch){.batch = count,
                        .seq = S,
                        .input_ids = bb->ids,
                        .token_type_ids = bb->type_ids,
                        .attention_mask = bb->mask,
                        .labels = bb->labels,
                        .targets = bb->targets,
                        .token_labels = d->token_labels ? bb->token_labels : NULL};
}

/* Stable merge sort of idx[0..n) by example length, bottom-up, with tmp of n
 * ints: runs of width w are merged pairwise, taking from the left run on
 * ties, which is what keeps equal lengths in their incoming order. */
static void sort_by_length(const aflo_dataset *d, int *idx, long n, int *tmp) {
    int *src = idx, *dst = tmp;
    for (long w = 1; w < n; w *= 2) {
        for (long lo = 0; lo < n; lo += 2 * w) {
            long mid = lo + w < n ? lo + w : n;
            long hi = lo + 2 * w < n ? lo + 2 * w : n;
            long i = lo, j = mid, k = lo;
            while (i < mid && j < hi)
                dst[k++] = dataset_len(d, src[j]) < dataset_len(d, src[i]) ? src[j++] : src[i++];
            while (i < mid) dst[k++] = src[i++];
            while (j < hi) dst[k++] = src[j++];
        }
        int *t = src;
        src = dst;
        dst = t;
    }
    if (src != idx) memcpy(idx, src, (size_t)n * sizeof *idx);
}

static void swap_blocks(int *a, int *b, int len) {
    for (int i = 0; i < len; i++) {
        int t = a[i];
        a[i] = b[i];
        b[i] = t;
    }
}

void dataset_bucket_by_length(const aflo_dataset *d, int *order, int n, int batch_size, long chunk,
                              aflo_rng *rng, int *scratch) {
    if (n <= 1 || batch_size < 1) return;
    /* Whole batches per chunk, so no batch straddles two chunks. */
    chunk = (chunk + batch_size - 1) / batch_size * batch_size;
    for (long start = 0; start < n; start += chunk) {
        long len = n - start < chunk ? n - start : chunk;
        sort_by_length(d, order + start, len, scratch);
    }
    /* Fisher-Yates over whole batches: swapping equal-sized blocks in place. */
    int full = n / batch_size;
    for (int i = full - 1; i > 0; i--) {
        int j = (int)rng_below(rng, (uint64_t)i + 1);
        if (j != i)
            swap_blocks(order + (size_t)i * batch_size, order + (size_t)j * batch_size, batch_size);
    }
}
