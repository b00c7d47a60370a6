/* causal_attn.c — reference decoder attention (see causal_attn.h).
 *
 * Per (sequence, query head): the S x S scores through gemm, the mask and a
 * row softmax in place, then out = P V. Backward recomputes P from the
 * scores and the saved log-sum-exp, then
 *   dP = dout V^T,  dS = P ⊙ (dP - rowsum(dout ⊙ out)) / sqrt(d),
 *   dq = dS K,  dk += dS^T q,  dv += P^T dout
 * (rowsum(dout ⊙ out) = rowsum(P ⊙ dP), the softmax's backward term). The
 * heads sharing a KV head add into its dk and dv in head order, so the sums
 * do not depend on threads. Masked-out entries are computed and discarded:
 * simple, and this kernel is meant to be replaced by a fused one. */
#include "model/causal_attn.h"

#include <math.h>
#include <string.h>

size_t causal_attn_scratch_floats(const causal_attn_shape *a) {
    return 2 * (size_t)a->seq * a->seq + (size_t)a->seq;
}

static inline int visible(const causal_attn_shape *a, const uint8_t *mask_b, int t, int s) {
    if (s > t) return 0;
    if (mask_b && !mask_b[s]) return 0;
    return a->window <= 0 || t - s < a->window;
}

void causal_attention_forward(float *out, float *lse, const float *q, const float *k,
                              const float *v, const causal_attn_shape *a, float *scratch,
                              aflo_flops *f) {
    int S = a->seq, hd = a->head_dim, nh = a->n_heads, group = nh / a->n_kv_heads;
    int ldq = nh * hd, ldk = a->n_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *P = scratch;
    for (int b = 0; b < a->batch; b++) {
        const uint8_t *mb = a->key_mask ? a->key_mask + (size_t)b * S : NULL;
        for (int h = 0; h < nh; h++) {
            const float *qb = q + (size_t)b * S * ldq + (size_t)h * hd;
            const float *kb = k + (size_t)b * S * ldk + (size_t)(h / group) * hd;
            const float *vb = v + (size_t)b * S * ldk + (size_t)(h / group) * hd;
            float *ob = out + (size_t)b * S * ldq + (size_t)h * hd;
            float *lb = lse + ((size_t)b * nh + h) * S;
            gemm(f, FLOP_FORWARD, false, true, S, S, hd, scale, qb, ldq, kb, ldk, 0.0f, P, S);
            for (int t = 0; t < S; t++) {
                float *row = P + (size_t)t * S;
                float mx = -INFINITY;
                for (int s = 0; s < S; s++)
                    if (visible(a, mb, t, s)) mx = fmaxf(mx, row[s]);
                if (mx == -INFINITY) { /* nothing visible */
                    memset(row, 0, (size_t)S * sizeof *row);
                    lb[t] = -INFINITY;
                    continue;
                }
                float sum = 0.0f;
                for (int s = 0; s < S; s++) {
                    float e = visible(a, mb, t, s) ? expf(row[s] - mx) : 0.0f;
                    row[s] = e;
                    sum += e;
                }
                float inv = 1.0f / sum;
                for (int s = 0; s < S; s++) row[s] *= inv;
                lb[t] = mx + logf(sum);
            }
            gemm(f, FLOP_FORWARD, false, false, S, hd, S, 1.0f, P, S, vb, ldk, 0.0f, ob, ldq);
        }
    }
}

void causal_attention_backward(float *dq, float *dk, float *dv, const float *dout, const float *out,
                               const float *lse, const float *q, const float *k, const float *v,
                               const causal_attn_shape *a, float *scratch, aflo_flops *f) {
    int S = a->seq, hd = a->head_dim, nh = a->n_heads, group = nh / a->n_kv_heads;
    int ldq = nh * hd, ldk = a->n_kv_heads * hd;
    float scale = 1.0f / sqrtf((float)hd);
    float *P = scratch, *dP = scratch + (size_t)S * S, *D = dP + (size_t)S * S;
    memset(dk, 0, (size_t)a->batch * S * ldk * sizeof *dk);
    memset(dv, 0, (size_t)a->batch * S * ldk * sizeof *dv);
    for (int b = 0; b < a->batch; b++) {
        const uint8_t *mb = a->key_mask ? a->key_mask + (size_t)b * S : NULL;
        for (int h = 0; h < nh; h++) {
            size_t qoff = (size_t)b * S * ldq + (size_t)h * hd;
            size_t koff = (size_t)b * S * ldk + (size_t)(h / group) * hd;
            const float *lb = lse + ((size_t)b * nh + h) * S;
            /* P again, from the scores and each row's log-sum-exp */
            gemm(f, FLOP_BACKWARD_INPUT, false, true, S, S, hd, scale, q + qoff, ldq, k + koff, ldk,
                 0.0f, P, S);
            for (int t = 0; t < S; t++) {
                float *row = P + (size_t)t * S;
                for (int s = 0; s < S; s++)
                    row[s] = visible(a, mb, t, s) ? expf(row[s] - lb[t]) : 0.0f;
                const float *dor = dout + qoff + (size_t)t * ldq,
                            *orow = out + qoff + (size_t)t * ldq;
                float d = 0.0f;
                for (int c = 0; c < hd; c++) d += dor[c] * orow[c];
                D[t] = d;
            }
            /* dv += P^T dout; dP = dout V^T */
            gemm(f, FLOP_BACKWARD_INPUT, true, false, S, hd, S, 1.0f, P, S, dout + qoff, ldq, 1.0f,
                 dv + koff, ldk);
            gemm(f, FLOP_BACKWARD_INPUT, false, true, S, S, hd, 1.0f, dout + qoff, ldq, v + koff,
                 ldk, 0.0f, dP, S);
            for (int t = 0; t < S; t++) {
                float *pr = P + (size_t)t * S, *dr = dP + (size_t)t * S;
                for (int s = 0; s < S; s++) dr[s] = pr[s] * (dr[s] - D[t]) * scale;
            }
            /* dq = dS K; dk += dS^T q */
            gemm(f, FLOP_BACKWARD_INPUT, false, false, S, hd, S, 1.0f, dP, S, k + koff, ldk, 0.0f,
                 dq + qoff, ldq);
            gemm(f, FLOP_BACKWARD_INPUT, true, false, S, hd, S, 1.0f, dP, S, q + qoff, ldq, 1.0f,
                 dk + koff, ldk);
        }
    }
}
