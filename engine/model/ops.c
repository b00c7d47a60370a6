/* ops.c — elementwise and row-wise kernels of the transformer (see ops.h).
 *
 * Shape of every kernel: an outer loop over rows, parallel with OpenMP when
 * the tensor is big enough to repay the fork/join (OPS_PARALLEL_MIN_ELEMS),
 * and a plain inner loop over columns. Each row
 * is computed by one thread start to finish, so a row's result does not
 * depend on the thread count. Reductions ACROSS rows (dgamma, dbeta, dbias,
 * ds, embedding gradients) run serially in row order: no atomics, no
 * per-thread partial sums, hence bit-identical results run to run.
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

#include "model/gemm.h"
#include "base/rng.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* Below this many elements a kernel runs on the calling thread: OpenMP
 * fork/join costs a few microseconds, about what 32K simple flops take. */
#define OPS_PARALLEL_MIN_ELEMS 32768

/* 2^-24: turns the top 24 bits of a hash into a uniform in [0, 1). */
#define DROPOUT_U24_SCALE (1.0f / 16777216.0f)

/* 1/sqrt(2) and 1/sqrt(2*pi) for the exact GELU and its derivative. */
#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

static inline int big_enough(size_t rows, size_t cols) {
    return rows * cols >= (size_t)OPS_PARALLEL_MIN_ELEMS;
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
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        out[i] = 0.5f * v * (1.0f + erff(v * GELU_INV_SQRT2));
    }
}

void gelu_backward(float *dx, const float *x, const float *dout, size_t n) {
/* gelu'(x) = Phi(x) + x * phi(x), Phi the normal CDF, phi its density. */
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) {
        float v = x[i];
        float cdf = 0.5f * (1.0f + erff(v * GELU_INV_SQRT2));
        float pdf = GELU_INV_SQRT_2PI * expf(-0.5f * v * v);
        dx[i] = dout[i] * (cdf + v * pdf);
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

void bias_forward(float *restrict y, const float *restrict b, int N, int C) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        float *yr = y + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] += b[c];
    }
}

void bias_backward(float *restrict db, const float *restrict dy, int N, int C) {
    for (int n = 0; n < N; n++) {
        const float *dr = dy + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) db[c] += dr[c];
    }
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

static inline int dropout_keep(uint64_t seed, uint64_t stream, size_t i, float p) {
    float u = (float)(rng_hash(seed, (stream << 32) + (uint64_t)i) >> 40) * DROPOUT_U24_SCALE;
    return u >= p;
}

/* Forward and backward are the same map: v -> keep ? v/(1-p) : 0. */
static void dropout_apply(float *y, const float *x, size_t n, float p, uint64_t seed,
                          uint64_t stream) {
    if (p <= 0.0f) {
        if (y != x) memmove(y, x, n * sizeof *y);
        return;
    }
    /* p >= 1 drops everything; handled apart so 1/(1-p) is never formed. */
    float scale = p < 1.0f ? 1.0f / (1.0f - p) : 0.0f;
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) y[i] = dropout_keep(seed, stream, i, p) ? x[i] * scale : 0.0f;
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
