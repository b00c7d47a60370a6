/* resnorm_kern.h — the row kernels resnorm_kern.c builds once per ISA level
 * (base/isa.h); private to resnorm.c, which splits rows among threads and
 * dispatches. Each kernel handles rows [n0, n1) of an N x C tensor; all
 * pointers are to the whole tensors. */
#ifndef AFLO_RESNORM_KERN_H
#define AFLO_RESNORM_KERN_H

#include <stdint.h>

#include "base/isa.h"

/* One dropout mask (ops.h's): element i is kept when
 * (hash(seed, base + i) >> 40) >= thr, thr = ceil(p * 2^24) — the same test
 * as u(i) >= p with u(i) = (hash >> 40) * 2^-24, in integers. */
typedef struct {
    int on;        /* 0: no dropout */
    int64_t thr;   /* kept when the top 24 hash bits are >= thr */
    float scale;   /* 1/(1-p), 0 when p >= 1 */
    uint64_t seed; /* the hash key */
    uint64_t base; /* stream << 32 */
} resnorm_drop;

/* Row-sum lanes: fixed, so sums are the same at every level. */
#define RESNORM_LANES 16

typedef struct {
    void (*res_ln_fwd)(float *out, float *res, float *mean, float *rstd, const float *x,
                       const float *y, const float *gamma, const float *beta, int n0, int n1, int C,
                       float eps, const resnorm_drop *d);
    /* dg/db: this block's partial sums (C each, zeroed by the caller), or
     * NULL. dres, dy may be NULL. */
    void (*ln_bwd)(float *dres, float *dy, float *dg, float *db, const float *dout,
                   const float *res, const float *mean, const float *rstd, const float *gamma,
                   int n0, int n1, int C, const resnorm_drop *d);
    void (*emb_ln_fwd)(float *out, float *sum, float *mean, float *rstd, const float *word,
                       const int32_t *ids, const float *pos, const int32_t *pos_ids,
                       const float *type, const int32_t *type_ids, const float *gamma,
                       const float *beta, int n0, int n1, int C, float eps, const resnorm_drop *d);
} resnorm_kernels;

extern const resnorm_kernels resnorm_kernels_base, resnorm_kernels_avx2, resnorm_kernels_avx512;

#endif
