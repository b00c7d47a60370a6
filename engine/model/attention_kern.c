/* attention_kern.c — the maths of one (batch, kv head) unit of attention
 * (attention.h), compiled once per ISA level.
 *
 * Every product is the same register tile: RQ rows x NT columns of C in
 * registers, summed over k as C += A(r, k) * B[k][0..NT), with A read as
 * scalars through two strides (so A may be a matrix or its transpose) and
 * B as contiguous rows. The operands are arranged so B always has
 * contiguous rows: K is transposed once per unit for the scores (S = Qs
 * K^T as Qs * Kt), V likewise for dP = dO V^T; P V and dS K read V and K
 * row by row; dK and dV are summed transposed (dK^T = Qs^T dS,
 * dV^T = dO^T P) so they read dS and P row by row, and are transposed back
 * once at the end. Padding (ATTN_PAD) makes every tile whole; pads hold
 * zeros so they add nothing.
 *
 * Forward, per block of query rows: S = (scale Q) Kt over the block's key
 * range (causal/window blocks skip key tiles no row sees), mask and
 * softmax by rows with the log-sum-exp kept, dropout, O = P V.
 * Backward, per block: S again, P = exp(S - lse), dP = dO Vt, dropout,
 * dS = P (dP - D) with D = rowsum(dO o O); dQ = scale dS K written per
 * block; dK^T and dV^T summed in the unit's accumulators over every block
 * and every query head of the group, then written once.
 *
 * Multiply-adds go through MADD as in skinny_kern.c (an FMA where the
 * level has one). */

/* Vectorised softmax loops rely on KERN_OPT's -fno-trapping-math (Makefile):
 * without it gcc 12 does not if-convert vm_expf's clamps or the masks. */

#include "model/attention_kern.h"

#include <math.h>
#include <string.h>

#include "base/rng.h"
#include "model/vmath.h"

#ifdef __FMA__
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

#define INLINE static inline __attribute__((always_inline))

/* Register tile: RQ x NT accumulators — 16 of 32 zmm registers at AVX-512;
 * 12 of 16 ymm at AVX2 (6 x 16, the shape of BLIS's Haswell kernel: enough
 * independent FMA chains to cover the latency of both FMA ports); 8 of 16
 * xmm at SSE — leaving room for the B row and the broadcast A element.
 * Tile rows run past the real rows into ATTN_ROW_SLACK spare rows. */
#if defined(__AVX512F__)
#define NT 32
#define RQ 8
#elif defined(__AVX2__)
#define NT 16
#define RQ 6
#else
#define NT 8
#define RQ 4
#endif
#define RMAX 8

/* Lanes of the softmax's row max and sum. */
#define LANES 16

_Static_assert(ATTN_PAD % LANES == 0, "key ranges hold whole lanes");
_Static_assert(ATTN_PAD % NT == 0, "padding must hold whole tiles");
_Static_assert(RQ <= ATTN_ROW_SLACK && RQ <= RMAX, "row tiles must fit the padding");

static int imin(int a, int b) { return a < b ? a : b; }
static int imax(int a, int b) { return a > b ? a : b; }

/* C[r*ldc + n] (+)= sum_{k<K} A[r*ars + k*aks] * B[k*ldb + n], r < R, n < NT.
 * The sum starts from zero and C is added at the end: loading C into the
 * accumulators first made gcc copy it through the stack in halves, and the
 * full-width reloads then stalled on store forwarding. */
INLINE void tile(const int R, float *restrict C, int ldc, const float *restrict A, ptrdiff_t ars,
                 ptrdiff_t aks, const float *restrict B, int ldb, int K, const int accumulate) {
    float acc[RMAX][NT];
    for (int r = 0; r < R; r++)
#pragma omp simd
        for (int n = 0; n < NT; n++) acc[r][n] = 0.0f;
    for (int k = 0; k < K; k++) {
        const float *restrict b = B + (size_t)k * ldb;
        const float *restrict a = A + k * aks;
        for (int r = 0; r < R; r++) {
            const float av = a[r * ars];
#pragma omp simd
            for (int n = 0; n < NT; n++) acc[r][n] = MADD(av, b[n], acc[r][n]);
        }
    }
    for (int r = 0; r < R; r++) {
        float *restrict c = C + (size_t)r * ldc;
        if (accumulate) {
#pragma omp simd
            for (int n = 0; n < NT; n++) c[n] += acc[r][n];
        } else {
#pragma omp simd
            for (int n = 0; n < NT; n++) c[n] = acc[r][n];
        }
    }
}

/* ---------------------------------------------------------------- operands */

/* dst (rows_p x dp, zero padded) = s * src rows [0, rows), d columns. */
static void copy_pad(float *restrict dst, int dp, const float *restrict src, int ld, int rows,
                     int rows_p, int d, float s) {
    for (int r = 0; r < rows; r++) {
        const float *restrict x = src + (size_t)r * ld;
        float *restrict y = dst + (size_t)r * dp;
#pragma omp simd
        for (int c = 0; c < d; c++) y[c] = s * x[c];
        for (int c = d; c < dp; c++) y[c] = 0.0f;
    }
    memset(dst + (size_t)rows * dp, 0, (size_t)(rows_p - rows) * dp * sizeof *dst);
}

/* dst[c*ldd + r] = src[r*lds + c] for r < R, c < C, in 8 x 8 blocks so the
 * writes of a block share cache lines. Used in cache only: the operands
 * come from memory (and go back) in row order, streamed by copy_pad and
 * memcpy. */
static void transpose(float *restrict dst, int ldd, const float *restrict src, int lds, int R,
                      int C) {
    for (int r0 = 0; r0 < R; r0 += 8)
        for (int c0 = 0; c0 < C; c0 += 8) {
            const int r1 = imin(r0 + 8, R), c1 = imin(c0 + 8, C);
            for (int c = c0; c < c1; c++)
                for (int r = r0; r < r1; r++) dst[(size_t)c * ldd + r] = src[(size_t)r * lds + c];
        }
}

/* bias[j] = 0 for a key batch b may attend, -inf for padding; returns one
 * past the last such key (0 when there is none). */
static int key_bias(const attention_opts *o, int b, int Tp, float *bias) {
    int T = o->seq, len = o->key_lens ? imax(0, imin(o->key_lens[b], T)) : T, kend = 0;
    const uint8_t *mk = o->key_mask ? o->key_mask + (size_t)b * T : NULL;
    for (int j = 0; j < Tp; j++) {
        int ok = j < len && (!mk || mk[j]);
        bias[j] = ok ? 0.0f : -INFINITY;
        if (ok) kend = j + 1;
    }
    return kend;
}

/* Keys [lo, hi) query i may see before padding (both nondecreasing in i). */
static void row_bounds(const attention_opts *o, int i, int kend, int *lo, int *hi) {
    int l = 0, h = kend;
    if (o->causal) h = imin(h, i + 1);
    if (o->window > 0) {
        l = imax(l, i - o->window + 1);
        if (!o->causal) h = imin(h, i + o->window);
    }
    *lo = l;
    *hi = h;
}

/* Tile-aligned key range of the rows [i0, i0 + nr); false when empty. */
static int block_range(const attention_opts *o, int i0, int nr, int kend, int Tp, int *jlo,
                       int *jhi) {
    int lo, hi, lo1, hi1;
    row_bounds(o, i0, kend, &lo, &hi);
    row_bounds(o, i0 + nr - 1, kend, &lo1, &hi1);
    (void)lo1;
    (void)hi;
    if (hi1 <= lo) return 0;
    *jlo = lo / ATTN_PAD * ATTN_PAD;
    *jhi = imin(attn_roundup(hi1, ATTN_PAD), Tp);
    return 1;
}

INLINE int kept(const attention_job *J, uint64_t ctr) {
    return (int64_t)(rng_hash(J->o.dropout_seed, ctr) >> 40) >= J->drop_thr;
}

/* S[rows_p x (jlo..jhi)] = Qs Kt: the block's scores. */
static void scores(float *S, int Tp, const float *Qs, int dp, const float *Kt, int rows_p, int jlo,
                   int jhi, int d) {
    for (int r0 = 0; r0 < rows_p; r0 += RQ)
        for (int j0 = jlo; j0 < jhi; j0 += NT)
            tile(RQ, S + (size_t)r0 * Tp + j0, Tp, Qs + (size_t)r0 * dp, dp, 1, Kt + j0, Tp, d, 0);
}

/* ---------------------------------------------------------------- forward */

/* Row i of the scores in s[jlo..jhi) becomes its (dropped-out) weights;
 * returns the row's log-sum-exp. ctr: the row's first dropout counter. */
static float softmax_row(const attention_job *J, float *restrict s, const float *restrict bias,
                         int i, int kend, int jlo, int jhi, uint64_t ctr) {
    int lo, hi;
    row_bounds(&J->o, i, kend, &lo, &hi);
    /* max and sum in LANES fixed lanes (a plain reduction of a max does
     * not vectorise without -ffinite-math-only); the range holds whole
     * ATTN_PAD tiles */
    float lane[LANES];
    for (int t = 0; t < LANES; t++) lane[t] = -INFINITY;
    for (int j0 = jlo; j0 < jhi; j0 += LANES) {
#pragma omp simd
        for (int t = 0; t < LANES; t++) {
            int j = j0 + t;
            float v = (j >= lo && j < hi) ? s[j] + bias[j] : -INFINITY;
            s[j] = v;
            lane[t] = v > lane[t] ? v : lane[t];
        }
    }
    float mx = -INFINITY;
    for (int t = 0; t < LANES; t++) mx = lane[t] > mx ? lane[t] : mx;
    if (mx == -INFINITY) { /* no visible key: output 0 */
        for (int j = jlo; j < jhi; j++) s[j] = 0.0f;
        return INFINITY;
    }
    for (int t = 0; t < LANES; t++) lane[t] = 0.0f;
    for (int j0 = jlo; j0 < jhi; j0 += LANES) {
#pragma omp simd
        for (int t = 0; t < LANES; t++) {
            float e = vm_expf(s[j0 + t] - mx);
            s[j0 + t] = e;
            lane[t] += e;
        }
    }
    float sum = 0.0f;
    for (int t = 0; t < LANES; t++) sum += lane[t];
    /* sum >= 1: the max key contributes exp(0) */
    float inv = 1.0f / sum;
    if (J->drop_on) {
        const float ds = J->drop_scale;
#pragma omp simd
        for (int j = jlo; j < jhi; j++) s[j] = kept(J, ctr + (uint64_t)j) ? s[j] * inv * ds : 0.0f;
    } else {
#pragma omp simd
        for (int j = jlo; j < jhi; j++) s[j] *= inv;
    }
    return mx + logf(sum);
}

static void forward_unit(const attention_job *J, int b, int kvh, float *ws) {
    const attention_opts *o = &J->o;
    const int T = o->seq, d = o->head_dim, Tp = J->Tp, dp = J->dp;
    const attention_scratch_map m = attention_scratch_layout(Tp, dp, d);
    float *Kt = ws + m.kt, *Vp = ws + m.vp, *Qs = ws + m.qs, *S = ws + m.s, *Ob = ws + m.ob;
    float *bias = ws + m.bias;
    const size_t tok = (size_t)b * T;
    int kend = key_bias(o, b, Tp, bias);
    float *Kp = ws + m.kp; /* K padded, for the transpose */
    copy_pad(Kp, dp, J->k.data + tok * J->k.ld + (size_t)kvh * d, J->k.ld, T, Tp, d, 1.0f);
    transpose(Kt, Tp, Kp, dp, Tp, d);
    copy_pad(Vp, dp, J->v.data + tok * J->v.ld + (size_t)kvh * d, J->v.ld, T, Tp, d, 1.0f);
    for (int g = 0; g < J->group; g++) {
        const int h = kvh * J->group + g;
        const float *Q = J->q.data + tok * J->q.ld + (size_t)h * d;
        float *O = J->out.data + tok * J->out.ld + (size_t)h * d;
        float *lse = J->lse + ((size_t)b * o->heads + h) * T;
        const uint64_t stream = (o->dropout_stream + (uint64_t)b * o->heads + (uint64_t)h) << 32;
        for (int i0 = 0; i0 < T; i0 += ATTN_BLOCK_Q) {
            const int nr = imin(ATTN_BLOCK_Q, T - i0), nrp = attn_roundup(nr, RQ);
            int jlo, jhi;
            if (!block_range(o, i0, nr, kend, Tp, &jlo, &jhi)) {
                for (int r = 0; r < nr; r++) {
                    memset(O + (size_t)(i0 + r) * J->out.ld, 0, (size_t)d * sizeof *O);
                    lse[i0 + r] = INFINITY;
                }
                continue;
            }
            copy_pad(Qs, dp, Q + (size_t)i0 * J->q.ld, J->q.ld, nr, nrp, d, o->scale);
            scores(S, Tp, Qs, dp, Kt, nrp, jlo, jhi, d);
            for (int r = 0; r < nr; r++) {
                const int i = i0 + r;
                lse[i] = softmax_row(J, S + (size_t)r * Tp, bias, i, kend, jlo, jhi,
                                     stream + (uint64_t)i * T);
            }
            for (int r0 = 0; r0 < nrp; r0 += RQ)
                for (int c0 = 0; c0 < dp; c0 += NT)
                    tile(RQ, Ob + (size_t)r0 * dp + c0, dp, S + (size_t)r0 * Tp + jlo, Tp, 1,
                         Vp + (size_t)jlo * dp + c0, dp, jhi - jlo, 0);
            for (int r = 0; r < nr; r++)
                memcpy(O + (size_t)(i0 + r) * J->out.ld, Ob + (size_t)r * dp,
                       (size_t)d * sizeof *O);
        }
    }
}

/* ---------------------------------------------------------------- backward */

/* Row i: s[jlo..jhi) holds the scores, dp the gradient of the (dropped-out)
 * weights; they become the weights P_d (for dV) and dS = P (dP - D). */
static void grad_row(const attention_job *J, float *restrict s, float *restrict dp,
                     const float *restrict bias, int i, int kend, int jlo, int jhi, float lse,
                     float D, uint64_t ctr) {
    int lo, hi;
    row_bounds(&J->o, i, kend, &lo, &hi);
    if (J->drop_on) {
        const float dsc = J->drop_scale;
#pragma omp simd
        for (int j = jlo; j < jhi; j++) {
            float v = (j >= lo && j < hi) ? s[j] + bias[j] : -INFINITY;
            float p = vm_expf(v - lse);
            float k = kept(J, ctr + (uint64_t)j) ? dsc : 0.0f;
            s[j] = p * k;
            dp[j] = p * (dp[j] * k - D);
        }
    } else {
#pragma omp simd
        for (int j = jlo; j < jhi; j++) {
            float v = (j >= lo && j < hi) ? s[j] + bias[j] : -INFINITY;
            float p = vm_expf(v - lse);
            s[j] = p;
            dp[j] = p * (dp[j] - D);
        }
    }
}

static float dot(const float *restrict x, const float *restrict y, int n) {
    float t = 0.0f;
#pragma omp simd reduction(+ : t)
    for (int c = 0; c < n; c++) t += x[c] * y[c];
    return t;
}

static void backward_unit(const attention_job *J, int b, int kvh, float *ws) {
    const attention_opts *o = &J->o;
    const int T = o->seq, d = o->head_dim, Tp = J->Tp, dp = J->dp;
    const attention_scratch_map m = attention_scratch_layout(Tp, dp, d);
    float *Kt = ws + m.kt, *Vt = ws + m.vt, *Kp = ws + m.kp, *dKa = ws + m.dk, *dVa = ws + m.dv;
    float *Qs = ws + m.qs, *dOb = ws + m.dob, *S = ws + m.s, *dS = ws + m.ds, *Gb = ws + m.ob;
    float *bias = ws + m.bias, *Drow = ws + m.rowf;
    const size_t tok = (size_t)b * T;
    const float *K = J->k.data + tok * J->k.ld + (size_t)kvh * d;
    const float *V = J->v.data + tok * J->v.ld + (size_t)kvh * d;
    int kend = key_bias(o, b, Tp, bias);
    float *Vp = ws + m.vp; /* V padded, for the transpose */
    copy_pad(Kp, dp, K, J->k.ld, T, Tp, d, 1.0f);
    copy_pad(Vp, dp, V, J->v.ld, T, Tp, d, 1.0f);
    transpose(Kt, Tp, Kp, dp, Tp, d);
    transpose(Vt, Tp, Vp, dp, Tp, d);
    const size_t acc_floats = (size_t)(dp + ATTN_ROW_SLACK) * Tp;
    memset(dKa, 0, acc_floats * sizeof *dKa);
    memset(dVa, 0, acc_floats * sizeof *dVa);
    for (int g = 0; g < J->group; g++) {
        const int h = kvh * J->group + g;
        const size_t hc = (size_t)h * d;
        const float *Q = J->q.data + tok * J->q.ld + hc;
        const float *O = J->out.data + tok * J->out.ld + hc;
        const float *dO = J->dout.data + tok * J->dout.ld + hc;
        float *dQ = J->dq.data + tok * J->dq.ld + hc;
        const float *lse = J->lse + ((size_t)b * o->heads + h) * T;
        const uint64_t stream = (o->dropout_stream + (uint64_t)b * o->heads + (uint64_t)h) << 32;
        for (int i0 = 0; i0 < T; i0 += ATTN_BLOCK_Q) {
            const int nr = imin(ATTN_BLOCK_Q, T - i0), nrp = attn_roundup(nr, RQ);
            int jlo, jhi;
            if (!block_range(o, i0, nr, kend, Tp, &jlo, &jhi)) {
                for (int r = 0; r < nr; r++)
                    memset(dQ + (size_t)(i0 + r) * J->dq.ld, 0, (size_t)d * sizeof *dQ);
                continue;
            }
            copy_pad(Qs, dp, Q + (size_t)i0 * J->q.ld, J->q.ld, nr, nrp, d, o->scale);
            copy_pad(dOb, dp, dO + (size_t)i0 * J->dout.ld, J->dout.ld, nr, nrp, d, 1.0f);
            for (int r = 0; r < nr; r++)
                Drow[r] =
                    dot(dO + (size_t)(i0 + r) * J->dout.ld, O + (size_t)(i0 + r) * J->out.ld, d);
            scores(S, Tp, Qs, dp, Kt, nrp, jlo, jhi, d);
            scores(dS, Tp, dOb, dp, Vt, nrp, jlo, jhi, d); /* dP = dO V^T */
            for (int r = 0; r < nr; r++) {
                const int i = i0 + r;
                grad_row(J, S + (size_t)r * Tp, dS + (size_t)r * Tp, bias, i, kend, jlo, jhi,
                         lse[i], Drow[r], stream + (uint64_t)i * T);
            }
            /* dQ = scale dS K, this block's rows complete */
            for (int r0 = 0; r0 < nrp; r0 += RQ)
                for (int c0 = 0; c0 < dp; c0 += NT)
                    tile(RQ, Gb + (size_t)r0 * dp + c0, dp, dS + (size_t)r0 * Tp + jlo, Tp, 1,
                         Kp + (size_t)jlo * dp + c0, dp, jhi - jlo, 0);
            for (int r = 0; r < nr; r++) {
                float *y = dQ + (size_t)(i0 + r) * J->dq.ld;
                const float *x = Gb + (size_t)r * dp;
#pragma omp simd
                for (int c = 0; c < d; c++) y[c] = o->scale * x[c];
            }
            /* dK^T += Qs^T dS and dV^T += dO^T P_d over the block's real
             * rows, transposed so B is the contiguous rows of dS and P and
             * the tiles are RQ x NT like the others. A tile's last rows
             * may run past d into padding or the next row of Qs/dO
             * (finite values) and land in accumulator rows >= d, which are
             * never read. */
            for (int c0 = 0; c0 < d; c0 += RQ)
                for (int j0 = jlo; j0 < jhi; j0 += NT) {
                    tile(RQ, dKa + (size_t)c0 * Tp + j0, Tp, Qs + c0, 1, dp, dS + j0, Tp, nr, 1);
                    tile(RQ, dVa + (size_t)c0 * Tp + j0, Tp, dOb + c0, 1, dp, S + j0, Tp, nr, 1);
                }
        }
    }
    float *dK = J->dk.data + tok * J->dk.ld + (size_t)kvh * d;
    float *dV = J->dv.data + tok * J->dv.ld + (size_t)kvh * d;
    /* back to rows in cache (Kp, Vp are free now), then out row by row */
    transpose(Kp, dp, dKa, Tp, d, T);
    transpose(Vp, dp, dVa, Tp, d, T);
    for (int j = 0; j < T; j++) {
        memcpy(dK + (size_t)j * J->dk.ld, Kp + (size_t)j * dp, (size_t)d * sizeof *dK);
        memcpy(dV + (size_t)j * J->dv.ld, Vp + (size_t)j * dp, (size_t)d * sizeof *dV);
    }
}

const attention_kernels ISA_TABLE(attention_kernels) = {
    .forward_unit = forward_unit,
    .backward_unit = backward_unit,
};
