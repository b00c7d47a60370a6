/* linear.h — one linear layer with its optional low-rank adapter, forward
 * and backward, counting the FLOPs it executes.
 *
 *   AFLoRA/ELoRA:  Y = X W^T + b + s_b ⊙ ((s_d ⊙ (X A^T)) B^T)
 *   LoRA:          Y = X W^T + b + scale * (X A^T) B^T
 *
 * Which gradients are computed follows each tensor's trainable flag at the
 * time of the call, so freezing a projection removes its weight-gradient
 * product from the very next step. */
#ifndef AFLO_LINEAR_H
#define AFLO_LINEAR_H

#include "model/gemm.h"
#include "model/model.h"

typedef struct {
    int in, out;
    aflo_param *W, *b;           /* base weight (out x in) and bias (NULL: none, as LLaMA) */
    aflo_param *A, *B, *sd, *sb; /* adapter; all NULL when not adapted;
                                          sd/sb NULL for LoRA */
    int rank;
    float scale; /* 1 for AFLoRA/ELoRA, alpha/r for LoRA */
    /* The caller owns the bias b: forward leaves it out of Y and backward
     * does not accumulate its gradient (e.g. to fuse bias + GELU). False by
     * default: the layer adds b and accumulates db itself. */
    bool bias_by_caller;
} aflo_linear;

/* Up to this rank s_b is folded into B (diag(s_b)·B, out x r) instead of
 * scaling an N x out product: for AFLoRA's r = 4 that removes an N x out
 * tensor per adapted layer and two passes over it (measured on BERT-base:
 * the adapter path fell from about 2.5 s to 0.5 s a step on 2 threads). For
 * ELoRA's r = 1024 the out x r products would cost more than they save. */
#define SB_FOLD_MAX_RANK 32

/* Activations an adapted linear keeps for backward: h1 = X A^T (N x r) and,
 * with s_b above SB_FOLD_MAX_RANK, h3 = (s_d ⊙ h1) B^T (N x out). */
typedef struct {
    float *h1, *h3;
} aflo_linear_acts;

/* Working space: r2 holds 2*N*rank floats, out N*max(in, out), or2
 * 2*out*rank. With rank <= SB_FOLD_MAX_RANK `out` doubles as the merged
 * weight W_eff (out x in) where that is cheaper (see linear.c). */
typedef struct {
    float *r2, *out, *or2;
    /* The caller allows the merged weight in forward (model_set_training:
     * a training forward); false keeps each row's bits independent of N. */
    bool merge_ok;
    /* Room for the widened W when it is kept 16-bit (param_f32): the
     * model's widening buffer; unused otherwise. */
    float *wide;
} aflo_linear_scratch;

static inline bool linear_adapted(const aflo_linear *l) { return l->A != NULL; }
static inline bool linear_folds_sb(const aflo_linear *l) {
    return l->sb != NULL && l->rank <= SB_FOLD_MAX_RANK;
}

/* Y (N x out) = layer(X (N x in)). */
void linear_forward(const aflo_linear *l, float *Y, const float *X, int N, aflo_linear_acts acts,
                    aflo_linear_scratch scratch, aflo_flops *f);

/* Given dY, accumulate parameter gradients of trainable tensors and, when dX
 * is non-NULL, write (accumulate_dx false) or add (true) the input gradient.
 * dY is not modified. */
void linear_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                     const float *X, int N, aflo_linear_acts acts, aflo_linear_scratch scratch,
                     aflo_flops *f);

/* Whether the low-rank update is merged into the weight (W_eff) for the
 * output / the input gradient: AUTO follows the cost rule in linear.c; the
 * others force a path, for tests and bench/linear.c. Process-wide. */
typedef enum { LINEAR_MERGE_AUTO, LINEAR_MERGE_NEVER, LINEAR_MERGE_ALWAYS } linear_merge_policy;
void linear_set_merge_policy(linear_merge_policy p);

#endif
