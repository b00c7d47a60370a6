/* ops_kern.c — the elementwise kernels of ops.c (GELU and its backward,
 * bias + GELU fused, bias add and its column sums, dropout), compiled once per ISA level (base/isa.h; table
 * in ops_kern.h).
 *
 * Every loop is plain C under `#pragma omp simd`; the libm calls that kept
 * GELU scalar (erff, expf) are vmath.h's branch-free vm_erff and vm_expf,
 * so each level runs them at its full vector width. The pragma promises no
 * iteration reads what another writes: true because an output is either
 * exactly its input (in place) or does not overlap it.
 *
 * Reductions: bias gradients sum each column over the rows in order (the
 * caller gives each thread whole columns): the same bits for any thread count. No a*b+c is contracted to an
 * FMA (gcc's ISO C mode; a pragma for clang), so a vector lane computes the
 * same bits as the scalar remainder loop, and every level the same bits as
 * the others, except where -O3 reassociates nothing: it does not (no
 * -ffast-math). */
/* Before the includes: vmath.h's inline polynomials must not contract
 * either (clang contracts a*b+c within an expression by default). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

#include "model/ops_kern.h"

#include "base/rng.h"
#include "model/vmath.h"

/* 1/sqrt(2) and 1/sqrt(2*pi) for the exact GELU and its derivative. */
#define GELU_INV_SQRT2 0.70710678118654752440f
#define GELU_INV_SQRT_2PI 0.39894228040143267794f

/* Elements whose mask bits are made at once: the hash loop (64-bit integer
 * multiplies) vectorises apart from the float loop that applies it. */
#define DROP_CHUNK 256

/* gelu(x) = x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2)), as BERT's "gelu". */
static inline float gelu(float v) { return 0.5f * v * (1.0f + vm_erff(v * GELU_INV_SQRT2)); }

/* gelu'(x) = Phi(x) + x * phi(x), phi the normal density. */
static inline float gelu_grad(float v) {
    float cdf = 0.5f * (1.0f + vm_erff(v * GELU_INV_SQRT2));
    float pdf = GELU_INV_SQRT_2PI * vm_expf(-0.5f * v * v);
    return cdf + v * pdf;
}

static void gelu_fwd(float *out, const float *x, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) out[i] = gelu(x[i]);
}

static void gelu_bwd(float *dx, const float *restrict x, const float *dout, size_t n) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) dx[i] = dout[i] * gelu_grad(x[i]);
}

static void bias_gelu_fwd(float *out, const float *x, const float *restrict b, int n0, int n1,
                          int C) {
    for (int n = n0; n < n1; n++) {
        const size_t off = (size_t)n * C;
        const float *xr = x + off;
        float *o = out + off;
#pragma omp simd
        for (int c = 0; c < C; c++) o[c] = gelu(xr[c] + b[c]);
    }
}

static void bias_gelu_bwd(float *dx, float *restrict db, const float *restrict x,
                          const float *restrict b, const float *dout, int n0, int n1, int c0,
                          int c1, int C) {
    for (int n = n0; n < n1; n++) {
        const size_t off = (size_t)n * C;
        const float *xr = x + off, *dr = dout + off;
        float *dxr = dx + off;
        if (db) {
#pragma omp simd
            for (int c = c0; c < c1; c++) {
                float g = dr[c] * gelu_grad(xr[c] + b[c]);
                dxr[c] = g;
                db[c] += g;
            }
        } else {
#pragma omp simd
            for (int c = c0; c < c1; c++) dxr[c] = dr[c] * gelu_grad(xr[c] + b[c]);
        }
    }
}

static void bias_fwd(float *restrict y, const float *restrict b, int n0, int n1, int C) {
    for (int n = n0; n < n1; n++) {
        float *yr = y + (size_t)n * C;
#pragma omp simd
        for (int c = 0; c < C; c++) yr[c] += b[c];
    }
}

static void bias_bwd(float *restrict db, const float *restrict dy, int N, int C, int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *dr = dy + (size_t)n * C;
#pragma omp simd
        for (int c = c0; c < c1; c++) db[c] += dr[c];
    }
}

static void dropout(float *y, const float *x, size_t n, uint64_t first, const ops_drop *dp) {
    const ops_drop d = *dp;
    for (size_t i0 = 0; i0 < n; i0 += DROP_CHUNK) {
        int32_t u[DROP_CHUNK];
        const int len = n - i0 < DROP_CHUNK ? (int)(n - i0) : DROP_CHUNK;
        const uint64_t base = d.base + first + i0;
        /* No simd pragma: the cost model keeps this scalar where 64-bit
         * multiplies must be emulated with SSE (base), vectorises it above. */
        for (int j = 0; j < len; j++) u[j] = (int32_t)(rng_hash(d.seed, base + (uint64_t)j) >> 40);
        float *yc = y + i0;
        const float *xc = x + i0;
#pragma omp simd
        for (int j = 0; j < len; j++) {
            const float v = xc[j] * d.scale; /* unconditional: a select, no branch */
            yc[j] = u[j] >= d.thr ? v : 0.0f;
        }
    }
}

const ops_kernels ISA_TABLE(ops_kernels) = {
    .gelu_fwd = gelu_fwd,
    .gelu_bwd = gelu_bwd,
    .bias_gelu_fwd = bias_gelu_fwd,
    .bias_gelu_bwd = bias_gelu_bwd,
    .bias_fwd = bias_fwd,
    .bias_bwd = bias_bwd,
    .dropout = dropout,
};
