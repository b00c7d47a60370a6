/* skinny_kern.c — low-rank adapter products (see skinny.h), compiled once
 * per ISA level.
 *
 * Each kernel has one body written for a rank R that is a compile-time
 * constant at the call: the common ranks (4 for AFLoRA, 8 for LoRA, 1, 2,
 * 16) get their own copies, in which the compiler unrolls the j loops and
 * keeps the R x lanes accumulators in vector registers; other ranks take the
 * same body with R at run time (accumulators in L1).
 *
 * Multiply-adds go through MADD: gcc in ISO C mode does not contract a*b+c
 * into an FMA by itself, and the FMA levels should use it; the base level
 * (no FMA) keeps the plain expression, never a libm fmaf call. */
#include "model/skinny.h"

#include <math.h>

#include "base/isa.h"

#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

#define INLINE static inline __attribute__((always_inline))

/* Lanes of a dot product's partial sums: one 512-bit vector, two 256-bit,
 * four 128-bit — the same 16 on every level, so only FMA rounding differs
 * between levels. */
#define DOT_LANES 16

/* Columns of a cols_gram tile: R x GRAM_TILE accumulators stay in registers
 * (32 zmm / 16 ymm / 16 xmm registers). */
#ifdef __AVX512F__
#define GRAM_TILE 32
#else
#define GRAM_TILE 16
#endif
/* Rows of Y walked per column tile before moving to the next tile: the
 * block's rows stay in L2 while every tile of them is read. */
#define GRAM_ROW_BLOCK 32

/* ------------------------------------------------------------- rows_dot */

INLINE void rows_dot_r(float *restrict H, float *restrict H2, const float *restrict s,
                       const float *restrict X, int ldx, const float *restrict A, int K,
                       const int R, int n0, int n1) {
    int Kv = K - K % DOT_LANES;
    for (int n = n0; n < n1; n++) {
        const float *restrict x = X + (size_t)n * ldx;
        float acc[SKINNY_MAX_RANK][DOT_LANES];
        for (int j = 0; j < R; j++)
            for (int i = 0; i < DOT_LANES; i++) acc[j][i] = 0.0f;
        for (int k = 0; k < Kv; k += DOT_LANES)
            for (int j = 0; j < R; j++) {
                const float *restrict a = A + (size_t)j * K + k;
#pragma omp simd
                for (int i = 0; i < DOT_LANES; i++) acc[j][i] = MADD(x[k + i], a[i], acc[j][i]);
            }
        for (int j = 0; j < R; j++) {
            /* halving tree over the lanes, then the tail */
            for (int w = DOT_LANES / 2; w > 0; w /= 2)
                for (int i = 0; i < w; i++) acc[j][i] += acc[j][i + w];
            float t = acc[j][0];
            for (int k = Kv; k < K; k++) t = MADD(x[k], A[(size_t)j * K + k], t);
            H[(size_t)n * R + j] = t;
            if (H2) H2[(size_t)n * R + j] = t * s[j];
        }
    }
}

static void rows_dot(float *H, float *H2, const float *s, const float *X, int ldx, const float *A,
                     int K, int r, int n0, int n1) {
    switch (r) {
    case 1: rows_dot_r(H, H2, s, X, ldx, A, K, 1, n0, n1); break;
    case 2: rows_dot_r(H, H2, s, X, ldx, A, K, 2, n0, n1); break;
    case 4: rows_dot_r(H, H2, s, X, ldx, A, K, 4, n0, n1); break;
    case 8: rows_dot_r(H, H2, s, X, ldx, A, K, 8, n0, n1); break;
    case 16: rows_dot_r(H, H2, s, X, ldx, A, K, 16, n0, n1); break;
    default: rows_dot_r(H, H2, s, X, ldx, A, K, r, n0, n1); break;
    }
}

/* ------------------------------------------------------------ rows_axpy */

/* Y may be Yin (exact in place: element c is read before it is written), so
 * neither is restrict; `omp simd` states the loop has no other dependence. */
INLINE void rows_axpy_r(float *Y, int ldy, const float *Yin, int ldin, const float *restrict bias,
                        const float *restrict H, int ldh, const float *restrict BT, int C,
                        const int R, int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        float h[SKINNY_MAX_RANK];
        for (int j = 0; j < R; j++) h[j] = H[(size_t)n * ldh + j];
        float *y = Y + (size_t)n * ldy;
        const float *yi = Yin + (size_t)n * ldin;
        if (bias) {
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float t = yi[c] + bias[c];
                for (int j = 0; j < R; j++) t = MADD(h[j], BT[(size_t)j * C + c], t);
                y[c] = t;
            }
        } else {
#pragma omp simd
            for (int c = 0; c < C; c++) {
                float t = yi[c];
                for (int j = 0; j < R; j++) t = MADD(h[j], BT[(size_t)j * C + c], t);
                y[c] = t;
            }
        }
    }
}

/* Any rank: the same sums in the same order (t = Yin + bias, then each
 * h_j BT_j in turn), one j at a time, so no loop nests a run-time bound
 * inside a simd loop. */
static void rows_axpy_any(float *Y, int ldy, const float *Yin, int ldin, const float *restrict bias,
                          const float *restrict H, int ldh, const float *restrict BT, int C, int R,
                          int n0, int n1) {
    for (int n = n0; n < n1; n++) {
        float *y = Y + (size_t)n * ldy;
        const float *yi = Yin + (size_t)n * ldin;
        if (bias) {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = yi[c] + bias[c];
        } else if (y != yi) {
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = yi[c];
        }
        for (int j = 0; j < R; j++) {
            float hj = H[(size_t)n * ldh + j];
            const float *restrict bt = BT + (size_t)j * C;
#pragma omp simd
            for (int c = 0; c < C; c++) y[c] = MADD(hj, bt[c], y[c]);
        }
    }
}

static void rows_axpy(float *Y, int ldy, const float *Yin, int ldin, const float *bias,
                      const float *H, int ldh, const float *BT, int C, int r, int n0, int n1) {
    switch (r) {
    case 1: rows_axpy_r(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, 1, n0, n1); break;
    case 2: rows_axpy_r(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, 2, n0, n1); break;
    case 4: rows_axpy_r(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, 4, n0, n1); break;
    case 8: rows_axpy_r(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, 8, n0, n1); break;
    case 16: rows_axpy_r(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, 16, n0, n1); break;
    default: rows_axpy_any(Y, ldy, Yin, ldin, bias, H, ldh, BT, C, r, n0, n1); break;
    }
}

/* ------------------------------------------------------------ cols_gram */

/* One tile of W columns starting at c, rows [nb, ne): accumulators loaded
 * from G / colsum, summed over the rows in order, stored back — so each
 * column's sum runs over n = 0..N-1 in order whatever the tiling. */
INLINE void gram_tile(float *restrict G, int ldg, float *restrict colsum, const float *restrict Y,
                      int ldy, const float *restrict H, int ldh, const int R, int nb, int ne, int c,
                      const int W, const int with_sum) {
    float acc[SKINNY_MAX_RANK][GRAM_TILE], cs[GRAM_TILE];
    for (int j = 0; j < R; j++)
        for (int i = 0; i < W; i++) acc[j][i] = G[(size_t)j * ldg + c + i];
    if (with_sum)
        for (int i = 0; i < W; i++) cs[i] = colsum[c + i];
    for (int n = nb; n < ne; n++) {
        const float *restrict y = Y + (size_t)n * ldy + c;
        if (with_sum) {
#pragma omp simd
            for (int i = 0; i < W; i++) cs[i] += y[i];
        }
        for (int j = 0; j < R; j++) {
            float hj = H[(size_t)n * ldh + j];
#pragma omp simd
            for (int i = 0; i < W; i++) acc[j][i] = MADD(hj, y[i], acc[j][i]);
        }
    }
    for (int j = 0; j < R; j++)
        for (int i = 0; i < W; i++) G[(size_t)j * ldg + c + i] = acc[j][i];
    if (with_sum)
        for (int i = 0; i < W; i++) colsum[c + i] = cs[i];
}

INLINE void cols_gram_r(float *G, int ldg, float *colsum, const float *Y, int ldy, const float *H,
                        int ldh, const int R, int N, int c0, int c1, const int with_sum) {
    for (int nb = 0; nb < N; nb += GRAM_ROW_BLOCK) {
        int ne = nb + GRAM_ROW_BLOCK < N ? nb + GRAM_ROW_BLOCK : N;
        int c = c0;
        for (; c + GRAM_TILE <= c1; c += GRAM_TILE)
            gram_tile(G, ldg, colsum, Y, ldy, H, ldh, R, nb, ne, c, GRAM_TILE, with_sum);
        for (; c < c1; c++) gram_tile(G, ldg, colsum, Y, ldy, H, ldh, R, nb, ne, c, 1, with_sum);
    }
}

#define GRAM_CASE(RR)                                                      \
    case RR:                                                               \
        if (colsum)                                                        \
            cols_gram_r(G, ldg, colsum, Y, ldy, H, ldh, RR, N, c0, c1, 1); \
        else                                                               \
            cols_gram_r(G, ldg, colsum, Y, ldy, H, ldh, RR, N, c0, c1, 0); \
        break;

static void cols_gram(float *G, int ldg, float *colsum, const float *Y, int ldy, const float *H,
                      int ldh, int r, int N, int c0, int c1) {
    switch (r) {
        GRAM_CASE(0)
        GRAM_CASE(1)
        GRAM_CASE(2)
        GRAM_CASE(4)
        GRAM_CASE(8)
        GRAM_CASE(16)
    default:
        if (colsum)
            cols_gram_r(G, ldg, colsum, Y, ldy, H, ldh, r, N, c0, c1, 1);
        else
            cols_gram_r(G, ldg, colsum, Y, ldy, H, ldh, r, N, c0, c1, 0);
        break;
    }
}

/* -------------------------------------------------- cols_scale_backward */

/* g may alias dy: element (n, c) is read before it is written. */
static void cols_scale_backward(float *g, float *restrict ds, float *restrict db, const float *dy,
                                const float *restrict h, const float *restrict s, int N, int C,
                                int c0, int c1) {
    for (int n = 0; n < N; n++) {
        const float *d = dy + (size_t)n * C;
        const float *hr = h + (size_t)n * C;
        float *gr = g + (size_t)n * C;
        if (db) {
#pragma omp simd
            for (int c = c0; c < c1; c++) db[c] += d[c];
        }
        if (ds) {
#pragma omp simd
            for (int c = c0; c < c1; c++) ds[c] = MADD(d[c], hr[c], ds[c]);
        }
#pragma omp simd
        for (int c = c0; c < c1; c++) gr[c] = d[c] * s[c];
    }
}

const skinny_kernels ISA_TABLE(skinny_kernels) = {
    .rows_dot = rows_dot,
    .rows_axpy = rows_axpy,
    .cols_gram = cols_gram,
    .cols_scale_backward = cols_scale_backward,
};
