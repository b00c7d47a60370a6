/* ops.h — the elementwise and reduction kernels of the transformer, each
 * forward beside its backward with the same argument order (llm.c style).
 *
 * Conventions, for every function here:
 * - Tensors are fp32, row-major, contiguous; N rows of C columns.
 * - A backward OVERWRITES the input gradient it produces (dx = ...), and
 *   ACCUMULATES (+=) into parameter gradients (dgamma, dbeta, dbias, ds), so
 *   gradient accumulation over micro-batches needs no extra buffer. A
 *   parameter-gradient pointer may be NULL when that parameter is frozen;
 *   the kernel then skips that reduction entirely.
 * - Unless a comment says otherwise, dx may alias dout (in-place backward).
 * - Row-parallel loops use OpenMP with the engine's thread count; every
 *   reduction across rows sums each column over the rows in order
 *   (serially, or whole columns per thread), so results are bit-identical
 *   for any thread count. The kernels of ops_kern.c (GELU, bias + GELU,
 *   bias, dropout) also give the same bits at every ISA level.
 * - Dropout masks are not stored: keep(i) = rng_hash(seed, stream*2^32 + i)
 *   compared with p, so backward regenerates exactly the forward mask.
 */
#ifndef AFLO_OPS_H
#define AFLO_OPS_H

#include <stddef.h>
#include <stdint.h>

/* out[n,:] = (x[n,:] - mean_n) * rstd_n * gamma + beta, with
 * rstd_n = 1/sqrt(var_n + eps) (biased variance, as torch.nn.LayerNorm).
 * mean/rstd (N each) are saved for backward. out may not alias x. */
void layernorm_forward(float *out, float *mean, float *rstd, const float *x, const float *gamma,
                       const float *beta, int N, int C, float eps);
/* dx = dLoss/dx; dgamma += sum_n dout*xhat; dbeta += sum_n dout. dx may not alias x. */
void layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout, const float *x,
                        const float *mean, const float *rstd, const float *gamma, int N, int C);

/* GELU, exact erf form: 0.5*x*(1+erf(x/sqrt(2))). out may alias x. */
void gelu_forward(float *out, const float *x, size_t n);
/* dx = dout * gelu'(x). */
void gelu_backward(float *dx, const float *x, const float *dout, size_t n);

/* out[n,c] = gelu(x[n,c] + b[c]): the bias add fused into the GELU, for a
 * linear layer whose bias is left to its caller (linear.h bias_by_caller).
 * Backward needs x as it was (without the bias), so keep it: out may alias
 * x only when no backward follows. */
void bias_gelu_forward(float *out, const float *x, const float *b, int N, int C);
/* dx = dout * gelu'(x + b); db[c] += sum_n dx[n,c] (db may be NULL when the
 * bias is frozen). x and b as given to the forward; dx may alias dout. */
void bias_gelu_backward(float *dx, float *db, const float *x, const float *b, const float *dout,
                        int N, int C);

/* tanh. */
void tanh_forward(float *out, const float *x, size_t n);
/* dx = dout * (1 - out^2), from the saved forward OUTPUT. */
void tanh_backward(float *dx, const float *out, const float *dout, size_t n);

/* y[n,c] += b[c]. */
void bias_forward(float *y, const float *b, int N, int C);
/* db[c] += sum_n dy[n,c]. */
void bias_backward(float *db, const float *dy, int N, int C);

/* y[n,c] = x[n,c] * s[c] (y may alias x). */
void scale_cols_forward(float *y, const float *x, const float *s, int N, int C);
/* dx[n,c] = dy[n,c]*s[c]; ds[c] += sum_n dy[n,c]*x[n,c]. dx may be NULL
 * (no input gradient wanted); ds may be NULL. x is the forward INPUT. dx may alias dy. */
void scale_cols_backward(float *dx, float *ds, const float *dy, const float *x, const float *s,
                         int N, int C);

/* Row softmax over `rows` rows of length S. key_mask (length S, may be NULL)
 * marks valid keys with 1; masked keys get probability exactly 0 (as HF's
 * additive large-negative mask does). At least one key must be valid.
 * p may alias scores. */
void softmax_forward(float *p, const float *scores, const uint8_t *key_mask, int rows, int S);
/* dscores = p * (dp - sum(p*dp)) per row. dscores may alias dp. */
void softmax_backward(float *dscores, const float *p, const float *dp, int rows, int S);

/* Inverted dropout: y = keep ? x/(1-p) : 0, keep(i) as described above.
 * p == 0 copies (y may alias x). */
void dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream);
void dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                      uint64_t stream);

/* out[n,:] = table[ids[n],:] (+= when accumulate is nonzero). ids must be in range. */
void embedding_forward(float *out, const int32_t *ids, const float *table, int N, int C,
                       int accumulate);
/* dtable[ids[n],:] += dout[n,:], serially in row order. */
void embedding_backward(float *dtable, const int32_t *ids, const float *dout, int N, int C);

/* Mean cross-entropy of B rows of L logits against integer labels; probs
 * (B x L) saved for backward. Returns the mean loss. */
float cross_entropy_forward(float *probs, const float *logits, const int32_t *labels, int B, int L);
/* dlogits = scale * (probs - onehot(labels)) / B. */
void cross_entropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int L,
                            float scale);

/* Mean squared error of B predictions (logits, one per row) against targets. */
float mse_forward(const float *pred, const float *target, int B);
/* dpred = scale * 2 * (pred - target) / B. */
void mse_backward(float *dpred, const float *pred, const float *target, int B, float scale);

#endif
