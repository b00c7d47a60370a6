/* deberta_attn.h — DeBERTa's disentangled self-attention (docs/deberta.md),
 * forward and backward, and its relative-position buckets.
 *
 * For head h of sequence b, with content rows q, k, v (batch*seq x H) and
 * positional rows qr, kr (2*span x H, the layer's projections of the
 * shared relative embeddings), idx(i,j) = clamp(bucket(i-j) + span, 0,
 * 2*span-1):
 *   S[i,j] = (q_i.k_j + [c2p] q_i.kr_idx(i,j) + [p2c] k_j.qr_idx(i,j)) * scale
 *   P = softmax over the keys j with mask[b,j]; ctx_i = sum_j dropout(P)[i,j] v_j
 * Query rows that are padding get P = 0 and ctx = 0 (the old XSoftmax; the
 * rows never reach a loss). The gather of transformers' c2p/p2c (a full
 * seq x 2*span product, then torch.gather) is computed directly: one dot
 * product per (i,j) and term; the backward scatters into dkr/dqr the same
 * way, which is the gradient torch.gather's backward scatter-adds.
 *
 * Speed is not this module's concern yet: per (batch, head) loops, with the
 * seq x seq probabilities stored for backward (batch*heads*seq*seq floats).
 * Forward runs (batch, head) units on the engine's threads; backward runs
 * one thread per head (every batch of it in order), so the sums into
 * dkr/dqr, shared by the batch, do not depend on the thread count.
 *
 * FLOPs are counted as dense per-head products count them, 2*seq*seq*d
 * each: forward q.k, P v and one per positional term; backward dP, dV, dQ,
 * dK and two per positional term. */
#ifndef AFLO_DEBERTA_ATTN_H
#define AFLO_DEBERTA_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "model/gemm.h"

typedef struct {
    int batch, heads, seq, head_dim;
    int ld;                                /* row stride of q, k, v, ctx and their gradients (H) */
    int span;                              /* positional rows are 2*span, row stride ld */
    unsigned pos;                          /* CONFIG_POS_C2P | CONFIG_POS_P2C (config.h) */
    float scale;                           /* 1/sqrt(head_dim * (1 + number of positional terms)) */
    const int32_t *rel_idx;                /* seq x seq: idx(i,j) (deberta_rel_index) */
    const uint8_t *mask;                   /* batch x seq, nonzero = real token */
    float dropout;                         /* on the probabilities; 0: off */
    uint64_t dropout_seed, dropout_stream; /* head (b,h) uses stream + b*heads + h */
} deberta_attn_opts;

/* transformers' make_log_bucket_position for one distance: |delta| below
 * buckets/2 as it is, beyond that log-spaced up to max_position (in float32
 * as torch computes it): buckets 256, max 512: 140 -> 137, 256 -> 192,
 * 511 -> 255, 512 -> 256. buckets <= 0 or max_position <= 0: delta. */
int deberta_rel_bucket(int delta, int buckets, int max_position);

/* idx (seq x seq) = clamp(bucket(i-j) + span, 0, 2*span-1). */
void deberta_rel_index(int32_t *idx, int seq, int span, int buckets, int max_position);

/* Floats of the stored probabilities and of the scratch (both arenas the
 * caller provides; scratch_threads slices of scratch). */
size_t deberta_attn_probs_floats(const deberta_attn_opts *o);
size_t deberta_attn_scratch_floats(const deberta_attn_opts *o);

/* ctx (batch*seq x ld, head columns written) and probs; qr/kr may be NULL
 * when their term is off. */
void deberta_attn_forward(const deberta_attn_opts *o, float *ctx, float *probs, const float *q,
                          const float *k, const float *v, const float *qr, const float *kr,
                          float *scratch, int scratch_threads, aflo_flops *flops);

/* dq, dk, dv (batch*seq x ld) and dqr, dkr (2*span x ld; NULL when the
 * term is off) are overwritten, from dctx and the forward's inputs. */
void deberta_attn_backward(const deberta_attn_opts *o, float *dq, float *dk, float *dv, float *dqr,
                           float *dkr, const float *dctx, const float *probs, const float *q,
                           const float *k, const float *v, const float *qr, const float *kr,
                           float *scratch, int scratch_threads, aflo_flops *flops);

#endif
