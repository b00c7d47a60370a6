/* optim.c — AdamW, linear warm-up schedule, global-norm clipping.
 *
 * AdamW follows the arithmetic of torch.optim.AdamW's single-tensor path in
 * torch 1.13: the scalar factors (bias corrections, step size) are computed
 * in double, as Python computes them, and rounded to float once; the
 * per-element work is float, in the same order as torch's kernels. That keeps
 * our parameters within a few float ulps of a PyTorch run of the same recipe
 * (tests/golden/gen_adamw.py checks it).
 *
 * The per-element loops run in optim_kern.c, built per ISA level; the same
 * bits come out at every level (optim_kern.h). Large tensors are cut into
 * fixed chunks of OPTIM_CHUNK elements shared among the engine's threads:
 * AdamW and scaling are elementwise, and the global norm adds its per-chunk
 * double sums in chunk order, so no result depends on the thread count. */
#include "train/optim.h"

#include "model/gemm.h"
#include "train/optim_kern.h"

#include <math.h>
#include <stdlib.h>

/* torch.nn.utils.clip_grad_norm_ adds this to the norm before dividing. */
#define CLIP_NORM_EPS 1e-6
/* Work unit of the parallel loops: 64K floats (256 KiB) repays a thread's
 * share of a fork/join many times over and fits in L2. */
#define OPTIM_CHUNK ((size_t)1 << 16)
/* Chunk sums of the global norm computed per parallel round (stack array). */
#define NORM_ROUND_CHUNKS 256

static const optim_kernels *const variants[ISA_COUNT] = {&optim_kernels_base, &optim_kernels_avx2,
                                                         &optim_kernels_avx512};

const optim_kernels *optim_kern(void) { return variants[isa_level()]; }

static size_t chunks_of(size_t n) { return (n + OPTIM_CHUNK - 1) / OPTIM_CHUNK; }

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

void adamw_update(float *param, const float *grad, aflo_adam_state *s, float lr, float weight_decay,
                  float beta1, float beta2, float eps, long t) {
    if (t < 1) t = 1;
    const double bias1 = 1.0 - pow((double)beta1, (double)t);
    const double bias2 = 1.0 - pow((double)beta2, (double)t);
    const float decay = (float)(1.0 - (double)lr * (double)weight_decay);
    const float b1 = beta1, one_b1 = (float)(1.0 - (double)beta1);
    const float b2 = beta2, one_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / bias1);
    const float bias2_sqrt = (float)sqrt(bias2);
    const adamw_consts k = {.decay = decay,
                            .b1 = b1,
                            .one_b1 = one_b1,
                            .b2 = b2,
                            .one_b2 = one_b2,
                            .step_size = step_size,
                            .bias2_sqrt = bias2_sqrt,
                            .eps = eps};
    const optim_kernels *kern = optim_kern();
    const size_t n = s->size, nc = chunks_of(n);
    if (nc <= 1) { /* no OpenMP region: even a one-thread one costs ~1 us */
        kern->adamw(param, grad, s->m, s->v, n, &k);
        return;
    }
#pragma omp parallel for schedule(static) num_threads(engine_threads())
    for (size_t c = 0; c < nc; c++) {
        size_t i = c * OPTIM_CHUNK, len = n - i < OPTIM_CHUNK ? n - i : OPTIM_CHUNK;
        kern->adamw(param + i, grad + i, s->m + i, s->v + i, len, &k);
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
    const optim_kernels *kern = optim_kern();
    double sum = 0.0;
    for (int k = 0; k < n; k++) {
        const float *g = grads[k];
        if (!g) continue;
        const size_t nc = chunks_of(sizes[k]);
        if (nc <= 1) { /* the one chunk, without an OpenMP region */
            sum += kern->sumsq(g, sizes[k]);
            continue;
        }
        /* Rounds of chunk sums in parallel, each round added in chunk order. */
        for (size_t c0 = 0; c0 < nc; c0 += NORM_ROUND_CHUNKS) {
            double part[NORM_ROUND_CHUNKS];
            const size_t rc = nc - c0 < NORM_ROUND_CHUNKS ? nc - c0 : NORM_ROUND_CHUNKS;
#pragma omp parallel for schedule(static) num_threads(engine_threads()) if (rc > 1)
            for (size_t j = 0; j < rc; j++) {
                size_t i = (c0 + j) * OPTIM_CHUNK;
                size_t len = sizes[k] - i < OPTIM_CHUNK ? sizes[k] - i : OPTIM_CHUNK;
                part[j] = kern->sumsq(g + i, len);
            }
            for (size_t j = 0; j < rc; j++) sum += part[j];
        }
    }
    return sqrt(sum);
}

double grad_clip_global_norm(float *const *grads, const size_t *sizes, int n, double max_norm) {
    const double norm = grad_global_norm((const float *const *)grads, sizes, n);
    const double coef = max_norm / (norm + CLIP_NORM_EPS);
    if (!(coef < 1.0) || !isfinite(norm)) return norm;
    const float c = (float)coef;
    const optim_kernels *kern = optim_kern();
    for (int k = 0; k < n; k++) {
        float *g = grads[k];
        if (!g) continue;
        const size_t nc = chunks_of(sizes[k]);
        if (nc <= 1) {
            kern->scale(g, sizes[k], c);
            continue;
        }
#pragma omp parallel for schedule(static) num_threads(engine_threads())
        for (size_t j = 0; j < nc; j++) {
            size_t i = j * OPTIM_CHUNK;
            kern->scale(g + i, sizes[k] - i < OPTIM_CHUNK ? sizes[k] - i : OPTIM_CHUNK, c);
        }
    }
    return norm;
}
