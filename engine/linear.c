/* linear.c — base linear layer plus low-rank adapter (see linear.h).
 *
 * Backward of the adapter path, with dY the output gradient:
 *   g3  = dY ⊙ s_b                      (or dY for LoRA)
 *   ds_b += colsum(dY ⊙ h3)
 *   dB  += scale * g3^T h2,  h2 = s_d ⊙ h1   (weight GEMM, skipped when B is frozen)
 *   g2  = scale * g3 B
 *   ds_d += colsum(g2 ⊙ h1),  g1 = g2 ⊙ s_d
 *   dA  += g1^T X                        (weight GEMM, skipped when A is frozen)
 *   dX  += g1 A
 * h2 is recomputed from h1 rather than stored: N*r multiplications instead of
 * N*r floats per layer kept alive. */
#include "linear.h"

#include "ops.h"

static inline float *grad_if_trainable(const aflo_param *p) {
    return p && p->trainable ? p->grad : NULL;
}

/* Y[n,c] += h3[n,c] * s[c] */
static void add_scaled_cols(float *restrict Y, const float *restrict h3, const float *restrict s,
                            int N, int C) {
    #pragma omp parallel for schedule(static) if ((size_t)N * C >= 32768)
    for (int n = 0; n < N; n++) {
        float *y = Y + (size_t)n * C;
        const float *h = h3 + (size_t)n * C;
        for (int c = 0; c < C; c++) y[c] += h[c] * s[c];
    }
}

void linear_forward(const aflo_linear *l, float *Y, const float *X, int N,
                    aflo_linear_acts acts, float *scratch_r, aflo_flops *f) {
    gemm(f, FLOP_FORWARD, false, true, N, l->out, l->in, 1.0f, X, l->in, l->W->data, l->in,
         0.0f, Y, l->out);
    bias_forward(Y, l->b->data, N, l->out);
    if (!linear_adapted(l)) return;

    int r = l->rank;
    gemm(f, FLOP_FORWARD, false, true, N, r, l->in, 1.0f, X, l->in, l->A->data, l->in, 0.0f,
         acts.h1, r);
    if (!l->sb) { /* LoRA: Y += scale * h1 B^T straight into Y */
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, acts.h1, r, l->B->data, r,
             1.0f, Y, l->out);
        return;
    }
    float *h2 = scratch_r;
    scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
    gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, l->B->data, r, 0.0f,
         acts.h3, l->out);
    add_scaled_cols(Y, acts.h3, l->sb->data, N, l->out);
}

void linear_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                     const float *X, int N, aflo_linear_acts acts,
                     float *scratch_out, float *scratch_r, aflo_flops *f) {
    float *dW = grad_if_trainable(l->W);
    if (dW)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, l->in, N, 1.0f, dY, l->out, X, l->in,
             1.0f, dW, l->in);
    float *db = grad_if_trainable(l->b);
    if (db) bias_backward(db, dY, N, l->out);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, l->out, 1.0f, dY, l->out,
             l->W->data, l->in, accumulate_dx ? 1.0f : 0.0f, dX, l->in);
    if (!linear_adapted(l)) return;

    int r = l->rank;
    float *dA = grad_if_trainable(l->A), *dB = grad_if_trainable(l->B);
    float *dsd = grad_if_trainable(l->sd), *dsb = grad_if_trainable(l->sb);
    float *h2 = scratch_r, *g = scratch_r + (size_t)N * r;

    /* g3: the gradient reaching B's output. */
    const float *g3 = dY;
    if (l->sb) {
        scale_cols_backward(scratch_out, dsb, dY, acts.h3, l->sb->data, N, l->out);
        g3 = scratch_out;
    }
    if (dB) {
        if (l->sd) scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        const float *h2in = l->sd ? h2 : acts.h1;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, l->scale, g3, l->out, h2in, r,
             1.0f, dB, r);
    }
    /* Below B something still needs a gradient: s_d, A, or the input. */
    if (!dsd && !dA && !dX) return;
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, g3, l->out, l->B->data, r,
         0.0f, g, r);
    if (l->sd) scale_cols_backward(g, dsd, g, acts.h1, l->sd->data, N, r);
    if (dA)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, r, l->in, N, 1.0f, g, r, X, l->in, 1.0f, dA,
             l->in);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, r, 1.0f, g, r, l->A->data, l->in,
             1.0f, dX, l->in);
}
