/* ops.c — elementwise and row-wise kernels of the transformer (see ops.h).
 *
 * The hot elementwise kernels (GELU and its backward, bias + GELU, bias add
 * and its gradient, dropout) live in ops_kern.c, compiled once per ISA
 * level; this file splits their work among the engine's threads and calls
 * the level isa_level() picked. The rest (LayerNorm, tanh, scale_cols,
 * attention's softmax, embeddings, the head's cross-entropy and MSE) stays
 * here, compiled for the baseline.
 *
 * Shape of every kernel: the work is split among threads with OpenMP when
 * the tensor is big enough to repay the fork/join (OPS_PARALLEL_MIN_ELEMS):
 * rows for row kernels, fixed blocks for flat elementwise ones. Each row or
 * block is computed by one thread start to finish, so its result does not
 * depend on the thread count. Reductions ACROSS rows (dgamma, dbeta, dbias,
 * ds, embedding gradients) sum each column over the rows in order — serially,
 * or with whole columns per thread — no atomics, no per-thread partial sums,
 * hence bit-identical results run to run and for any thread count.
 *
 * Vectorisation: gcc 12 at -O2 uses the "very cheap" cost model, which
 * vectorises no loop whose trip count is unknown, i.e. none of ours. So the
 * dependence-free column loops carry `#pragma omp simd`, which asks for it
 * explicitly. That pragma also promises the compiler that no iteration reads
 * what another writes: true because an output either is its input (exact
 * in-place) or does not overlap it. Row sums (mean, variance, dot products)
 * stay plain scalar loops: their summation order, hence their value, is fixed.
 *
 * Where a backward may write its input gradient over dout (dx aliases dout),
 * the row's reductions read dout before any dx element of that row is
 * written, and the cross-row parameter reductions run before the dx pass.
 *
 * Dropout keeps no mask. Element i of a tensor is kept when
 *     u(i) = (rng_hash(seed, (stream << 32) + i) >> 40) * 2^-24  >=  p
 * i.e. it is dropped when the 24-bit uniform u(i) < p. u(i) is exact in fp32.
 * The mask depends only on (seed, stream, i) — not on threads — so backward
 * regenerates it. Distinct tensors must use distinct streams; a tensor of
 * more than 2^32 elements would run into the next stream's counters.
 */
#include "model/ops.h"

#include "base/isa.h"
#include "base/rng.h"
#include "model/gemm.h"
#include "model/ops_kern.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* Below this many elements a kernel runs on the calling thread: OpenMP
 * fork/join costs a few microseconds, about what 32K simple flops take. */
#define OPS_PARALLEL_MIN_ELEMS 32768

/* Flat elementwise kernels run in blocks of this many elements (64 KiB of
 * floats): fixed, so an element's place in its block, hence the code that
 * computes it (vector body or remainder), does not depend on the threads. */
#define OPS_BLOCK 16384
/* Column ranges of threads start at multiples of this (two cache lines of
 * floats), so no two threads write the same line of a bias gradient. */
#define OPS_COL_ALIGN 32

static const ops_kernels *const variants[ISA_COUNT] = {&ops_kernels_base, &ops_kernels_avx2,
                                                       &ops_kernels_avx512};

static inline int big_enough(size_t rows, size_t cols) {
    return rows * cols >= (size_t)OPS_PARALLEL_MIN_ELEMS;
}

static inline size_t blocks_of(size_t n) { return (n + OPS_BLOCK - 1) / OPS_BLOCK; }

/* Threads for a kernel over `elems` elements: one below the threshold. */
static inline int team(size_t elems) { return big_enough(elems, 1) ? engine_threads() : 1; }

/* Start of thread t's columns out of T (t == T: the end). */
static inline int col_split(int C, int t, int T) {
    return t == T ? C : (int)((long)C * t / T) / OPS_COL_ALIGN * OPS_COL_ALIGN;
}

/* ---------------------------------------------------------------- layernorm */

void layernorm_forward(float *restrict out, float *restrict mean, float *restrict rstd,
                       const float *restrict x, const float *restrict gamma,
                       const float *restrict beta, int N, int C, float eps) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *outr = out + (size_t)n * C;
        /* Two passes in float (mean, then variance of x - mean), as torch
         * does on CPU; avoids the cancellation of E[x^2] - E[x]^2. */
        float sum = 0.0f;
        for (int c = 0; c < C; c++) sum += xr[c];
        float m = sum / (float)C;
        float sq = 0.0f;
        for (int c = 0; c < C; c++) {
            float d = xr[c] - m;
            sq += d * d;
        }
        float s = 1.0f / sqrtf(sq / (float)C + eps);
#pragma omp simd
        for (int c = 0; c < C; c++) outr[c] = (xr[c] - m) * s * gamma[c] + beta[c];
        mean[n] = m;
        rstd[n] = s;
    }
}

void layernorm_backward(float *dx, float *dgamma, float *dbeta, const float *dout,
                        const float *restrict x, const float *restrict mean,
                        const float *restrict rstd, const float *restrict gamma, int N, int C) {
    /* Parameter gradients first, serially in row order (determinism), and
     * before dx is written because dx may alias dout. */
    if (dgamma) {
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            const float *dr = dout + (size_t)n * C;
            float m = mean[n], s = rstd[n];
#pragma omp simd
            for (int c = 0; c < C; c++) dgamma[c] += dr[c] * ((xr[c] - m) * s);
        }
    }
    if (dbeta) {
        for (int n = 0; n < N; n++) {
            const float *dr = dout + (size_t)n * C;
#pragma omp simd
            for (int c = 0; c < C; c++) dbeta[c] += dr[c];
        }
    }

/* dx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma. */
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        const float *dr = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float m = mean[n], s = rstd[n];
        float sum_g = 0.0f, sum_gx = 0.0f;
        for (int c = 0; c < C; c++) {
            float g = dr[c] * gamma[c];
            sum_g += g;
            sum_gx += g * ((xr[c] - m) * s);
        }
        float mean_g = sum_g / (float)C;
        float mean_gx = sum_gx / (float)C;
#pragma omp simd
        for (int c = 0; c < C; c++) {
            float xhat = (xr[c] - m) * s;
            dxr[c] = s * (dr[c] * gamma[c] - mean_g - xhat * mean_gx);
        }
    }
}

/* --------------------------------------------------------------------- gelu */

void gelu_forward(float *out, const float *x, size_t n) {
    const ops_kernels *k = variants[isa_level()];
    const size_t nb = blocks_of(n);
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * OPS_BLOCK, len = n - i0 < OPS_BLOCK ? n - i0 : OPS_BLOCK;
        k->gelu_fwd(out + i0, x + i0, len);
    }
}

void gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
    const ops_kernels *k = variants[isa_level()];
    const size_t nb = blocks_of(n);
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * OPS_BLOCK, len = n - i0 < OPS_BLOCK ? n - i0 : OPS_BLOCK;
        k->gelu_bwd(dx + i0, x + i0, dout + i0, len);
    }
}

void bias_gelu_forward(float *out, const float *x, const float *b, int N, int C) {
    const ops_kernels *k = variants[isa_level()];
    const int T = team((size_t)N * C);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->bias_gelu_fwd(out, x, b, (int)((long)N * t / T), (int)((long)N * (t + 1) / T), C);
}

void bias_gelu_backward(float *dx, float *db, const float *x, const float *b, const float *dout,
                        int N, int C) {
    const ops_kernels *k = variants[isa_level()];
    const int T = team((size_t)N * C);
    /* With db: whole columns per thread, each summed over the rows in order.
     * Without: whole rows per thread. */
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++) {
        if (db)
            k->bias_gelu_bwd(dx, db, x, b, dout, 0, N, col_split(C, t, T), col_split(C, t + 1, T),
                             C);
        else
            k->bias_gelu_bwd(dx, NULL, x, b, dout, (int)((long)N * t / T),
                             (int)((long)N * (t + 1) / T), 0, C, C);
    }
}

/* --------------------------------------------------------------------- tanh */

void tanh_forward(float *out, const float *x, size_t n) {
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) out[i] = tanhf(x[i]);
}

void tanh_backward(float *dx, const float *out, const float *dout, size_t n) {
#pragma omp parallel for simd schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) dx[i] = dout[i] * (1.0f - out[i] * out[i]);
}

/* --------------------------------------------------------------------- bias */

void bias_forward(float *y, const float *b, int N, int C) {
    const ops_kernels *k = variants[isa_level()];
    const int T = team((size_t)N * C);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->bias_fwd(y, b, (int)((long)N * t / T), (int)((long)N * (t + 1) / T), C);
}

void bias_backward(float *db, const float *dy, int N, int C) {
    const ops_kernels *k = variants[isa_level()];
    const int T = team((size_t)N * C);
#pragma omp parallel for schedule(static) num_threads(T) if (T > 1)
    for (int t = 0; t < T; t++)
        k->bias_bwd(db, dy, N, C, col_split(C, t, T), col_split(C, t + 1, T));
}

/* --------------------------------------------------------------- scale_cols */

void scale_cols_forward(float *y, const float *x, const float *restrict s, int N, int C) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *yr = y + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] = xr[c] * s[c];
    }
}

void scale_cols_backward(float *dx, float *ds, const float *dy, const float *x, const float *s,
                         int N, int C) {
    /* ds before dx: dx may alias dy. */
    if (ds) {
        for (int n = 0; n < N; n++) {
            const float *dr = dy + (size_t)n * C;
            const float *xr = x + (size_t)n * C;
#pragma omp simd
            for (int c = 0; c < C; c++) ds[c] += dr[c] * xr[c];
        }
    }
    if (!dx) return;
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *dr = dy + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) dxr[c] = dr[c] * s[c];
    }
}

/* ------------------------------------------------------------------ softmax */

void softmax_forward(float *p, const float *scores, const uint8_t *key_mask, int rows, int S) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)rows, (size_t)S))
    for (int r = 0; r < rows; r++) {
        const float *sr = scores + (size_t)r * S;
        float *pr = p + (size_t)r * S;
        /* Masked scores are never read: they may hold anything. */
        float mx = -INFINITY;
        for (int j = 0; j < S; j++)
            if (!key_mask || key_mask[j]) mx = fmaxf(mx, sr[j]);
        float sum = 0.0f;
        for (int j = 0; j < S; j++) {
            float e = (!key_mask || key_mask[j]) ? expf(sr[j] - mx) : 0.0f;
            pr[j] = e;
            sum += e;
        }
        /* sum >= 1: the max key contributes exp(0). */
        float inv = 1.0f / sum;
#pragma omp simd
        for (int j = 0; j < S; j++) pr[j] *= inv;
    }
}

void softmax_backward(float *dscores, const float *p, const float *dp, int rows, int S) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)rows, (size_t)S))
    for (int r = 0; r < rows; r++) {
        const float *pr = p + (size_t)r * S;
        const float *dpr = dp + (size_t)r * S;
        float *dsr = dscores + (size_t)r * S;
        float dot = 0.0f;
        for (int j = 0; j < S; j++) dot += pr[j] * dpr[j];
#pragma omp simd
        for (int j = 0; j < S; j++) dsr[j] = pr[j] * (dpr[j] - dot);
    }
}

/* ------------------------------------------------------------------ dropout */

/* Forward and backward are the same map: v -> keep ? v/(1-p) : 0. */
static void dropout_apply(float *y, const float *x, size_t n, float p, uint64_t seed,
                          uint64_t stream) {
    if (p <= 0.0f) {
        if (y != x) memmove(y, x, n * sizeof *y);
        return;
    }
    const ops_kernels *k = variants[isa_level()];
    const ops_drop d = {.thr = (int32_t)rng_drop_threshold(p),
                        .scale = rng_drop_scale(p),
                        .seed = seed,
                        .base = stream << 32};
    const size_t nb = blocks_of(n);
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t b = 0; b < nb; b++) {
        size_t i0 = b * OPS_BLOCK, len = n - i0 < OPS_BLOCK ? n - i0 : OPS_BLOCK;
        k->dropout(y + i0, x + i0, len, i0, &d);
    }
}

void dropout_forward(float *y, const float *x, size_t n, float p, uint64_t seed, uint64_t stream) {
    dropout_apply(y, x, n, p, seed, stream);
}

void dropout_backward(float *dx, const float *dy, size_t n, float p, uint64_t seed,
                      uint64_t stream) {
    dropout_apply(dx, dy, n, p, seed, stream);
}

/* ---------------------------------------------------------------- embedding */

void embedding_forward(float *restrict out, const int32_t *restrict ids,
                       const float *restrict table, int N, int C, int accumulate) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *tr = table + (size_t)ids[n] * C;
        float *outr = out + (size_t)n * C;
        if (accumulate) {
#pragma omp simd
            for (int c = 0; c < C; c++) outr[c] += tr[c];
        } else {
            memcpy(outr, tr, (size_t)C * sizeof *outr);
        }
    }
}

void embedding_backward(float *restrict dtable, const int32_t *restrict ids,
                        const float *restrict dout, int N, int C) {
    /* Serial: two rows with the same id write the same table row. */
    for (int n = 0; n < N; n++) {
        float *tr = dtable + (size_t)ids[n] * C;
        const float *dr = dout + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) tr[c] += dr[c];
    }
}

/* ------------------------------------------------------------ cross entropy */

/* Serial over rows: B x L is a task head's output (batch x a few classes),
 * far too small to share between threads, and the loss sum then has one
 * fixed order. Labels must lie in [0, L). */
/* Serial over rows and left here, scalar: B x L is a task head's output
 * (batch x a few classes), far too small to share between threads or to
 * repay a vector kernel (bench/kernels.c measured an ops_kern.c version
 * with vm_expf at 0.6x of this one on 8 x 2: dispatch and a 2-wide loop),
 * and the loss sum then has one fixed order. Labels must lie in [0, L). */
float cross_entropy_forward(float *restrict probs, const float *restrict logits,
                            const int32_t *restrict labels, int B, int L) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *lr = logits + (size_t)b * L;
        float *pr = probs + (size_t)b * L;
        float mx = lr[0];
        for (int j = 1; j < L; j++) mx = fmaxf(mx, lr[j]);
        float sum = 0.0f;
        for (int j = 0; j < L; j++) {
            float e = expf(lr[j] - mx);
            pr[j] = e;
            sum += e;
        }
        float inv = 1.0f / sum;
        for (int j = 0; j < L; j++) pr[j] *= inv;
        /* loss = logsumexp - logit[label] = (max - logit[label]) + log(sum):
         * the large terms cancel before the small one is added. */
        assert(labels[b] >= 0 && labels[b] < L); /* label ids are mapped before training */
        total += (double)(mx - lr[labels[b]]) + (double)logf(sum);
    }
    return B > 0 ? (float)(total / B) : 0.0f;
}

void cross_entropy_backward(float *dlogits, const float *probs, const int32_t *labels, int B, int L,
                            float scale) {
    if (B <= 0) return;
    float k = scale / (float)B;
    for (int b = 0; b < B; b++) {
        const float *pr = probs + (size_t)b * L;
        float *dr = dlogits + (size_t)b * L;
#pragma omp simd
        for (int j = 0; j < L; j++) dr[j] = k * pr[j];
        assert(labels[b] >= 0 && labels[b] < L);
        dr[labels[b]] -= k;
    }
}

/* ---------------------------------------------------------------------- mse */

float mse_forward(const float *pred, const float *target, int B) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        double d = (double)pred[b] - (double)target[b];
        total += d * d;
    }
    return B > 0 ? (float)(total / B) : 0.0f;
}

void mse_backward(float *dpred, const float *pred, const float *target, int B, float scale) {
    if (B <= 0) return;
    float k = 2.0f * scale / (float)B;
#pragma omp simd
    for (int b = 0; b < B; b++) dpred[b] = k * (pred[b] - target[b]);
}
