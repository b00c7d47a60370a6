/* optim.c — AdamW, linear warm-up schedule, global-norm clipping.
 *
 * AdamW follows the arithmetic of torch.optim.AdamW's single-tensor path in
 * torch 1.13: the scalar factors (bias corrections, step size) are computed
 * in double, as Python computes them, and rounded to float once; the
 * per-element work is float, in the same order as torch's kernels. That keeps
 * our parameters within a few float ulps of a PyTorch run of the same recipe
 * (tests/golden/gen_adamw.py checks it). */
#include "train/optim.h"

#include <math.h>
#include <stdlib.h>

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define CLIP_NORM_EPS 1e-6

int adam_state_init(aflo_adam_state *s, size_t size) {
    s->m = s->v = NULL;
    s->size = 0;
    if (size == 0) return 0;
    s->m = calloc(size, sizeof(float));
    s->v = calloc(size, sizeof(float));
    if (!s->m || !s->v) {
        adam_state_free(s);
        return -1;
    }
    s->size = size;
    return 0;
}

void adam_state_free(aflo_adam_state *s) {
    free(s->m);
    free(s->v);
    s->m = s->v = NULL;
    s->size = 0;
}

void adamw_update(float *restrict param, const float *restrict grad, aflo_adam_state *s, float lr,
                  float weight_decay, float beta1, float beta2, float eps, long t) {
    if (t < 1) t = 1;
    const double bias1 = 1.0 - pow((double)beta1, (double)t);
    const double bias2 = 1.0 - pow((double)beta2, (double)t);
    const float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    const float b1 = beta1, one_b1 = (float)(1.0 - (double)beta1);
    const float b2 = beta2, one_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / bias1);
    const float bias2_sqrt = (float)sqrt(bias2);
    float *restrict m = s->m, *restrict v = s->v;
    const size_t n = s->size;
    /* sqrtf's errno contract keeps this loop scalar unless built with
     * -fno-math-errno; v >= 0, so errno is never actually touched. */
    for (size_t i = 0; i < n; i++) {
        float g = grad[i];
        float p = param[i] * decay;
        m[i] = m[i] * b1 + g * one_b1;
        v[i] = v[i] * b2 + one_b2 * g * g;
        float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        param[i] = p - step_size * m[i] / denom;
    }
}

float lr_linear_warmup(float peak, long s, long warmup, long total) {
    double lambda;
    if (s < warmup) {
        lambda = (double)s / (double)(warmup > 1 ? warmup : 1);
    } else {
        long span = total - warmup;
        lambda = (double)(total - s) / (double)(span > 1 ? span : 1);
        if (lambda < 0.0) lambda = 0.0;
    }
    return (float)((double)peak * lambda);
}

double grad_global_norm(const float *const *grads, const size_t *sizes, int n) {
    double sum = 0.0;
    for (int k = 0; k < n; k++) {
        const float *g = grads[k];
        if (!g) continue;
        for (size_t i = 0; i < sizes[k]; i++) sum += (double)g[i] * (double)g[i];
    }
    return sqrt(sum);
}

double grad_clip_global_norm(float *const *grads, const size_t *sizes, int n, double max_norm) {
    const double norm = grad_global_norm((const float *const *)grads, sizes, n);
    const double coef = max_norm / (norm + CLIP_NORM_EPS);
    if (!(coef < 1.0) || !isfinite(norm)) return norm;
    const float c = (float)coef;
    for (int k = 0; k < n; k++) {
        float *restrict g = grads[k];
        if (!g) continue;
#pragma omp simd
        for (size_t i = 0; i < sizes[k]; i++) g[i] *= c;
    }
    return norm;
}
