/* deberta_attn.c — disentangled self-attention, forward beside backward
 * (deberta_attn.h). Plain loops per (batch, head); the inner dot products
 * run over the head dimension, contiguous in every operand. */
#include "model/deberta_attn.h"

#include <assert.h>
#include <math.h>
#include <string.h>

#include "model/config.h"
#include "model/ops.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int deberta_rel_bucket(int delta, int buckets, int max_position) {
    if (buckets <= 0 || max_position <= 0) return delta;
    int mid = buckets / 2;
    int a = delta < 0 ? -delta : delta;
    if (a <= mid) return delta;
    /* float32 throughout, as torch evaluates it on a long tensor */
    float ratio = logf((float)a / (float)mid) / logf((float)((double)(max_position - 1) / mid));
    int log_pos = (int)ceilf(ratio * (float)(mid - 1)) + mid;
    return delta < 0 ? -log_pos : log_pos;
}

void deberta_rel_index(int32_t *idx, int seq, int span, int buckets, int max_position) {
    for (int i = 0; i < seq; i++)
        for (int j = 0; j < seq; j++) {
            int r = deberta_rel_bucket(i - j, buckets, max_position) + span;
            idx[(size_t)i * seq + j] = r < 0 ? 0 : r > 2 * span - 1 ? 2 * span - 1 : r;
        }
}

size_t deberta_attn_probs_floats(const deberta_attn_opts *o) {
    return (size_t)o->batch * o->heads * o->seq * o->seq;
}

/* the dropped-out probabilities and their gradient, one head at a time */
size_t deberta_attn_scratch_floats(const deberta_attn_opts *o) {
    return 2 * (size_t)o->seq * o->seq;
}

/* Lanes of the baseline ISA (this file is not multi-ISA): the sum's order
 * is fixed by the compiler's vector width, the same on every run. */
static float dot(const float *a, const float *b, int n) {
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int t = 0; t < n; t++) s += a[t] * b[t];
    return s;
}

static void axpy(float *y, float a, const float *x, int n) {
#pragma omp simd
    for (int t = 0; t < n; t++) y[t] += a * x[t];
}

static void count(aflo_flops *flops, aflo_flop_kind kind, const deberta_attn_opts *o,
                  int products) {
    if (!flops) return;
    flops->by_kind[kind] += (uint64_t)products * 2ULL * (uint64_t)o->seq * (uint64_t)o->seq *
                            (uint64_t)o->head_dim * (uint64_t)o->heads * (uint64_t)o->batch;
}

static int pos_terms(unsigned pos) {
    return ((pos & CONFIG_POS_C2P) != 0) + ((pos & CONFIG_POS_P2C) != 0);
}

/* The probabilities of head (b, h), dropped out into pd (p 0: pd = probs). */
static const float *dropped(const deberta_attn_opts *o, int b, int h, const float *probs,
                            float *pd) {
    if (o->dropout <= 0.0f) return probs;
    dropout_forward(pd, probs, (size_t)o->seq * o->seq, o->dropout, o->dropout_seed,
                    o->dropout_stream + (uint64_t)b * o->heads + (uint64_t)h);
    return pd;
}

static void forward_unit(const deberta_attn_opts *o, int b, int h, float *ctx, float *probs,
                         const float *q, const float *k, const float *v, const float *qr,
                         const float *kr, float *scratch) {
    const int S = o->seq, d = o->head_dim, ld = o->ld;
    const bool c2p = o->pos & CONFIG_POS_C2P, p2c = o->pos & CONFIG_POS_P2C;
    const uint8_t *mask = o->mask + (size_t)b * S;
    float *P = probs + ((size_t)b * o->heads + h) * S * S;
    const size_t col = (size_t)h * d;
    for (int i = 0; i < S; i++) {
        float *row = P + (size_t)i * S;
        if (!mask[i]) {
            memset(row, 0, (size_t)S * sizeof *row);
            continue;
        }
        const float *qi = q + ((size_t)b * S + i) * ld + col;
        float mx = -INFINITY;
        for (int j = 0; j < S; j++) {
            if (!mask[j]) continue;
            const float *kj = k + ((size_t)b * S + j) * ld + col;
            size_t r = (size_t)o->rel_idx[(size_t)i * S + j] * ld + col;
            float s = dot(qi, kj, d);
            if (c2p) s += dot(qi, kr + r, d);
            if (p2c) s += dot(kj, qr + r, d);
            row[j] = s * o->scale;
            if (row[j] > mx) mx = row[j];
        }
        float sum = 0.0f;
        for (int j = 0; j < S; j++) {
            row[j] = mask[j] ? expf(row[j] - mx) : 0.0f;
            sum += row[j];
        }
        for (int j = 0; j < S; j++) row[j] /= sum;
    }
    const float *pd = dropped(o, b, h, P, scratch);
    for (int i = 0; i < S; i++) {
        float *ci = ctx + ((size_t)b * S + i) * ld + col;
        memset(ci, 0, (size_t)d * sizeof *ci);
        for (int j = 0; j < S; j++) {
            float p = pd[(size_t)i * S + j];
            if (p != 0.0f) axpy(ci, p, v + ((size_t)b * S + j) * ld + col, d);
        }
    }
}

void deberta_attn_forward(const deberta_attn_opts *o, float *ctx, float *probs, const float *q,
                          const float *k, const float *v, const float *qr, const float *kr,
                          float *scratch, int scratch_threads, aflo_flops *flops) {
    assert(!(o->pos & CONFIG_POS_C2P) || kr);
    assert(!(o->pos & CONFIG_POS_P2C) || qr);
    const size_t per = deberta_attn_scratch_floats(o);
    const int units = o->batch * o->heads, nt = engine_team_size(units, scratch_threads);
    (void)nt; /* read only by the OpenMP pragma */
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
    for (int u = 0; u < units; u++)
        forward_unit(o, u / o->heads, u % o->heads, ctx, probs, q, k, v, qr, kr,
                     scratch + (size_t)engine_thread_id() * per);
    count(flops, FLOP_FORWARD, o, 2 + pos_terms(o->pos));
}

/* Head h over every sequence, in order: dq, dk, dv columns of head h and
 * its columns of dqr/dkr (zeroed here) belong to this thread alone. */
static void backward_head(const deberta_attn_opts *o, int h, float *dq, float *dk, float *dv,
                          float *dqr, float *dkr, const float *dctx, const float *probs,
                          const float *q, const float *k, const float *v, const float *qr,
                          const float *kr, float *scratch) {
    const int S = o->seq, d = o->head_dim, ld = o->ld;
    const bool c2p = o->pos & CONFIG_POS_C2P, p2c = o->pos & CONFIG_POS_P2C;
    const size_t col = (size_t)h * d;
    float *pd = scratch, *dp = scratch + (size_t)S * S;
    for (int r = 0; r < 2 * o->span; r++) {
        if (c2p) memset(dkr + (size_t)r * ld + col, 0, (size_t)d * sizeof(float));
        if (p2c) memset(dqr + (size_t)r * ld + col, 0, (size_t)d * sizeof(float));
    }
    for (int b = 0; b < o->batch; b++) {
        const uint8_t *mask = o->mask + (size_t)b * S;
        const float *P = probs + ((size_t)b * o->heads + h) * S * S;
        const float *Pd = dropped(o, b, h, P, pd);
        for (int t = 0; t < S; t++) {
            size_t row = ((size_t)b * S + t) * ld + col;
            memset(dq + row, 0, (size_t)d * sizeof(float));
            memset(dk + row, 0, (size_t)d * sizeof(float));
            memset(dv + row, 0, (size_t)d * sizeof(float));
        }
        /* dv_j = sum_i Pd_ij dctx_i; dPd_ij = dctx_i . v_j */
        for (int i = 0; i < S; i++) {
            const float *gi = dctx + ((size_t)b * S + i) * ld + col;
            for (int j = 0; j < S; j++) {
                float p = Pd[(size_t)i * S + j];
                if (p != 0.0f) axpy(dv + ((size_t)b * S + j) * ld + col, p, gi, d);
                dp[(size_t)i * S + j] =
                    mask[i] && mask[j] ? dot(gi, v + ((size_t)b * S + j) * ld + col, d) : 0.0f;
            }
        }
        if (o->dropout > 0.0f)
            dropout_backward(dp, dp, (size_t)S * S, o->dropout, o->dropout_seed,
                             o->dropout_stream + (uint64_t)b * o->heads + (uint64_t)h);
        for (int i = 0; i < S; i++) {
            if (!mask[i]) continue;
            const float *pi = P + (size_t)i * S;
            float *gi = dp + (size_t)i * S;
            float acc = 0.0f;
            for (int j = 0; j < S; j++) acc += pi[j] * gi[j];
            /* dS = P (dP - sum P dP), times the scale the scores carried */
            for (int j = 0; j < S; j++) gi[j] = pi[j] * (gi[j] - acc) * o->scale;
            const float *qi = q + ((size_t)b * S + i) * ld + col;
            float *dqi = dq + ((size_t)b * S + i) * ld + col;
            for (int j = 0; j < S; j++) {
                float g = gi[j];
                if (g == 0.0f) continue;
                size_t rj = ((size_t)b * S + j) * ld + col;
                size_t r = (size_t)o->rel_idx[(size_t)i * S + j] * ld + col;
                axpy(dqi, g, k + rj, d);
                axpy(dk + rj, g, qi, d);
                if (c2p) {
                    axpy(dqi, g, kr + r, d);
                    axpy(dkr + r, g, qi, d);
                }
                if (p2c) {
                    axpy(dk + rj, g, qr + r, d);
                    axpy(dqr + r, g, k + rj, d);
                }
            }
        }
    }
}

void deberta_attn_backward(const deberta_attn_opts *o, float *dq, float *dk, float *dv, float *dqr,
                           float *dkr, const float *dctx, const float *probs, const float *q,
                           const float *k, const float *v, const float *qr, const float *kr,
                           float *scratch, int scratch_threads, aflo_flops *flops) {
    assert(!(o->pos & CONFIG_POS_C2P) || (kr && dkr));
    assert(!(o->pos & CONFIG_POS_P2C) || (qr && dqr));
    const size_t per = deberta_attn_scratch_floats(o);
    const int nt = engine_team_size(o->heads, scratch_threads);
    (void)nt;
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
    for (int h = 0; h < o->heads; h++)
        backward_head(o, h, dq, dk, dv, dqr, dkr, dctx, probs, q, k, v, qr, kr,
                      scratch + (size_t)engine_thread_id() * per);
    count(flops, FLOP_BACKWARD_INPUT, o, 4 + 2 * pos_terms(o->pos));
}
