/* attention.h — scaled dot-product attention as one fused, blocked kernel.
 *
 * softmax(q k^T * scale + mask) v for every (batch, head), forward and
 * backward, without per-head GEMM calls and without the T x T probability
 * matrix: forward keeps only each row's log-sum-exp (batch x heads x T
 * floats); backward recomputes the probabilities from it, block by block.
 * One thread takes one (batch, kv head) unit: it copies that head's K and V
 * into its scratch (padded, and transposed where a product contracts over
 * the head dimension), then walks blocks of up to 128 query rows, each
 * product a register-tiled FMA loop over operands in L1/L2: forward the
 * scores, mask and softmax by rows, P V; backward the scores again,
 * dP = dO V^T, dS, dQ = dS K per block, and dK^T, dV^T summed in scratch
 * over every block and every query head of the group, written once. The
 * per-tile maths is multi-ISA (attention_kern.c, see base/isa.h).
 *
 * Options cover the encoder (key padding mask or lengths) and decoder
 * families (causal, sliding window, grouped-query heads); q, k, v and the
 * gradients are addressed by row strides, so they may live in one fused QKV
 * buffer or apart. Attention dropout uses ops.c's counter hash on element
 * (i, j) of head (b, h) with stream dropout_stream + b*heads + h, exactly as
 * dropout_forward on that head's T x T matrix would, and is regenerated in
 * backward, never stored.
 *
 * FLOPs are counted as the dense per-head GEMMs count them (2*T*T*d per
 * product: 2 forward, 4 backward), whatever masking skips; the recomputation
 * of the scores in backward is not counted. Results do not depend on the
 * thread count (each (batch, kv head) is one thread's work, in a fixed
 * order); they can differ between ISA levels in the last bits. */
#ifndef AFLO_ATTENTION_H
#define AFLO_ATTENTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "model/gemm.h"

typedef struct {
    int batch, heads, kv_heads, seq, head_dim; /* heads % kv_heads == 0 */
    float scale;                               /* usually 1/sqrt(head_dim) */
    /* Key padding: key_mask (batch x seq, nonzero = attend) and/or key_lens
     * (batch; keys at or after the length are padding). Either may be NULL. */
    const uint8_t *key_mask;
    const int *key_lens;
    bool causal; /* query i sees keys j <= i */
    /* > 0: query i sees keys with i - window < j (and j < i + window when
     * not causal); 0: no window. */
    int window;
    float dropout; /* probability on the attention weights; 0: off */
    uint64_t dropout_seed, dropout_stream;
} attention_opts;

/* A tensor of batch*seq rows (token b*seq + t); head h's columns start at
 * h*head_dim (kv head for k, v and their gradients). */
typedef struct {
    float *data;
    int ld; /* row stride in floats */
} attention_rows;

/* Floats of scratch one thread needs. */
size_t attention_scratch_floats(const attention_opts *o);
/* The thread count worth reserving scratch for: the online cores. */
int attention_max_threads(void);

/* out = attention(q, k, v); lse (batch x heads x seq) gets each row's
 * log-sum-exp (+inf for a query row with no visible key, whose output is
 * 0). scratch holds scratch_threads slices of attention_scratch_floats;
 * the call uses at most that many threads. flops may be NULL. */
void attention_forward(const attention_opts *o, attention_rows out, float *lse, attention_rows q,
                       attention_rows k, attention_rows v, float *scratch, int scratch_threads,
                       aflo_flops *flops);

/* dq, dk, dv (overwritten) from dout, given the forward's inputs, out and
 * lse. */
void attention_backward(const attention_opts *o, attention_rows dq, attention_rows dk,
                        attention_rows dv, attention_rows dout, attention_rows out,
                        const float *lse, attention_rows q, attention_rows k, attention_rows v,
                        float *scratch, int scratch_threads, aflo_flops *flops);

#endif
