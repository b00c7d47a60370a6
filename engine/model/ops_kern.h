/* ops_kern.h — the elementwise kernels ops_kern.c builds once per ISA level
 * (base/isa.h); private to ops.c, which splits the work among threads and
 * dispatches. Flat kernels take pointers already offset to their range;
 * row kernels handle rows [n0, n1) and column kernels columns [c0, c1) of an
 * N x C tensor, given pointers to the whole tensors. */
#ifndef AFLO_OPS_KERN_H
#define AFLO_OPS_KERN_H

#include <stddef.h>
#include <stdint.h>

#include "base/isa.h"

/* ops.h's dropout mask in integers: element i is kept when
 * (rng_hash(seed, base + i) >> 40) >= thr, thr = ceil(p * 2^24), the same
 * test as u(i) >= p. */
typedef struct {
    int32_t thr;   /* kept when the top 24 hash bits are >= thr */
    float scale;   /* 1/(1-p), 0 when p >= 1 */
    uint64_t seed; /* the hash key */
    uint64_t base; /* stream << 32 */
} ops_drop;

typedef struct {
    /* out[i] = gelu(x[i]), i < n; out may alias x. */
    void (*gelu_fwd)(float *out, const float *x, size_t n);
    /* dx[i] = dout[i] * gelu'(x[i]); dx may alias dout. */
    void (*gelu_bwd)(float *dx, const float *x, const float *dout, size_t n);
    /* out[n,c] = gelu(x[n,c] + b[c]) for rows [n0, n1); out may alias x. */
    void (*bias_gelu_fwd)(float *out, const float *x, const float *b, int n0, int n1, int C);
    /* dx[n,c] = dout[n,c] * gelu'(x[n,c] + b[c]) for rows [n0, n1) and
     * columns [c0, c1); db[c] += dx[n,c] in row order when db is non-NULL.
     * dx may alias dout. */
    void (*bias_gelu_bwd)(float *dx, float *db, const float *x, const float *b, const float *dout,
                          int n0, int n1, int c0, int c1, int C);
    /* y[n,c] += b[c] for rows [n0, n1). */
    void (*bias_fwd)(float *y, const float *b, int n0, int n1, int C);
    /* db[c] += dy[n,c] over all N rows in order, columns [c0, c1). */
    void (*bias_bwd)(float *db, const float *dy, int N, int C, int c0, int c1);
    /* y[i] = keep(first + i) ? x[i] * scale : 0, i < n; y may alias x. */
    void (*dropout)(float *y, const float *x, size_t n, uint64_t first, const ops_drop *d);
} ops_kernels;

extern const ops_kernels ops_kernels_base, ops_kernels_avx2, ops_kernels_avx512;

#endif
