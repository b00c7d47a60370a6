/* linear.c — base linear layer plus low-rank adapter (see linear.h).
 *
 * Backward of the adapter path, with dY the output gradient:
 *   g3  = dY ⊙ s_b                      (or dY for LoRA)
 *   ds_b += colsum(dY ⊙ h3)
 *   dB  += scale * g3^T h2,  h2 = s_d ⊙ h1   (weight product, skipped when B is frozen)
 *   g2  = scale * g3 B
 *   ds_d += colsum(g2 ⊙ h1),  g1 = g2 ⊙ s_d
 *   dA  += g1^T X                        (weight product, skipped when A is frozen)
 *   dX  += g1 A
 * h2 is recomputed from h1 rather than stored: N*r multiplications instead of
 * N*r floats per layer kept alive.
 *
 * Rank <= SB_FOLD_MAX_RANK (AFLoRA r = 4, LoRA r = 8): s_b is folded into B
 * (Bs = scale·diag(s_b)·B) and every product with a dimension r runs in the
 * skinny kernels (skinny.h), which stream the big operand once:
 *   forward   h1 = X A^T, h2 = s_d ⊙ h1          one pass over X (rows_dot)
 *             Y  = Y + b + h2 Bs^T               one pass over Y, bias included (rows_axpy)
 *   backward  Gt = h2^T dY (r x out), db         one pass over dY (cols_gram):
 *             dB += diag(s_b) G,  ds_b += rowsum(B ⊙ G)
 *             g2 = dY Bs                         one pass over dY (rows_dot)
 *             dA += g1^T X                       one pass over X (cols_gram)
 *             dX += g1 A                         one pass over dX (rows_axpy)
 * Row kernels give each row to one thread, column kernels each column, and
 * a column's sum runs over the rows in order: results do not depend on the
 * thread count.
 *
 * Merged weight: the output and the input gradient can instead use
 *   W_eff = W + scale·diag(s_b)·B·diag(s_d)·A     (2·out·in·r FLOPs)
 * in one GEMM each (Y = X W_eff^T, dX = dY W_eff), written into scratch.out.
 * Building it is a pass over out x in floats; it removes a pass over the
 * N x out output (forward) or the N x in input gradient (backward). The
 * forward pass also adds the bias, which the merged path would need on its
 * own, so the merged forward pays only when the caller owns the bias; the
 * rule is in merge_forward / merge_dx. h1 = X A^T is computed either way
 * (the adapter's gradients need it).
 *
 * Rank above that (ELoRA r = 1024, s_b not folded): the products are big
 * enough for BLAS; the s_b scaling is fused with the bias (forward) and
 * with ds_b and db into one column pass (backward). */
#include "model/linear.h"

#include <assert.h>
#include <stdatomic.h>
#include <string.h>

#include "base/isa.h"
#include "model/ops.h"
#include "model/skinny.h"

_Static_assert(SB_FOLD_MAX_RANK <= SKINNY_MAX_RANK, "folded ranks must fit the skinny kernels");

static const skinny_kernels *const variants[ISA_COUNT] = {
    &skinny_kernels_base, &skinny_kernels_avx2, &skinny_kernels_avx512};

static atomic_int merge_policy = LINEAR_MERGE_AUTO;

void linear_set_merge_policy(linear_merge_policy p) { atomic_store(&merge_policy, (int)p); }

/* Below this many multiply-adds a skinny product runs on the calling
 * thread: fork/join costs a few microseconds (as OPS_PARALLEL_MIN_ELEMS). */
#define SKINNY_PARALLEL_MIN 32768
/* Column chunks of the threads start at multiples of this (a cache line of
 * floats twice over), so no two threads write the same line. */
#define COL_ALIGN 32

static int team(size_t work) { return work >= SKINNY_PARALLEL_MIN ? engine_threads() : 1; }

static void count(aflo_flops *f, aflo_flop_kind kind, size_t M, size_t N, size_t K) {
    if (f) f->by_kind[kind] += 2 * M * N * K;
}

/* The layer's tensors have the shapes its in/out/rank promise (gemm trusts
 * them as strides). */
static void assert_shapes(const aflo_linear *l) {
    assert(l->W->shape[0] == l->out && l->W->shape[1] == l->in);
    assert(!l->b || l->b->size == (size_t)l->out);
    if (!linear_adapted(l)) return;
    assert(l->A->shape[0] == l->rank && l->A->shape[1] == l->in);
    assert(l->B->shape[0] == l->out && l->B->shape[1] == l->rank);
    assert(!l->sd || l->sd->size == (size_t)l->rank);
    assert(!l->sb || l->sb->size == (size_t)l->out);
}

static inline float *grad_if_trainable(const aflo_param *p) {
    return p && p->trainable ? p->grad : NULL;
}

/* The base weight as floats: widened whole when it is kept 16-bit (a whole
 * matrix to BLAS gives the bits of the float32-loaded model; widening
 * tile by tile changed OpenBLAS's last bits). */
static inline const float *weight(const aflo_linear *l, aflo_linear_scratch scratch) {
    return param_f32(l->W, scratch.wide);
}

static inline bool skinny_rank(const aflo_linear *l) { return l->rank <= SB_FOLD_MAX_RANK; }

/* ------------------------------------------------- skinny products, threaded */

/* H = X A^T (N x r), H2 = H ⊙ s when H2; A is r x K. */
static void skinny_xat(aflo_flops *f, aflo_flop_kind kind, float *H, float *H2, const float *s,
                       const float *X, int ldx, const float *A, int K, int r, int N) {
    const skinny_kernels *k = variants[isa_level()];
    int T = team((size_t)N * K * r);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->rows_dot(H, H2, s, X, ldx, A, K, r, (int)((long)N * t / T),
                    (int)((long)N * (t + 1) / T));
    count(f, kind, (size_t)N, (size_t)r, (size_t)K);
}

/* Y = Yin + bias + H BT over `rows` rows of C columns; BT is r x C. */
static void skinny_axpy(aflo_flops *f, aflo_flop_kind kind, float *Y, int ldy, const float *Yin,
                        int ldin, const float *bias, const float *H, int ldh, const float *BT,
                        int C, int r, int rows) {
    const skinny_kernels *k = variants[isa_level()];
    int T = team((size_t)rows * C * (r + 1));
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->rows_axpy(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, r, (int)((long)rows * t / T),
                     (int)((long)rows * (t + 1) / T));
    count(f, kind, (size_t)rows, (size_t)C, (size_t)r);
}

static inline int col_split(int C, int t, int T) {
    return t == T ? C : (int)((long)C * t / T) / COL_ALIGN * COL_ALIGN;
}

/* G += H^T Y (r x C, row stride ldg) and colsum += column sums of Y (N x C). */
static void skinny_gram(aflo_flops *f, aflo_flop_kind kind, float *G, int ldg, float *colsum,
                        const float *Y, int C, const float *H, int r, int N) {
    const skinny_kernels *k = variants[isa_level()];
    int T = team((size_t)N * C * (r + 1));
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->cols_gram(G, ldg, colsum, Y, C, H, r, r, N, col_split(C, t, T), col_split(C, t + 1, T));
    count(f, kind, (size_t)r, (size_t)C, (size_t)N);
}

/* db[c] += sum_n dY[n,c], in row order, columns across threads. */
static void colsum(float *db, const float *dY, int N, int C) {
    skinny_gram(NULL, FLOP_BACKWARD_WEIGHT, NULL, 0, db, dY, C, NULL, 0, N);
}

/* BT[j,c] = scale * s_b[c] * B[c,j] (r x out): the folded B, transposed so
 * the kernels read it along c. */
static void fill_bt(float *restrict BT, const aflo_linear *l) {
    int r = l->rank, out = l->out;
    const float *B = l->B->data, *sb = l->sb ? l->sb->data : NULL;
    for (int c = 0; c < out; c++) {
        float s = l->scale * (sb ? sb[c] : 1.0f);
        for (int j = 0; j < r; j++) BT[(size_t)j * out + c] = s * B[(size_t)c * r + j];
    }
}

/* Bsd[c,j] = scale * s_b[c] * B[c,j] * s_d[j] (out x r): ΔW = Bsd A. */
static void fill_bsd(float *restrict Bsd, const aflo_linear *l) {
    int r = l->rank;
    const float *B = l->B->data, *sb = l->sb ? l->sb->data : NULL;
    const float *sd = l->sd ? l->sd->data : NULL;
    for (int c = 0; c < l->out; c++) {
        float s = l->scale * (sb ? sb[c] : 1.0f);
        for (int j = 0; j < r; j++)
            Bsd[(size_t)c * r + j] = s * B[(size_t)c * r + j] * (sd ? sd[j] : 1.0f);
    }
}

/* W_eff = W + Bsd A into scratch.out (out x in); Bsd goes to scratch.or2. */
static const float *merged_weight(const aflo_linear *l, aflo_linear_scratch scratch, aflo_flops *f,
                                  aflo_flop_kind kind) {
    fill_bsd(scratch.or2, l);
    skinny_axpy(f, kind, scratch.out, l->in, weight(l, scratch), l->in, NULL, scratch.or2, l->rank,
                l->A->data, l->in, l->rank, l->out);
    return scratch.out;
}

/* scratch.out holds N*max(in, out) floats: W_eff fits when that covers out*in. */
static bool weff_fits(const aflo_linear *l, int N) {
    size_t m = (size_t)(l->in > l->out ? l->in : l->out);
    return (size_t)N * m >= (size_t)l->in * l->out;
}

/* Merge for the output when building W_eff (a pass over out x in) is
 * cheaper than the adapter's pass over Y (N x out): that pass also adds
 * the bias, which the merged path does separately — so only when the
 * caller owns the bias and N > in. Measured in bench/linear.c. */
static bool merge_forward(const aflo_linear *l, int N, bool merge_ok) {
    switch (atomic_load(&merge_policy)) {
    case LINEAR_MERGE_NEVER: return false;
    case LINEAR_MERGE_ALWAYS: return weff_fits(l, N);
    default: return merge_ok && l->bias_by_caller && N > l->in && weff_fits(l, N);
    }
}

/* Merge for the input gradient when the pass over out x in is shorter
 * than the adapter's pass over dX (N x in): N > out. */
static bool merge_dx(const aflo_linear *l, int N) {
    switch (atomic_load(&merge_policy)) {
    case LINEAR_MERGE_NEVER: return false;
    case LINEAR_MERGE_ALWAYS: return weff_fits(l, N);
    default: return N > l->out && weff_fits(l, N);
    }
}

/* Y[n,c] += bias[c] + h3[n,c] * s[c] (bias may be NULL): ELoRA's unfolded s_b. */
static void add_scaled_cols(float *restrict Y, const float *restrict h3, const float *restrict s,
                            const float *restrict bias, int N, int C) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if ((size_t)N * C >= SKINNY_PARALLEL_MIN)
    for (int n = 0; n < N; n++) {
        float *y = Y + (size_t)n * C;
        const float *h = h3 + (size_t)n * C;
        if (bias) {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] += bias[c] + h[c] * s[c];
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] += h[c] * s[c];
        }
    }
}

/* ------------------------------------------------------------------ forward */

static void skinny_forward(const aflo_linear *l, float *Y, const float *X, int N, const float *bias,
                           aflo_linear_acts acts, aflo_linear_scratch scratch, aflo_flops *f) {
    int r = l->rank, in = l->in, out = l->out;
    const float *sd = l->sd ? l->sd->data : NULL;
    if (merge_forward(l, N, scratch.merge_ok)) {
        const float *Weff = merged_weight(l, scratch, f, FLOP_FORWARD);
        gemm(f, FLOP_FORWARD, false, true, N, out, in, 1.0f, X, in, Weff, in, 0.0f, Y, out);
        if (bias) bias_forward(Y, bias, N, out);
        skinny_xat(f, FLOP_FORWARD, acts.h1, NULL, NULL, X, in, l->A->data, in, r, N);
        return;
    }
    gemm(f, FLOP_FORWARD, false, true, N, out, in, 1.0f, X, in, weight(l, scratch), in, 0.0f, Y,
         out);
    float *h2 = sd ? scratch.r2 : acts.h1;
    skinny_xat(f, FLOP_FORWARD, acts.h1, sd ? h2 : NULL, sd, X, in, l->A->data, in, r, N);
    float *BT = scratch.or2;
    fill_bt(BT, l);
    skinny_axpy(f, FLOP_FORWARD, Y, out, Y, out, bias, h2, r, BT, out, r, N);
}

void linear_forward(const aflo_linear *l, float *Y, const float *X, int N, aflo_linear_acts acts,
                    aflo_linear_scratch scratch, aflo_flops *f) {
    assert_shapes(l);
    const float *bias = l->bias_by_caller || !l->b ? NULL : l->b->data;
    if (linear_adapted(l) && skinny_rank(l)) {
        skinny_forward(l, Y, X, N, bias, acts, scratch, f);
        return;
    }
    gemm(f, FLOP_FORWARD, false, true, N, l->out, l->in, 1.0f, X, l->in, weight(l, scratch), l->in,
         0.0f, Y, l->out);
    if (!linear_adapted(l) || !l->sb) {
        if (bias) bias_forward(Y, bias, N, l->out);
        if (!linear_adapted(l)) return;
    }

    int r = l->rank;
    gemm(f, FLOP_FORWARD, false, true, N, r, l->in, 1.0f, X, l->in, l->A->data, l->in, 0.0f,
         acts.h1, r);
    if (!l->sb) { /* LoRA of a large rank: Y += scale * h1 B^T straight into Y */
        gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, acts.h1, r, l->B->data, r, 1.0f,
             Y, l->out);
        return;
    }
    float *h2 = scratch.r2;
    scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
    gemm(f, FLOP_FORWARD, false, true, N, l->out, r, l->scale, h2, r, l->B->data, r, 0.0f, acts.h3,
         l->out);
    add_scaled_cols(Y, acts.h3, l->sb->data, bias, N, l->out);
}

/* ----------------------------------------------------------------- backward */

/* Everything below the base GEMMs for rank <= SB_FOLD_MAX_RANK (see the
 * file comment); db, when non-NULL, rides along the first pass over dY. */
static void skinny_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                            const float *X, int N, float *db, aflo_linear_acts acts,
                            aflo_linear_scratch scratch, aflo_flops *f) {
    int r = l->rank, in = l->in, out = l->out;
    float *dA = grad_if_trainable(l->A), *dB = grad_if_trainable(l->B);
    float *dsd = grad_if_trainable(l->sd), *dsb = grad_if_trainable(l->sb);
    const float *sd = l->sd ? l->sd->data : NULL, *sb = l->sb ? l->sb->data : NULL;
    const float *B = l->B->data;

    bool merged = dX && merge_dx(l, N);
    if (dX) {
        const float *W =
            merged ? merged_weight(l, scratch, f, FLOP_BACKWARD_INPUT) : weight(l, scratch);
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, in, out, 1.0f, dY, out, W, in,
             accumulate_dx ? 1.0f : 0.0f, dX, in);
    }

    if (dB || dsb) {
        const float *h2 = acts.h1;
        if (sd) {
            scale_cols_forward(scratch.r2, acts.h1, sd, N, r);
            h2 = scratch.r2;
        }
        float *Gt = scratch.or2 + (size_t)out * r; /* r x out */
        memset(Gt, 0, (size_t)out * r * sizeof(float));
        skinny_gram(f, FLOP_BACKWARD_WEIGHT, Gt, out, db, dY, out, h2, r, N);
        db = NULL;
        for (int c = 0; c < out; c++) {
            float acc = 0.0f, s = l->scale * (sb ? sb[c] : 1.0f);
            for (int j = 0; j < r; j++) {
                float g = Gt[(size_t)j * out + c];
                acc += B[(size_t)c * r + j] * g;
                if (dB) dB[(size_t)c * r + j] += s * g;
            }
            if (dsb) dsb[c] += l->scale * acc;
        }
    }
    if (db) colsum(db, dY, N, out);

    /* Below B something still needs a gradient: s_d, A, or the input. */
    if (!(dsd || dA || (dX && !merged))) return;
    float *g = scratch.r2 + (size_t)N * r, *BT = scratch.or2;
    fill_bt(BT, l);
    skinny_xat(f, FLOP_BACKWARD_INPUT, g, NULL, NULL, dY, out, BT, out, r, N);
    if (sd) scale_cols_backward(g, dsd, g, acts.h1, sd, N, r);
    if (dA) skinny_gram(f, FLOP_BACKWARD_WEIGHT, dA, in, NULL, X, in, g, r, N);
    if (dX && !merged)
        skinny_axpy(f, FLOP_BACKWARD_INPUT, dX, in, dX, in, NULL, g, r, l->A->data, in, r, N);
}

/* g3 = dY ⊙ s, ds += colsum(dY ⊙ h3), db += colsum(dY): one column pass. */
static void scale_back_cols(float *g3, float *ds, float *db, const float *dY, const float *h3,
                            const float *s, int N, int C) {
    const skinny_kernels *k = variants[isa_level()];
    int T = team((size_t)N * C);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->cols_scale_backward(g3, ds, db, dY, h3, s, N, C, col_split(C, t, T),
                               col_split(C, t + 1, T));
}

/* Rank above SB_FOLD_MAX_RANK: BLAS for the products (see the file comment). */
static void wide_backward(const aflo_linear *l, float *dX, const float *dY, const float *X, int N,
                          float *db, aflo_linear_acts acts, aflo_linear_scratch scratch,
                          aflo_flops *f) {
    int r = l->rank;
    float *dA = grad_if_trainable(l->A), *dB = grad_if_trainable(l->B);
    float *dsd = grad_if_trainable(l->sd), *dsb = grad_if_trainable(l->sb);
    float *h2 = scratch.r2, *g = scratch.r2 + (size_t)N * r;

    /* g3: the gradient reaching B's output. */
    const float *g3 = dY;
    if (l->sb) {
        scale_back_cols(scratch.out, dsb, db, dY, acts.h3, l->sb->data, N, l->out);
        g3 = scratch.out;
        db = NULL;
    }
    if (db) colsum(db, dY, N, l->out);
    if (dB) {
        if (l->sd) scale_cols_forward(h2, acts.h1, l->sd->data, N, r);
        const float *h2in = l->sd ? h2 : acts.h1;
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, r, N, l->scale, g3, l->out, h2in, r,
             1.0f, dB, r);
    }
    if (!(dsd || dA || dX)) return;
    gemm(f, FLOP_BACKWARD_INPUT, false, false, N, r, l->out, l->scale, g3, l->out, l->B->data, r,
         0.0f, g, r);
    if (l->sd) scale_cols_backward(g, dsd, g, acts.h1, l->sd->data, N, r);
    if (dA)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, r, l->in, N, 1.0f, g, r, X, l->in, 1.0f, dA,
             l->in);
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, r, 1.0f, g, r, l->A->data, l->in, 1.0f,
             dX, l->in);
}

void linear_backward(const aflo_linear *l, float *dX, bool accumulate_dx, const float *dY,
                     const float *X, int N, aflo_linear_acts acts, aflo_linear_scratch scratch,
                     aflo_flops *f) {
    assert_shapes(l);
    float *dW = grad_if_trainable(l->W);
    if (dW)
        gemm(f, FLOP_BACKWARD_WEIGHT, true, false, l->out, l->in, N, 1.0f, dY, l->out, X, l->in,
             1.0f, dW, l->in);
    float *db = l->bias_by_caller ? NULL : grad_if_trainable(l->b);
    if (linear_adapted(l) && skinny_rank(l)) {
        skinny_backward(l, dX, accumulate_dx, dY, X, N, db, acts, scratch, f);
        return;
    }
    if (dX)
        gemm(f, FLOP_BACKWARD_INPUT, false, false, N, l->in, l->out, 1.0f, dY, l->out,
             weight(l, scratch), l->in, accumulate_dx ? 1.0f : 0.0f, dX, l->in);
    if (!linear_adapted(l)) {
        if (db) colsum(db, dY, N, l->out);
        return;
    }
    wide_backward(l, dX, dY, X, N, db, acts, scratch, f);
}
