/* llama_ops.h — the kernels of a LLaMA-family decoder that an encoder lacks:
 * RMSNorm, rotary position embeddings (RoPE) in Hugging Face's rotate-half
 * pairing, the SwiGLU gate, and next-token cross-entropy with an ignore
 * label. Each forward sits beside its backward with the same argument order,
 * under ops.h's conventions: fp32 row-major, a backward OVERWRITES the input
 * gradient it produces and ACCUMULATES (+=) into parameter gradients (which
 * may be NULL when frozen), reductions across rows run serially in row
 * order so results do not depend on the thread count. */
#ifndef AFLO_LLAMA_OPS_H
#define AFLO_LLAMA_OPS_H

#include <stddef.h>
#include <stdint.h>

#include "model/config.h"

/* out[n,:] = x[n,:] * rstd_n * w, rstd_n = 1/sqrt(mean(x[n,:]^2) + eps)
 * (transformers' LlamaRMSNorm). rstd (N) is saved for backward. out may not
 * alias x. */
void rmsnorm_forward(float *out, float *rstd, const float *x, const float *w, int N, int C,
                     float eps);
/* dx = dLoss/dx (dx may alias dout, not x); dw += sum_n dout * x * rstd. */
void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *x, const float *rstd,
                      const float *w, int N, int C);

/* RoPE's inverse frequencies inv_freq[j], j < head_dim/2: rope_theta^(-2j/d),
 * then the config's rope_scaling (linear: / factor; llama3: / factor for
 * long wavelengths, unchanged for short ones, interpolated between), as
 * transformers' ROPE_INIT_FUNCTIONS compute them. */
void rope_inv_freq(double *inv_freq, const aflo_config *c, int head_dim);
/* cos/sin tables [S x head_dim/2] for positions 0..S-1. */
void rope_tables(float *cos_t, float *sin_t, const double *inv_freq, int S, int head_dim);

/* Rotate each of `heads` heads of head_dim in every row in place, row n at
 * position pos[n]: pairs (j, j + d/2) with angle pos*inv_freq[j]:
 *   x'[j] = x[j] cos - x[j+d/2] sin,  x'[j+d/2] = x[j+d/2] cos + x[j] sin. */
void rope_forward(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N,
                  int heads, int head_dim);
/* The transpose rotation (angle -theta), in place on the gradient. */
void rope_backward(float *dx, const int32_t *pos, const float *cos_t, const float *sin_t, int N,
                   int heads, int head_dim);

/* out = silu(g) * u, silu(g) = g * sigmoid(g). out may alias g or u. */
void swiglu_forward(float *out, const float *g, const float *u, size_t n);
/* dg = dout * u * silu'(g), du = dout * silu(g); dg/du may alias dout only
 * when they are written after reading it (dg may alias dout). */
void swiglu_backward(float *dg, float *du, const float *dout, const float *g, const float *u,
                     size_t n);

/* Next-token cross-entropy over N rows of V logits: row n is scored
 * against target[n] when it is >= 0 (skipped when negative). lse (N) keeps
 * each scored row's log-sum-exp for backward. Returns the SUM of the row
 * losses (the caller divides by the count). */
double token_cross_entropy_forward(float *lse, const float *logits, const int32_t *target, int N,
                                   int V);
/* dlogits = k * (softmax(logits) - onehot(target)) on scored rows, 0 on the
 * others. dlogits may alias logits. */
void token_cross_entropy_backward(float *dlogits, const float *logits, const float *lse,
                                  const int32_t *target, int N, int V, float k);

#endif
