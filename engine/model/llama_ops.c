/* llama_ops.c — RMSNorm, RoPE, SwiGLU and next-token cross-entropy (see
 * llama_ops.h).
 *
 * Every kernel is a loop over rows, parallel with OpenMP when the tensor is
 * big enough to repay the fork/join, each row computed by one thread start
 * to finish; the one reduction across rows (RMSNorm's weight gradient) runs
 * serially in row order, so results are bit-identical for any thread count.
 * Row sums stay plain scalar loops in float, as torch sums on CPU; the
 * cross-entropy's loss total is a double. RoPE angles are computed in double
 * and rounded once, so long positions do not lose the fraction of the angle
 * that float position * float frequency would. */
#include "model/llama_ops.h"

#include <math.h>
#include <string.h>

#include "model/gemm.h"

/* As ops.c: below this many elements a kernel stays on the calling thread. */
#define LLAMA_OPS_PARALLEL_MIN_ELEMS 32768

static inline int big_enough(size_t rows, size_t cols) {
    return rows * cols >= (size_t)LLAMA_OPS_PARALLEL_MIN_ELEMS;
}

/* ---------------------------------------------------------------- RMSNorm */

void rmsnorm_forward(float *restrict out, float *restrict rstd, const float *restrict x,
                     const float *restrict w, int N, int C, float eps) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        float *outr = out + (size_t)n * C;
        float sq = 0.0f;
        for (int c = 0; c < C; c++) sq += xr[c] * xr[c];
        float s = 1.0f / sqrtf(sq / (float)C + eps);
#pragma omp simd
        for (int c = 0; c < C; c++) outr[c] = xr[c] * s * w[c];
        rstd[n] = s;
    }
}

void rmsnorm_backward(float *dx, float *dw, const float *dout, const float *restrict x,
                      const float *restrict rstd, const float *restrict w, int N, int C) {
    /* The weight gradient first, serially in row order (determinism), and
     * before dx is written because dx may alias dout. */
    if (dw) {
        for (int n = 0; n < N; n++) {
            const float *xr = x + (size_t)n * C;
            const float *dr = dout + (size_t)n * C;
            float s = rstd[n];
#pragma omp simd
            for (int c = 0; c < C; c++) dw[c] += dr[c] * (xr[c] * s);
        }
    }
    /* y = x r w with r = (mean(x^2) + eps)^-1/2, dr/dx_c = -r^3 x_c / C:
     * dx = r (g - x r^2 mean(g x)), g = dout * w. */
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)C))
    for (int n = 0; n < N; n++) {
        const float *xr = x + (size_t)n * C;
        const float *dr = dout + (size_t)n * C;
        float *dxr = dx + (size_t)n * C;
        float s = rstd[n];
        float sum_gx = 0.0f;
        for (int c = 0; c < C; c++) sum_gx += dr[c] * w[c] * xr[c];
        float k = s * s * sum_gx / (float)C;
#pragma omp simd
        for (int c = 0; c < C; c++) dxr[c] = s * (dr[c] * w[c] - xr[c] * k);
    }
}

/* ---------------------------------------------------------------- RoPE */

#define ROPE_TWO_PI 6.283185307179586476925

void rope_inv_freq(double *inv_freq, const aflo_config *c, int head_dim) {
    int half = head_dim / 2;
    for (int j = 0; j < half; j++) {
        double f = pow((double)c->rope_theta, -2.0 * j / (double)head_dim);
        if (c->rope_scaling == ROPE_SCALING_LINEAR) {
            f /= c->rope_factor;
        } else if (c->rope_scaling == ROPE_SCALING_LLAMA3) {
            /* Wavelengths longer than original context / low_freq_factor are
             * stretched by factor, shorter than ... / high_freq_factor kept,
             * and those between interpolated (Llama 3.1's rope_scaling). */
            double ctx = c->rope_original_max_position_embeddings;
            double lo = c->rope_low_freq_factor, hi = c->rope_high_freq_factor;
            double factor = c->rope_factor;
            double wavelen = ROPE_TWO_PI / f;
            if (wavelen > ctx / lo) {
                f /= factor;
            } else if (!(wavelen < ctx / hi)) {
                double smooth = (ctx / wavelen - lo) / (hi - lo);
                f = (1.0 - smooth) * f / factor + smooth * f;
            }
        }
        inv_freq[j] = f;
    }
}

void rope_tables(float *cos_t, float *sin_t, const double *inv_freq, int S, int head_dim) {
    int half = head_dim / 2;
    for (int p = 0; p < S; p++)
        for (int j = 0; j < half; j++) {
            double a = (double)p * inv_freq[j];
            cos_t[(size_t)p * half + j] = (float)cos(a);
            sin_t[(size_t)p * half + j] = (float)sin(a);
        }
}

/* sign +1: the forward rotation, -1: its transpose. */
static void rope_rotate(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N,
                        int heads, int head_dim, float sign) {
    int half = head_dim / 2;
    size_t row = (size_t)heads * head_dim;
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, row))
    for (int n = 0; n < N; n++) {
        const float *cr = cos_t + (size_t)pos[n] * half;
        const float *sr = sin_t + (size_t)pos[n] * half;
        for (int h = 0; h < heads; h++) {
            float *a = x + n * row + (size_t)h * head_dim, *b = a + half;
#pragma omp simd
            for (int j = 0; j < half; j++) {
                float s = sign * sr[j], x1 = a[j], x2 = b[j];
                a[j] = x1 * cr[j] - x2 * s;
                b[j] = x2 * cr[j] + x1 * s;
            }
        }
    }
}

void rope_forward(float *x, const int32_t *pos, const float *cos_t, const float *sin_t, int N,
                  int heads, int head_dim) {
    rope_rotate(x, pos, cos_t, sin_t, N, heads, head_dim, 1.0f);
}

void rope_backward(float *dx, const int32_t *pos, const float *cos_t, const float *sin_t, int N,
                   int heads, int head_dim) {
    rope_rotate(dx, pos, cos_t, sin_t, N, heads, head_dim, -1.0f);
}

/* ---------------------------------------------------------------- SwiGLU */

void swiglu_forward(float *out, const float *g, const float *u, size_t n) {
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        out[i] = g[i] * sig * u[i];
    }
}

void swiglu_backward(float *dg, float *du, const float *dout, const float *g, const float *u,
                     size_t n) {
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (big_enough(n, 1))
    for (size_t i = 0; i < n; i++) {
        float sig = 1.0f / (1.0f + expf(-g[i]));
        float d = dout[i], gi = g[i];
        /* silu'(g) = sig (1 + g (1 - sig)) */
        du[i] = d * gi * sig;
        dg[i] = d * u[i] * sig * (1.0f + gi * (1.0f - sig));
    }
}

/* ---------------------------------------------------------------- cross-entropy */

double token_cross_entropy_forward(float *lse, const float *logits, const int32_t *target, int N,
                                   int V) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)V))
    for (int n = 0; n < N; n++) {
        if (target[n] < 0) continue;
        const float *lr = logits + (size_t)n * V;
        float mx = lr[0];
        for (int j = 1; j < V; j++) mx = fmaxf(mx, lr[j]);
        float sum = 0.0f;
        for (int j = 0; j < V; j++) sum += expf(lr[j] - mx);
        lse[n] = mx + logf(sum);
    }
    double total = 0.0; /* serial: one fixed summation order */
    for (int n = 0; n < N; n++)
        if (target[n] >= 0) total += (double)lse[n] - (double)logits[(size_t)n * V + target[n]];
    return total;
}

void token_cross_entropy_backward(float *dlogits, const float *logits, const float *lse,
                                  const int32_t *target, int N, int V, float k) {
#pragma omp parallel for schedule(static) \
    num_threads(engine_threads()) if (big_enough((size_t)N, (size_t)V))
    for (int n = 0; n < N; n++) {
        float *dr = dlogits + (size_t)n * V;
        const float *lr = logits + (size_t)n * V;
        if (target[n] < 0) {
            memset(dr, 0, (size_t)V * sizeof *dr);
            continue;
        }
        float l = lse[n];
        for (int j = 0; j < V; j++) dr[j] = k * expf(lr[j] - l);
        dr[target[n]] -= k;
    }
}
