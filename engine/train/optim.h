/* optim.h — the optimizer pieces of the training recipe (aflora.md §5):
 * AdamW with decoupled weight decay, the linear warm-up/decay learning-rate
 * schedule and global-norm gradient clipping, each with the semantics of the
 * PyTorch / Hugging Face function it replaces so results can be compared
 * with the authors' runs.
 *
 * Plain functions over float buffers: the caller owns parameters, gradients
 * and the moment buffers (one aflo_adam_state per trainable tensor, freed
 * when the tensor freezes). Every loop runs in a fixed order, so results are
 * deterministic. */
#ifndef AFLO_OPTIM_H
#define AFLO_OPTIM_H

#include <stddef.h>

/* Adam moments of one tensor: first (m) and second (v) raw moments. */
typedef struct {
    float *m, *v;
    size_t size;
} aflo_adam_state;

int adam_state_init(aflo_adam_state *s, size_t size); /* zeroed; -1 on OOM */
void adam_state_free(aflo_adam_state *s);             /* safe to call twice */

/* torch.optim.AdamW (amsgrad off, not maximize): p -= lr*wd*p;
 * m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
 * p -= lr * (m/(1-b1^t)) / (sqrt(v/(1-b2^t)) + eps). t is the 1-based update
 * count (values below 1 are treated as 1). Updates s->size elements. */
void adamw_update(float *param, const float *grad, aflo_adam_state *s, float lr, float weight_decay,
                  float beta1, float beta2, float eps, long t);

/* HF get_linear_schedule_with_warmup: lambda(s) = s/warmup for s < warmup,
 * else max(0, (total - s)/(total - warmup)) (denominators at least 1, as HF
 * does); s is the 0-based count of updates done before this one. Returns
 * peak * lambda(s). */
float lr_linear_warmup(float peak, long s, long warmup, long total);

/* sqrt(sum of squares) over n gradient buffers (NULL entries skipped),
 * accumulated in double in a fixed order (fixed chunks and lanes, see
 * optim.c): the same value for any thread count and ISA level. */
double grad_global_norm(const float *const *grads, const size_t *sizes, int n);

/* torch.nn.utils.clip_grad_norm_: coef = max_norm/(norm+1e-6); if coef < 1
 * scale all grads by coef. Returns the norm before clipping. A non-finite
 * norm is returned as is and the gradients are left alone: the caller should
 * skip such a step. */
double grad_clip_global_norm(float *const *grads, const size_t *sizes, int n, double max_norm);

#endif
