/* causal_attn.h — masked multi-head attention of a decoder: causal, with
 * padding, an optional sliding window and grouped-query heads, forward and
 * backward.
 *
 * One interface, so a faster kernel can replace this straightforward one
 * (per (sequence, head) score matrices through gemm) without touching the
 * model: q, k, v in, out plus one saved statistic per query row (its
 * log-sum-exp), and a backward that recomputes the probabilities from those
 * statistics instead of storing S x S of them, as flash attention does.
 *
 * Layout: row t of sequence b is row b*S + t. q and out hold n_heads heads
 * of head_dim per row, k and v n_kv_heads; query head h reads KV head
 * h / (n_heads / n_kv_heads) (transformers' repeat_kv). Scores are
 * q.k / sqrt(head_dim). Query t sees key s when s <= t, key_mask[b*S + s]
 * is set (or key_mask is NULL), and with a window W > 0, t - s < W
 * (Mistral's sliding window). A query that sees no key gets out = 0 and
 * lse = -INFINITY (HF would spread it over masked keys; no label reads it
 * when padding is on the right). */
#ifndef AFLO_CAUSAL_ATTN_H
#define AFLO_CAUSAL_ATTN_H

#include <stddef.h>
#include <stdint.h>

#include "model/gemm.h"

typedef struct {
    int batch, seq;
    int n_heads, n_kv_heads, head_dim;
    int window;              /* 0: no sliding window */
    const uint8_t *key_mask; /* batch x seq, 1 = real token; NULL: all real */
} causal_attn_shape;

/* Floats of scratch forward and backward need. */
size_t causal_attn_scratch_floats(const causal_attn_shape *a);

/* out (rows x n_heads*head_dim), lse (batch x n_heads x seq). */
void causal_attention_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, const causal_attn_shape *a, float *scratch,
                              aflo_flops *f);
/* dq (written), dk and dv (written: the sum over each KV head's query
 * heads) from dout and the forward's inputs, out and lse. */
void causal_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const causal_attn_shape *a, float *scratch, aflo_flops *f);

#endif
