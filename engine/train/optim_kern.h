/* optim_kern.h — the table of the training-side vector kernels that
 * optim_kern.c builds once per ISA level (see base/isa.h); private to
 * optim.c and freeze.c, which dispatch through optim_kern().
 *
 * Every kernel works on a contiguous range and is elementwise or a fixed-lane
 * reduction, so its result does not depend on how callers split the work
 * among threads. No kernel contracts a*b+c into an FMA (gcc's ISO C mode and
 * a pragma for clang), and vector sqrt/div round like scalar ones, so each
 * gives the same bits at every level: AdamW and the freezing score are
 * bit-identical to the scalar code they replaced. */
#ifndef AFLO_OPTIM_KERN_H
#define AFLO_OPTIM_KERN_H

#include <stddef.h>

#include "base/isa.h"

/* Float constants of one AdamW update, rounded once by the caller. */
typedef struct {
    float decay;      /* 1 - lr*wd */
    float b1, one_b1; /* beta1, 1 - beta1 */
    float b2, one_b2; /* beta2, 1 - beta2 */
    float step_size;  /* lr / (1 - beta1^t) */
    float bias2_sqrt; /* sqrt(1 - beta2^t) */
    float eps;
} adamw_consts;

/* Lanes of sumsq's double accumulator: fixed, whatever the vector width. */
#define OPTIM_SUMSQ_LANES 8

typedef struct {
    /* p = p*decay - step_size*m/(sqrt(v)/bias2_sqrt + eps) after the moment
     * updates, in torch's order (optim.c). */
    void (*adamw)(float *param, const float *grad, float *m, float *v, size_t n,
                  const adamw_consts *k);
    /* sum of g[i]^2 in double: lane j sums i = j mod OPTIM_SUMSQ_LANES in
     * order, the lanes then add in a fixed tree. Each square is exact in
     * double, so the value is the same at every level. */
    double (*sumsq)(const float *g, size_t n);
    void (*scale)(float *g, size_t n, float c); /* g *= c */
    /* Freezing score at a window boundary (freeze.c): per element, with
     * w = iwin*inv_count, ibar = b1*ibar + (1-b1)*w, then
     * ubar = b2*ubar + (1-b2)*|w - ibar| (all in double), iwin = |g|. */
    void (*score_boundary)(float *ibar, float *ubar, float *iwin, const float *g, size_t n,
                           double b1, double b2, double inv_count);
    void (*score_accumulate)(float *iwin, const float *g, size_t n); /* iwin += |g| */
} optim_kernels;

extern const optim_kernels optim_kernels_base, optim_kernels_avx2, optim_kernels_avx512;

/* The table of the level the engine runs at (isa_level()). */
const optim_kernels *optim_kern(void);

#endif
