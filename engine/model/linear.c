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
 * N*r floats per layer kept alive.
 *
 * With s_b folded into B (rank <= SB_FOLD_MAX_RANK, Bs = diag(s_b)·B):
 *   forward   Y  += scale * h2 Bs^T            (no N x out intermediate)
 *   backward  G   = dY^T h2 (out x r)          one product serves both:
 *             dB += scale * diag(s_b) G,  ds_b += scale * rowsum(B ⊙ G)
 *             g2  = scale * dY Bs */
#include "model/linear.h"

#include <assert.h>

#include "model/ops.h"

/* The layer's tensors have the shapes its in/out/rank promise (gemm trusts
 * them as strides). */
static void assert_shapes(const aflo_linear *l) {
    assert(l->W->shape[0] == l->out && l->W->shape[1] == l->in && l->b->size == (size_t)l->out);
    if (!linear_adapted(l)) return;
    assert(l->A->shape[0] == l->rank && l->A->shape[1] == l->in);
    assert(l->B->shape[0] == l->out && l->B->shape[1] == l->rank);
    assert(!l->sd || l->sd->size == (size_t)l->rank);
    assert(!l->sb || l->sb->size == (size_t)l->out);
}

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

/* out[c,:] = s[c] * B[c,:] for an out x r matrix. */
static void scale_rows(float *restrict out, const float *restrict B, const float *restrict s,
                       int rows, int r) {
    for (int c = 0; c < rows; c++)
        for (int j = 0; j < r; j++) out[(size_t)c * r + j] = s[c] * B[(size_t)c * r + j];
}

void linear_forward(const aflo_linear *l, float *Y, const float *X, int N, aflo_linear_acts acts,
                    aflo_linear_scratch scratch, aflo_flops *f) {
    assert_shapes(l);
    gemm(f, FLOP_FORWARD, false, true, N, l->out, l->in, 1.0f, X, l->in, l->W->data, l->in, 0.0f, Y,
         l->out);
    bias_forward(Y, l->b->data, N, l->out);
    if (!linear_adapted(l)) return;

    int r = l->rank;
    gemm(f, FLOP_FORWARD, false, true, N, r, l->in, 1.0f, X, l->in, l->A->data, l->in, 0.0f,
         acts.h1, r);
    if (!l->sb) { /* LoRA: Y += scale * h1 B^T straight into Y */
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, acts.h1, r, l->B->data, r, 1.0f,
             Y, l->out);
        return;
    }
    float *h2 = scratch.r2;
    scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
    if (linear_folds_sb(l)) {
        float *Bs = scratch.or2;
        scale_rows(Bs, l->B->data, l->sb->data, l->out, r);
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, Bs, r, 1.0f, Y, l->out);
        return;
    }
    gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, l->B->data, r, 0.0f, acts.h3,
         l->out);
    add_scaled_cols(Y, acts.h3, l->sb->data, N, l->out);
}

/* The folded backward down to g2 (see the file comment); leaves g2 in g. */
static void folded_sb_backward(const aflo_linear *l, const float *dY, const float *h2, int N,
                               float *dB, float *dsb, float *g, bool need_g,
                               aflo_linear_scratch scratch, aflo_flops *f) {
    int r = l->rank;
    const float *B = l->B->data, *sb = l->sb->data;
    if (dB || dsb) {
        float *G = scratch.or2 + (size_t)l->out * r;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, 1.0f, dY, l->out, h2, r, 0.0f, G,
             r);
        for (int c = 0; c < l->out; c++) {
            const float *gc = G + (size_t)c * r, *bc = B + (size_t)c * r;
            float acc = 0.0f;
            for (int j = 0; j < r; j++) acc += bc[j] * gc[j];
            if (dsb) dsb[c] += l->scale * acc;
            if (dB)
                for (int j = 0; j < r; j++) dB[(size_t)c * r + j] += l->scale * sb[c] * gc[j];
        }
    }
    if (!need_g) return;
    float *Bs = scratch.or2;
    scale_rows(Bs, B, sb, l->out, r);
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, dY, l->out, Bs, r, 0.0f, g,
         r);
}

void linear_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                     const float *X, int N, aflo_linear_acts acts, aflo_linear_scratch scratch,
                     aflo_flops *f) {
    assert_shapes(l);
    float *dW = grad_if_trainable(l->W);
    if (dW)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, l->in, N, 1.0f, dY, l->out, X, l->in,
             1.0f, dW, l->in);
    float *db = grad_if_trainable(l->b);
    if (db) bias_backward(db, dY, N, l->out);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, l->out, 1.0f, dY, l->out, l->W->data,
             l->in, accumulate_dx ? 1.0f : 0.0f, dX, l->in);
    if (!linear_adapted(l)) return;

    int r = l->rank;
    float *dA = grad_if_trainable(l->A), *dB = grad_if_trainable(l->B);
    float *dsd = grad_if_trainable(l->sd), *dsb = grad_if_trainable(l->sb);
    float *h2 = scratch.r2, *g = scratch.r2 + (size_t)N * r;
    bool need_g = dsd || dA || dX;

    if (linear_folds_sb(l)) {
        scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        folded_sb_backward(l, dY, h2, N, dB, dsb, g, need_g, scratch, f);
        if (!need_g) return;
        goto below_B;
    }

    /* g3: the gradient reaching B's output. */
    const float *g3 = dY;
    if (l->sb) {
        scale_cols_backward(scratch.out, dsb, dY, acts.h3, l->sb->data, N, l->out);
        g3 = scratch.out;
    }
    if (dB) {
        if (l->sd) scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        const float *h2in = l->sd ? h2 : acts.h1;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, l->scale, g3, l->out, h2in, r,
             1.0f, dB, r);
    }
    /* Below B something still needs a gradient: s_d, A, or the input. */
    if (!need_g) return;
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, g3, l->out, l->B->data, r,
         0.0f, g, r);
below_B:
    if (l->sd) scale_cols_backward(g, dsd, g, acts.h1, l->sd->data, N, r);
    if (dA)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, r, l->in, N, 1.0f, g, r, X, l->in, 1.0f, dA,
             l->in);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, r, 1.0f, g, r, l->A->data, l->in, 1.0f,
             dX, l->in);
}
