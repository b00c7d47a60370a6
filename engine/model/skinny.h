/* skinny.h — the low-rank adapter's products with one small dimension r,
 * as multi-ISA kernels (skinny_kern.c, see base/isa.h).
 *
 * BLAS runs far below its rate when one GEMM dimension is 4 or 8; these
 * kernels stream the big operand once and keep the r running sums in
 * registers. Each works on a range of rows or columns so the caller
 * (linear.c) splits the work across threads; every output element is
 * computed by one thread in a fixed order, so results do not depend on the
 * thread count (they can differ between ISA levels in the last bits). */
#ifndef AFLO_SKINNY_H
#define AFLO_SKINNY_H

#include <stddef.h>

/* The largest r the kernels take (accumulators live on the stack). */
#define SKINNY_MAX_RANK 32

typedef struct {
    /* For rows n in [n0, n1): H[n*r + j] = sum_k X[n*ldx + k] * A[j*K + k]
     * (H = X A^T, A is r x K), and H2[n*r + j] = H[n*r + j] * s[j] when H2
     * is non-NULL. */
    void (*rows_dot)(float *H, float *H2, const float *s, const float *X, int ldx, const float *A,
                     int K, int r, int n0, int n1);
    /* For rows n in [n0, n1), c in [0, C):
     *   Y[n*ldy + c] = Yin[n*ldin + c] + bias[c] + sum_j H[n*ldh + j] * BT[j*C + c]
     * (Y = Yin + bias + H BT, BT is r x C); bias may be NULL; Y may be Yin. */
    void (*rows_axpy)(float *Y, int ldy, const float *Yin, int ldin, const float *bias,
                      const float *H, int ldh, const float *BT, int C, int r, int n0, int n1);
    /* For columns c in [c0, c1), summing over rows n = 0..N-1 in order:
     *   G[j*ldg + c] += sum_n H[n*ldh + j] * Y[n*ldy + c]   (G += H^T Y, r x C)
     *   colsum[c]    += sum_n Y[n*ldy + c]                  when colsum is non-NULL.
     * r may be 0 (column sums only). */
    void (*cols_gram)(float *G, int ldg, float *colsum, const float *Y, int ldy, const float *H,
                      int ldh, int r, int N, int c0, int c1);
    /* For columns c in [c0, c1) of N x C tensors (ELoRA's unfolded s_b):
     *   g[n,c] = dy[n,c] * s[c];  ds[c] += sum_n dy[n,c] * h[n,c];
     *   db[c] += sum_n dy[n,c]    (ds, db may be NULL; g may alias dy). */
    void (*cols_scale_backward)(float *g, float *ds, float *db, const float *dy, const float *h,
                                const float *s, int N, int C, int c0, int c1);
} skinny_kernels;

extern const skinny_kernels skinny_kernels_base, skinny_kernels_avx2, skinny_kernels_avx512;

#endif
