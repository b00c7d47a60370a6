/* attention.c — the attention module (attention.h): checks the shapes,
 * prepares the job, splits the (batch, kv head) units among the engine's
 * threads, each on its own slice of scratch, and runs attention_kern.c's
 * unit kernels at the engine's ISA level. Counts the FLOPs. */
#include "model/attention.h"

#include <assert.h>
#include <math.h>
#include <unistd.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "base/rng.h"
#include "model/attention_kern.h"

static const attention_kernels *const variants[ISA_COUNT] = {
    &attention_kernels_base, &attention_kernels_avx2, &attention_kernels_avx512};

static void check_opts(const attention_opts *o) {
    assert(o->batch >= 1 && o->seq >= 1 && o->head_dim >= 1);
    assert(o->heads >= 1 && o->kv_heads >= 1 && o->heads % o->kv_heads == 0);
    assert(o->window >= 0 && o->dropout >= 0.0f);
    /* the per-head dropout counter is (stream << 32) + i*seq + j */
    assert((uint64_t)o->seq * (uint64_t)o->seq <= ((uint64_t)1 << 32));
    (void)o;
}

static void check_rows(attention_rows t, int heads, int d) {
    assert(t.data && t.ld >= heads * d);
    (void)t;
    (void)heads;
    (void)d;
}

size_t attention_scratch_floats(const attention_opts *o) {
    int Tp = attn_roundup(o->seq, ATTN_PAD), dp = attn_roundup(o->head_dim, ATTN_PAD);
    return attention_scratch_layout(Tp, dp, o->head_dim).total;
}

int attention_max_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static attention_job job_of(const attention_opts *o) {
    attention_job j = {.o = *o};
    j.Tp = attn_roundup(o->seq, ATTN_PAD);
    j.dp = attn_roundup(o->head_dim, ATTN_PAD);
    j.group = o->heads / o->kv_heads;
    if (o->dropout > 0.0f) {
        j.drop_on = 1;
        j.drop_thr = rng_drop_threshold(o->dropout);
        j.drop_scale = rng_drop_scale(o->dropout);
    }
    return j;
}

static void count(aflo_flops *flops, aflo_flop_kind kind, const attention_opts *o, int products) {
    if (!flops) return;
    flops->by_kind[kind] += (uint64_t)products * 2ULL * (uint64_t)o->seq * (uint64_t)o->seq *
                            (uint64_t)o->head_dim * (uint64_t)o->heads * (uint64_t)o->batch;
}

void attention_forward(const attention_opts *o, attention_rows out, float *lse, attention_rows q,
                       attention_rows k, attention_rows v, float *scratch, int scratch_threads,
                       aflo_flops *flops) {
    check_opts(o);
    check_rows(q, o->heads, o->head_dim);
    check_rows(k, o->kv_heads, o->head_dim);
    check_rows(v, o->kv_heads, o->head_dim);
    check_rows(out, o->heads, o->head_dim);
    assert(lse && scratch && scratch_threads >= 1);
    const attention_kernels *kern = variants[isa_level()];
    attention_job j = job_of(o);
    j.q = q;
    j.k = k;
    j.v = v;
    j.out = out;
    j.lse = lse;
    const size_t per = attention_scratch_floats(o);
    const int units = o->batch * o->kv_heads, nt = engine_team_size(units, scratch_threads);
    (void)nt; /* read only by the OpenMP pragma; unused in builds without -fopenmp */
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
    for (int u = 0; u < units; u++)
        kern->forward_unit(&j, u / o->kv_heads, u % o->kv_heads,
                           scratch + (size_t)engine_thread_id() * per);
    count(flops, FLOP_FORWARD, o, 2); /* Q K^T and P V */
}

void attention_backward(const attention_opts *o, attention_rows dq, attention_rows dk,
                        attention_rows dv, attention_rows dout, attention_rows out,
                        const float *lse, attention_rows q, attention_rows k, attention_rows v,
                        float *scratch, int scratch_threads, aflo_flops *flops) {
    check_opts(o);
    check_rows(q, o->heads, o->head_dim);
    check_rows(k, o->kv_heads, o->head_dim);
    check_rows(v, o->kv_heads, o->head_dim);
    check_rows(out, o->heads, o->head_dim);
    check_rows(dout, o->heads, o->head_dim);
    check_rows(dq, o->heads, o->head_dim);
    check_rows(dk, o->kv_heads, o->head_dim);
    check_rows(dv, o->kv_heads, o->head_dim);
    assert(lse && scratch && scratch_threads >= 1);
    const attention_kernels *kern = variants[isa_level()];
    attention_job j = job_of(o);
    j.q = q;
    j.k = k;
    j.v = v;
    j.out = out;
    j.dout = dout;
    j.dq = dq;
    j.dk = dk;
    j.dv = dv;
    j.lse = (float *)lse; /* read only in backward */
    const size_t per = attention_scratch_floats(o);
    const int units = o->batch * o->kv_heads, nt = engine_team_size(units, scratch_threads);
    (void)nt; /* read only by the OpenMP pragma; unused in builds without -fopenmp */
#pragma omp parallel for schedule(dynamic) num_threads(nt) if (nt > 1)
    for (int u = 0; u < units; u++)
        kern->backward_unit(&j, u / o->kv_heads, u % o->kv_heads,
                            scratch + (size_t)engine_thread_id() * per);
    count(flops, FLOP_BACKWARD_INPUT, o, 4); /* dO V^T, P^T dO, dS K, dS^T Q */
}
