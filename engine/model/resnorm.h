/* resnorm.h — the residual sites of a post-LN transformer block as single
 * passes over memory: residual + dropout + LayerNorm forward and its
 * backward, and the embedding sum + LayerNorm + dropout forward.
 *
 * Conventions as in ops.h: fp32, row-major, N rows of C columns; a backward
 * OVERWRITES input gradients and ACCUMULATES (+=) into dgamma/dbeta (NULL
 * when frozen). Dropout masks are exactly ops.h's: element i (flat index
 * n*C + c) is kept when (rng_hash(seed, (stream << 32) + i) >> 40) * 2^-24
 * >= p, so these functions and dropout_forward/backward with the same seed
 * and stream drop the same elements. p <= 0 turns dropout off.
 *
 * Results do not depend on the thread count: rows are independent, and
 * dgamma/dbeta are summed per fixed block of rows, the blocks then added in
 * order. Row sums use a fixed set of lanes, so they are the same at every
 * ISA level; LayerNorm outputs may still differ from layernorm_forward's in
 * the last bits (its row sums run in plain element order). */
#ifndef AFLO_RESNORM_H
#define AFLO_RESNORM_H

#include <stddef.h>
#include <stdint.h>

/* res = x + dropout(y); out = LayerNorm(res) (biased variance, eps inside
 * the square root, as layernorm_forward); mean/rstd (N each) saved for
 * backward, res too (the backward reads it). y is only read. */
void resnorm_forward(float *out, float *res, float *mean, float *rstd, const float *x,
                     const float *y, const float *gamma, const float *beta, int N, int C, float eps,
                     float p, uint64_t seed, uint64_t stream);

/* Floats of scratch resnorm_backward needs when dgamma or dbeta is given. */
size_t resnorm_scratch_floats(int N, int C);

/* Backward of resnorm_forward given dout = dLoss/dout:
 *   dres = LayerNorm backward (= dLoss/dx, the residual input's gradient),
 *   dy   = dropout's backward of dres (the same mask as the forward),
 *   dgamma += sum_n dout*xhat, dbeta += sum_n dout.
 * dres or dy may be NULL (not wanted); with p <= 0 dy equals dres, so a
 * caller may pass dy NULL and use dres. dres may alias dout; dy may not.
 * scratch (resnorm_scratch_floats) is needed only when dgamma or dbeta is
 * non-NULL. With p <= 0 and dy NULL this is plain LayerNorm backward. */
void resnorm_backward(float *dres, float *dy, float *dgamma, float *dbeta, float *scratch,
                      const float *dout, const float *res, const float *mean, const float *rstd,
                      const float *gamma, int N, int C, float p, uint64_t seed, uint64_t stream);

/* Embedding input of a BERT-style encoder: sum[n] = word[ids[n]] +
 * pos[pos_ids[n]] + type[type_ids[n]] (saved for backward), out =
 * dropout(LayerNorm(sum)); ids must be in range. */
void embnorm_forward(float *out, float *sum, float *mean, float *rstd, const float *word,
                     const int32_t *ids, const float *pos, const int32_t *pos_ids,
                     const float *type, const int32_t *type_ids, const float *gamma,
                     const float *beta, int N, int C, float eps, float p, uint64_t seed,
                     uint64_t stream);

#endif
