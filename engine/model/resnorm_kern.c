/* resnorm_kern.c — row kernels of the fused residual / dropout / LayerNorm
 * passes (resnorm.h), compiled once per ISA level (base/isa.h; table in
 * resnorm_kern.h).
 *
 * A row (C floats, a few KiB) is read from memory once and then stays in L1
 * while its short loops run: the residual sum, the mean, the variance, the
 * output. The dropout mask is ops.c's counter hash (base/rng.h's rng_hash,
 * restated here so it inlines and vectorises; tests/test_resnorm.c checks
 * they agree), compared in integers.
 *
 * Row sums run in RESNORM_LANES fixed lanes added in a fixed tree, so they
 * vectorise yet give the same value at every level; no a*b+c is contracted
 * to an FMA (gcc's ISO C mode; a pragma for clang). */
#include "model/resnorm_kern.h"

#include "base/rng.h"

#include <math.h>
#include <string.h>

#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

/* Columns whose mask bits are made at once: the hash loop (64-bit integer
 * multiplies) vectorises apart from the float loop that applies it. */
#define DROP_CHUNK 256

/* u[c] = the top 24 hash bits of tensor elements first .. first+len-1. */
static inline void drop_bits(int32_t *restrict u, const resnorm_drop *d, uint64_t first, int len) {
    const uint64_t key = d->seed, base = d->base + first;
    /* No simd pragma: the cost model keeps this scalar where 64-bit
     * multiplies must be emulated with SSE (base), vectorises it above. */
    for (int c = 0; c < len; c++) u[c] = (int32_t)(rng_hash(key, base + (uint64_t)c) >> 40);
}

/* o[c] = a[c] + dropout(v[c]) (a NULL: o = dropout(v)) for columns
 * [0, len) of a row whose first element has tensor index first. o may be v. */
static inline void drop_add(float *o, const float *restrict a, const float *v,
                            const resnorm_drop *d, uint64_t first, int len) {
    const int32_t thr = (int32_t)d->thr;
    const float scale = d->scale;
    for (int c0 = 0; c0 < len; c0 += DROP_CHUNK) {
        int32_t u[DROP_CHUNK];
        const int n = len - c0 < DROP_CHUNK ? len - c0 : DROP_CHUNK;
        drop_bits(u, d, first + (uint64_t)c0, n);
        float *oc = o + c0;
        const float *vc = v + c0;
        if (a) {
            const float *restrict ac = a + c0;
#pragma omp simd
            for (int c = 0; c < n; c++) oc[c] = ac[c] + (u[c] >= thr ? vc[c] * scale : 0.0f);
        } else {
#pragma omp simd
            for (int c = 0; c < n; c++) oc[c] = u[c] >= thr ? vc[c] * scale : 0.0f;
        }
    }
}

/* Fixed-lane sums: lane j adds elements j, j+LANES, ... then a fixed tree. */
static inline float lanes_total(float *acc) {
    for (int w = RESNORM_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static inline float row_sum(const float *restrict r, int C) {
    float acc[RESNORM_LANES] = {0};
    int c = 0;
    for (; c + RESNORM_LANES <= C; c += RESNORM_LANES) {
#pragma omp simd
        for (int j = 0; j < RESNORM_LANES; j++) acc[j] += r[c + j];
    }
    for (int j = 0; c + j < C; j++) acc[j] += r[c + j];
    return lanes_total(acc);
}

static inline float row_sq_dev(const float *restrict r, float m, int C) {
    float acc[RESNORM_LANES] = {0};
    int c = 0;
    for (; c + RESNORM_LANES <= C; c += RESNORM_LANES) {
#pragma omp simd
        for (int j = 0; j < RESNORM_LANES; j++) {
            float d = r[c + j] - m;
            acc[j] += d * d;
        }
    }
    for (int j = 0; c + j < C; j++) {
        float d = r[c + j] - m;
        acc[j] += d * d;
    }
    return lanes_total(acc);
}

/* LayerNorm of one row r (already in L1) into o; returns mean and rstd. */
static inline void ln_row(float *restrict o, float *mean, float *rstd, const float *restrict r,
                          const float *restrict gamma, const float *restrict beta, int C,
                          float eps) {
    float m = row_sum(r, C) / (float)C;
    float s = 1.0f / sqrtf(row_sq_dev(r, m, C) / (float)C + eps);
#pragma omp simd
    for (int c = 0; c < C; c++) o[c] = (r[c] - m) * s * gamma[c] + beta[c];
    *mean = m;
    *rstd = s;
}

static void res_ln_fwd(float *restrict out, float *restrict res, float *restrict mean,
                       float *restrict rstd, const float *restrict x, const float *restrict y,
                       const float *restrict gamma, const float *restrict beta, int n0, int n1,
                       int C, float eps, const resnorm_drop *dp) {
    const resnorm_drop d = *dp;
    for (int n = n0; n < n1; n++) {
        const size_t off = (size_t)n * C;
        const float *restrict xr = x + off, *restrict yr = y + off;
        float *restrict rr = res + off;
        if (d.on) {
            drop_add(rr, xr, yr, &d, off, C);
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) rr[c] = xr[c] + yr[c];
        }
        ln_row(out + off, &mean[n], &rstd[n], rr, gamma, beta, C, eps);
    }
}

/* dres may alias dout, so neither is restrict. */
static void ln_bwd(float *dres, float *restrict dy, float *restrict dg, float *restrict db,
                   const float *dout, const float *restrict res, const float *restrict mean,
                   const float *restrict rstd, const float *restrict gamma, int n0, int n1, int C,
                   const resnorm_drop *dp) {
    const resnorm_drop d = *dp;
    for (int n = n0; n < n1; n++) {
        const size_t off = (size_t)n * C;
        const float *dr = dout + off, *restrict xr = res + off;
        const float m = mean[n], s = rstd[n];
        /* Reductions first: dres may alias dout. */
        if (dg) {
#pragma omp simd
            for (int c = 0; c < C; c++) dg[c] += dr[c] * ((xr[c] - m) * s);
        }
        if (db) {
#pragma omp simd
            for (int c = 0; c < C; c++) db[c] += dr[c];
        }
        float ag[RESNORM_LANES] = {0}, agx[RESNORM_LANES] = {0};
        int c = 0;
        for (; c + RESNORM_LANES <= C; c += RESNORM_LANES) {
#pragma omp simd
            for (int j = 0; j < RESNORM_LANES; j++) {
                float g = dr[c + j] * gamma[c + j];
                ag[j] += g;
                agx[j] += g * ((xr[c + j] - m) * s);
            }
        }
        for (int j = 0; c + j < C; j++) {
            float g = dr[c + j] * gamma[c + j];
            ag[j] += g;
            agx[j] += g * ((xr[c + j] - m) * s);
        }
        const float mean_g = lanes_total(ag) / (float)C;
        const float mean_gx = lanes_total(agx) / (float)C;
        /* dres = rstd * (g - mean(g) - xhat * mean(g * xhat)) */
        if (!dres && !dy) continue; /* parameter gradients only */
        float *o1 = dres ? dres + off : dy + off;
#pragma omp simd
        for (int k = 0; k < C; k++)
            o1[k] = s * (dr[k] * gamma[k] - mean_g - ((xr[k] - m) * s) * mean_gx);
        if (!dres || !dy) {
            if (dy && d.on) drop_add(o1, NULL, o1, &d, off, C); /* dy alone: in place */
            continue;
        }
        if (d.on)
            drop_add(dy + off, NULL, o1, &d, off, C);
        else
            memcpy(dy + off, o1, (size_t)C * sizeof *dy);
    }
}

static void emb_ln_fwd(float *restrict out, float *restrict sum, float *restrict mean,
                       float *restrict rstd, const float *restrict word,
                       const int32_t *restrict ids, const float *restrict pos,
                       const int32_t *restrict pos_ids, const float *restrict type,
                       const int32_t *restrict type_ids, const float *restrict gamma,
                       const float *restrict beta, int n0, int n1, int C, float eps,
                       const resnorm_drop *dp) {
    const resnorm_drop d = *dp;
    for (int n = n0; n < n1; n++) {
        const size_t off = (size_t)n * C;
        const float *restrict w = word + (size_t)ids[n] * C;
        const float *restrict p = pos + (size_t)pos_ids[n] * C;
        const float *restrict t = type + (size_t)type_ids[n] * C;
        float *restrict sr = sum + off, *restrict o = out + off;
#pragma omp simd
        for (int c = 0; c < C; c++) sr[c] = (w[c] + p[c]) + t[c];
        ln_row(o, &mean[n], &rstd[n], sr, gamma, beta, C, eps);
        if (d.on) drop_add(o, NULL, o, &d, off, C);
    }
}

const resnorm_kernels ISA_TABLE(resnorm_kernels) = {
    .res_ln_fwd = res_ln_fwd,
    .ln_bwd = ln_bwd,
    .emb_ln_fwd = emb_ln_fwd,
};
