/* optim_kern.c — AdamW, the squared-gradient sum, gradient scaling and the
 * AFLoRA freezing-score update as vector kernels, compiled once per ISA level
 * (base/isa.h; table and contract in optim_kern.h).
 *
 * Plain loops the compiler vectorises: restrict pointers, no branches, no
 * libm calls (sqrtf and fabs become instructions under -fno-math-errno). */
#include "train/optim_kern.h"

#include <math.h>

/* Keep a*b+c two roundings at every level: clang contracts to FMA by
 * default; gcc does not in ISO C mode (and warns on this pragma). */
#ifdef __clang__
#pragma STDC FP_CONTRACT OFF
#endif

static void adamw(float *restrict param, const float *restrict grad, float *restrict m,
                  float *restrict v, size_t n, const adamw_consts *kp) {
    const adamw_consts k = *kp;
#pragma omp simd
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * k.decay;
        float mi = m[i] * k.b1 + g * k.one_b1;
        float vi = v[i] * k.b2 + k.one_b2 * g * g;
        m[i] = mi;
        v[i] = vi;
        float denom = sqrtf(vi) / k.bias2_sqrt + k.eps;
        param[i] = p - k.step_size * mi / denom;
    }
}

static double sumsq(const float *restrict g, size_t n) {
    double acc[OPTIM_SUMSQ_LANES] = {0};
    size_t i = 0;
    for (; i + OPTIM_SUMSQ_LANES <= n; i += OPTIM_SUMSQ_LANES)
        for (int j = 0; j < OPTIM_SUMSQ_LANES; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    for (int j = 0; i + (size_t)j < n; j++) acc[j] += (double)g[i + j] * (double)g[i + j];
    /* fixed tree: 8 -> 4 -> 2 -> 1 */
    for (int w = OPTIM_SUMSQ_LANES / 2; w > 0; w /= 2)
        for (int j = 0; j < w; j++) acc[j] += acc[j + w];
    return acc[0];
}

static void scale(float *restrict g, size_t n, float c) {
#pragma omp simd
    for (size_t i = 0; i < n; i++) g[i] *= c;
}

static void score_boundary(float *restrict ibar, float *restrict ubar, float *restrict iwin,
                           const float *restrict g, size_t n, double b1, double b2,
                           double inv_count) {
    const double one_b1 = 1.0 - b1, one_b2 = 1.0 - b2;
#pragma omp simd
    for (size_t e = 0; e < n; e++) {
        double w = (double)iwin[e] * inv_count; /* window mean of |grad| */
        double ib = b1 * (double)ibar[e] + one_b1 * w;
        ibar[e] = (float)ib;
        ubar[e] = (float)(b2 * (double)ubar[e] + one_b2 * fabs(w - ib));
        iwin[e] = fabsf(g[e]); /* the window restarts */
    }
}

static void score_accumulate(float *restrict iwin, const float *restrict g, size_t n) {
#pragma omp simd
    for (size_t e = 0; e < n; e++) iwin[e] += fabsf(g[e]);
}

const optim_kernels ISA_TABLE(optim_kernels) = {
    .adamw = adamw,
    .sumsq = sumsq,
    .scale = scale,
    .score_boundary = score_boundary,
    .score_accumulate = score_accumulate,
};
