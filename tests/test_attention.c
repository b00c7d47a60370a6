/* test_attention.c — the fused attention kernel (engine/model/attention.h)
 * at every ISA level the CPU runs, against a double-precision reference:
 * - forward (output and log-sum-exp) and backward (dq, dk, dv) over a table
 *   of cases: key padding by mask and by lengths, causal, sliding window
 *   (causal and two-sided), grouped-query and multi-query heads, q/k/v in
 *   one fused strided buffer or apart, attention dropout, T = 1, T not a
 *   multiple of the block or the padding, several query blocks (later ones
 *   skipping key tiles), head dim 4/8/16/64, query rows that see no key;
 * - the dropout mask is ops.c's dropout_forward on each head's T x T matrix;
 * - the reference's gradients against central finite differences, and the
 *   kernel's gradients against finite differences of the reference's loss;
 * - columns outside the heads' (gaps in strided buffers) are never written;
 * - the same bits for 1 and 2 threads; FLOPs as the per-head GEMMs count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "base/isa.h"
#include "base/rng.h"
#include "model/attention.h"
#include "model/gemm.h"
#include "model/ops.h"

#define SEED 0xa77e11ULL
#define STREAM ((uint64_t)5 << 20)
/* fp32 against double on O(1) values summed over <= 130 keys. */
#define TOL_FWD 3e-5
#define TOL_BWD 2e-4
#define SENTINEL 12345.0f

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    if (!p) fail_msg("out of memory");
    return p;
}

static void fill(float *a, size_t n, uint64_t seed, float lo, float hi) {
    aflo_rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) a[i] = rng_uniform_range(&r, lo, hi);
}

static void select_level(int level) {
    char err[128];
    if (isa_select((aflo_isa)level, err, sizeof err) != 0) fail_msg("%s", err);
}

typedef struct {
    const char *name;
    int B, nH, nKV, T, d;
    int pad; /* 0 none; 1 key_mask with a padded tail; 2 key_lens; 3 mask with holes and a
                     masked first key */
    bool causal;
    int window;
    float dropout;
    bool fused;  /* q, k, v in one buffer (else apart); both with gap columns */
    float scale; /* 0: 1/sqrt(d) */
} tcase;

static const tcase cases[] = {
    {"bert-like padded", 2, 3, 3, 37, 16, 1, false, 0, 0.0f, false, 0},
    {"T=1", 2, 2, 2, 1, 8, 0, false, 0, 0.0f, false, 0},
    {"T=130 d=64", 1, 2, 2, 130, 64, 1, false, 0, 0.0f, true, 0},
    {"T=64 d=64 block", 2, 1, 1, 64, 64, 0, false, 0, 0.0f, false, 0},
    {"causal GQA", 2, 4, 2, 70, 16, 0, true, 0, 0.0f, true, 0},
    {"causal window", 1, 2, 2, 50, 8, 2, true, 5, 0.0f, false, 0},
    {"two-sided window lens", 2, 2, 2, 45, 16, 2, false, 7, 0.0f, true, 0},
    {"dropout padded fused", 2, 3, 3, 40, 16, 1, false, 0, 0.2f, true, 0},
    {"MQA causal window dropout", 1, 6, 1, 33, 64, 0, true, 9, 0.1f, false, 0},
    {"holes, empty rows", 2, 2, 2, 29, 8, 3, true, 0, 0.0f, false, 0},
    {"head dim 4", 2, 2, 2, 7, 4, 1, false, 0, 0.3f, false, 0.7f},
    {"drop all", 1, 1, 1, 9, 8, 0, false, 0, 1.0f, false, 0},
    /* several query blocks, later ones skipping key tiles */
    {"causal multi-block", 1, 2, 2, 200, 16, 1, true, 0, 0.1f, false, 0},
    {"window multi-block GQA", 1, 4, 2, 300, 8, 0, true, 40, 0.0f, true, 0},
};
#define NCASES ((int)(sizeof cases / sizeof *cases))

/* ---------------------------------------------------------------- problem */

typedef struct {
    const tcase *c;
    attention_opts o;
    int qcols, kcols; /* nH*d, nKV*d */
    /* inputs */
    float *qkv; /* fused buffer, or q's */
    float *kbuf, *vbuf;
    attention_rows q, k, v;
    uint8_t *mask;
    int *lens;
    float *dout; /* ld = qcols + 3 */
    attention_rows dO;
    /* outputs (gap columns hold SENTINEL) */
    float *out, *lse, *dq, *dk, *dv;
    attention_rows O, dQ, dK, dV;
    float *scratch;
    int scratch_threads;
} problem;

static size_t rows_of(const problem *p) { return (size_t)p->c->B * p->c->T; }

static float *sentinel_buf(size_t n) {
    float *a = xmalloc(n * sizeof *a);
    for (size_t i = 0; i < n; i++) a[i] = SENTINEL;
    return a;
}

static void problem_init(problem *p, const tcase *c, uint64_t seed) {
    memset(p, 0, sizeof *p);
    p->c = c;
    int d = c->d, N = c->B * c->T;
    p->qcols = c->nH * d;
    p->kcols = c->nKV * d;
    attention_opts *o = &p->o;
    o->batch = c->B;
    o->heads = c->nH;
    o->kv_heads = c->nKV;
    o->seq = c->T;
    o->head_dim = d;
    o->scale = c->scale > 0 ? c->scale : 1.0f / sqrtf((float)d);
    o->causal = c->causal;
    o->window = c->window;
    o->dropout = c->dropout;
    o->dropout_seed = SEED;
    o->dropout_stream = STREAM;
    if (c->fused) {
        int ld = p->qcols + 2 * p->kcols + 5; /* odd stride, a gap at the end */
        p->qkv = xmalloc((size_t)N * ld * sizeof(float));
        fill(p->qkv, (size_t)N * ld, seed, -1.5f, 1.5f);
        p->q = (attention_rows){p->qkv, ld};
        p->k = (attention_rows){p->qkv + p->qcols, ld};
        p->v = (attention_rows){p->qkv + p->qcols + p->kcols, ld};
    } else {
        p->qkv = xmalloc((size_t)N * p->qcols * sizeof(float));
        p->kbuf = xmalloc((size_t)N * (p->kcols + 1) * sizeof(float));
        p->vbuf = xmalloc((size_t)N * p->kcols * sizeof(float));
        fill(p->qkv, (size_t)N * p->qcols, seed, -1.5f, 1.5f);
        fill(p->kbuf, (size_t)N * (p->kcols + 1), seed + 1, -1.5f, 1.5f);
        fill(p->vbuf, (size_t)N * p->kcols, seed + 2, -1.0f, 1.0f);
        p->q = (attention_rows){p->qkv, p->qcols};
        p->k = (attention_rows){p->kbuf, p->kcols + 1};
        p->v = (attention_rows){p->vbuf, p->kcols};
    }
    if (c->pad == 1 || c->pad == 3) {
        p->mask = xmalloc((size_t)N);
        for (int b = 0; b < c->B; b++)
            for (int t = 0; t < c->T; t++) {
                int len = c->T - 3 * b - (c->T > 4 ? 2 : 0);
                uint8_t m = t < (len > 1 ? len : 1);
                if (c->pad == 3) m = (t % 3 != 1) && t >= 2 + b; /* first keys masked */
                p->mask[b * c->T + t] = m;
            }
        o->key_mask = p->mask;
    }
    if (c->pad == 2) {
        p->lens = xmalloc((size_t)c->B * sizeof *p->lens);
        for (int b = 0; b < c->B; b++) p->lens[b] = c->T - 4 * b - 1;
        o->key_lens = p->lens;
    }
    int ldo = p->qcols + 3;
    p->dout = xmalloc((size_t)N * ldo * sizeof(float));
    fill(p->dout, (size_t)N * ldo, seed + 3, -1.0f, 1.0f);
    p->dO = (attention_rows){p->dout, ldo};
    p->out = sentinel_buf((size_t)N * (p->qcols + 2));
    p->O = (attention_rows){p->out, p->qcols + 2};
    p->lse = sentinel_buf((size_t)N * c->nH);
    p->dq = sentinel_buf((size_t)N * (p->qcols + 1));
    p->dQ = (attention_rows){p->dq, p->qcols + 1};
    p->dk = sentinel_buf((size_t)N * (p->kcols + 2));
    p->dK = (attention_rows){p->dk, p->kcols + 2};
    p->dv = sentinel_buf((size_t)N * (p->kcols + 3));
    p->dV = (attention_rows){p->dv, p->kcols + 3};
    p->scratch_threads = 2;
    p->scratch = xmalloc(attention_scratch_floats(o) * 2 * sizeof(float));
}

static void problem_free(problem *p) {
    free(p->qkv);
    free(p->kbuf);
    free(p->vbuf);
    free(p->mask);
    free(p->lens);
    free(p->dout);
    free(p->out);
    free(p->lse);
    free(p->dq);
    free(p->dk);
    free(p->dv);
    free(p->scratch);
}

static void run_forward(problem *p, aflo_flops *f) {
    attention_forward(&p->o, p->O, p->lse, p->q, p->k, p->v, p->scratch, p->scratch_threads, f);
}

static void run_backward(problem *p, aflo_flops *f) {
    attention_backward(&p->o, p->dQ, p->dK, p->dV, p->dO, p->O, p->lse, p->q, p->k, p->v,
                       p->scratch, p->scratch_threads, f);
}

/* ---------------------------------------------------------------- reference */

static double at(attention_rows t, int row, int col) { return t.data[(size_t)row * t.ld + col]; }

/* keep(i, j) of head (b, h) times 1/(1-p): ops.c's dropout on the T x T matrix of ones. */
static void ref_dropmask(const problem *p, int b, int h, float *m) {
    const attention_opts *o = &p->o;
    size_t TT = (size_t)o->seq * o->seq;
    for (size_t i = 0; i < TT; i++) m[i] = 1.0f;
    if (o->dropout > 0.0f)
        dropout_forward(m, m, TT, o->dropout, o->dropout_seed,
                        o->dropout_stream + (uint64_t)b * o->heads + (uint64_t)h);
}

static bool ref_visible(const problem *p, int b, int i, int j) {
    const attention_opts *o = &p->o;
    if (o->key_mask && !o->key_mask[b * o->seq + j]) return false;
    if (o->key_lens && j >= o->key_lens[b]) return false;
    if (o->causal && j > i) return false;
    if (o->window > 0) {
        if (i - j >= o->window) return false;
        if (!o->causal && j - i >= o->window) return false;
    }
    return true;
}

/* Double forward and backward of one problem (inputs may be perturbed in
 * qd/kd/vd: double copies of q, k, v as [row][col] of qcols/kcols).
 * Outputs: O [N][qcols], lse [B][nH][T]; gradients of sum(dO o O) when
 * dq != NULL. */
typedef struct {
    double *q, *k, *v, *dout;       /* inputs, dense */
    double *O, *lse, *dq, *dk, *dv; /* outputs, dense */
} ref_bufs;

static void ref_alloc(ref_bufs *r, const problem *p) {
    size_t N = rows_of(p);
    r->q = xmalloc(N * p->qcols * sizeof(double));
    r->k = xmalloc(N * p->kcols * sizeof(double));
    r->v = xmalloc(N * p->kcols * sizeof(double));
    r->dout = xmalloc(N * p->qcols * sizeof(double));
    r->O = xmalloc(N * p->qcols * sizeof(double));
    r->lse = xmalloc(N * p->c->nH * sizeof(double));
    r->dq = xmalloc(N * p->qcols * sizeof(double));
    r->dk = xmalloc(N * p->kcols * sizeof(double));
    r->dv = xmalloc(N * p->kcols * sizeof(double));
    for (size_t n = 0; n < N; n++) {
        for (int c = 0; c < p->qcols; c++) {
            r->q[n * p->qcols + c] = at(p->q, (int)n, c);
            r->dout[n * p->qcols + c] = at(p->dO, (int)n, c);
        }
        for (int c = 0; c < p->kcols; c++) {
            r->k[n * p->kcols + c] = at(p->k, (int)n, c);
            r->v[n * p->kcols + c] = at(p->v, (int)n, c);
        }
    }
}

static void ref_free(ref_bufs *r) {
    free(r->q);
    free(r->k);
    free(r->v);
    free(r->dout);
    free(r->O);
    free(r->lse);
    free(r->dq);
    free(r->dk);
    free(r->dv);
}

static void ref_run(const problem *p, ref_bufs *r, bool grads) {
    const attention_opts *o = &p->o;
    int T = o->seq, d = o->head_dim, group = o->heads / o->kv_heads;
    int QC = p->qcols, KC = p->kcols;
    size_t N = rows_of(p);
    double scale = o->scale;
    double *P = xmalloc((size_t)T * T * sizeof(double));
    double *dP = xmalloc((size_t)T * T * sizeof(double));
    float *keep = xmalloc((size_t)T * T * sizeof(float));
    if (grads) {
        memset(r->dq, 0, N * QC * sizeof(double));
        memset(r->dk, 0, N * KC * sizeof(double));
        memset(r->dv, 0, N * KC * sizeof(double));
    }
    for (int b = 0; b < o->batch; b++)
        for (int h = 0; h < o->heads; h++) {
            int kh = h / group;
            ref_dropmask(p, b, h, keep);
            const double *q = r->q + (size_t)b * T * QC + (size_t)h * d;
            const double *k = r->k + (size_t)b * T * KC + (size_t)kh * d;
            const double *v = r->v + (size_t)b * T * KC + (size_t)kh * d;
            const double *dO = r->dout + (size_t)b * T * QC + (size_t)h * d;
            double *O = r->O + (size_t)b * T * QC + (size_t)h * d;
            for (int i = 0; i < T; i++) {
                double mx = -INFINITY;
                for (int j = 0; j < T; j++) {
                    double s = -INFINITY;
                    if (ref_visible(p, b, i, j)) {
                        s = 0;
                        for (int c = 0; c < d; c++)
                            s += q[(size_t)i * QC + c] * k[(size_t)j * KC + c];
                        s *= scale;
                    }
                    P[(size_t)i * T + j] = s;
                    if (s > mx) mx = s;
                }
                double sum = 0;
                for (int j = 0; j < T; j++) {
                    double e = mx == -INFINITY ? 0.0 : exp(P[(size_t)i * T + j] - mx);
                    P[(size_t)i * T + j] = e;
                    sum += e;
                }
                r->lse[((size_t)b * o->heads + h) * T + i] =
                    mx == -INFINITY ? INFINITY : mx + log(sum);
                for (int j = 0; j < T; j++)
                    P[(size_t)i * T + j] = sum > 0 ? P[(size_t)i * T + j] / sum : 0;
                for (int c = 0; c < d; c++) {
                    double t = 0;
                    for (int j = 0; j < T; j++)
                        t += P[(size_t)i * T + j] * keep[(size_t)i * T + j] * v[(size_t)j * KC + c];
                    O[(size_t)i * QC + c] = t;
                }
            }
            if (!grads) continue;
            double *dq = r->dq + (size_t)b * T * QC + (size_t)h * d;
            double *dk = r->dk + (size_t)b * T * KC + (size_t)kh * d;
            double *dv = r->dv + (size_t)b * T * KC + (size_t)kh * d;
            for (int i = 0; i < T; i++) {
                double dot = 0;
                for (int j = 0; j < T; j++) {
                    double t = 0;
                    for (int c = 0; c < d; c++) t += dO[(size_t)i * QC + c] * v[(size_t)j * KC + c];
                    t *= keep[(size_t)i * T + j];
                    dP[(size_t)i * T + j] = t;
                    dot += t * P[(size_t)i * T + j];
                }
                for (int j = 0; j < T; j++) {
                    double pij = P[(size_t)i * T + j];
                    double ds = pij * (dP[(size_t)i * T + j] - dot) * scale;
                    double pd = pij * keep[(size_t)i * T + j];
                    for (int c = 0; c < d; c++) {
                        dq[(size_t)i * QC + c] += ds * k[(size_t)j * KC + c];
                        dk[(size_t)j * KC + c] += ds * q[(size_t)i * QC + c];
                        dv[(size_t)j * KC + c] += pd * dO[(size_t)i * QC + c];
                    }
                }
            }
        }
    free(P);
    free(dP);
    free(keep);
}

/* ---------------------------------------------------------------- checks */

static void near(double got, double want, double tol, const char *what, const tcase *c, int row,
                 int col) {
    if (!(fabs(got - want) <= tol * (1.0 + fabs(want))))
        fail_msg("%s [%s] at %s row %d col %d: got %.9g, want %.9g", what, isa_name(isa_level()),
                 c->name, row, col, got, want);
}

static void check_gaps(attention_rows t, int used, int rows, const char *what, const tcase *c) {
    for (int n = 0; n < rows; n++)
        for (int col = used; col < t.ld; col++)
            if (t.data[(size_t)n * t.ld + col] != SENTINEL)
                fail_msg("%s [%s]: gap column %d of row %d written", what, c->name, col, n);
}

static void check_case(const tcase *c) {
    problem p;
    problem_init(&p, c, 1000 + (uint64_t)(c - cases));
    ref_bufs r;
    ref_alloc(&r, &p);
    ref_run(&p, &r, true);
    int N = (int)rows_of(&p);
    run_forward(&p, NULL);
    run_backward(&p, NULL);
    for (int n = 0; n < N; n++) {
        for (int col = 0; col < p.qcols; col++) {
            near(at(p.O, n, col), r.O[(size_t)n * p.qcols + col], TOL_FWD, "out", c, n, col);
            near(at(p.dQ, n, col), r.dq[(size_t)n * p.qcols + col], TOL_BWD, "dq", c, n, col);
        }
        for (int col = 0; col < p.kcols; col++) {
            near(at(p.dK, n, col), r.dk[(size_t)n * p.kcols + col], TOL_BWD, "dk", c, n, col);
            near(at(p.dV, n, col), r.dv[(size_t)n * p.kcols + col], TOL_BWD, "dv", c, n, col);
        }
    }
    for (size_t i = 0; i < (size_t)N * c->nH; i++) {
        if (isinf(r.lse[i])) {
            if (!isinf(p.lse[i])) fail_msg("lse [%s] %zu: want +inf, got %g", c->name, i, p.lse[i]);
        } else {
            near(p.lse[i], r.lse[i], TOL_FWD, "lse", c, (int)i, 0);
        }
    }
    check_gaps(p.O, p.qcols, N, "out", c);
    check_gaps(p.dQ, p.qcols, N, "dq", c);
    check_gaps(p.dK, p.kcols, N, "dk", c);
    check_gaps(p.dV, p.kcols, N, "dv", c);
    ref_free(&r);
    problem_free(&p);
}

static void for_each_level(void (*fn)(void)) {
    aflo_isa before = isa_level();
    int ran = 0;
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        fn();
        ran++;
    }
    select_level(before);
    assert_true(ran >= 1);
}

static void all_cases(void) {
    for (int i = 0; i < NCASES; i++) check_case(&cases[i]);
}

static void test_against_double_reference(void **s) {
    (void)s;
    for_each_level(all_cases);
}

/* The reference's gradients are the derivatives of its loss sum(dO o O):
 * central differences in double on a tiny case with every option on. */
static const tcase fd_case = {"fd", 1, 2, 1, 6, 4, 1, true, 4, 0.25f, true, 0};

static double ref_loss(const problem *p, ref_bufs *r) {
    ref_run(p, r, false);
    double L = 0;
    for (size_t i = 0; i < rows_of(p) * p->qcols; i++) L += r->O[i] * r->dout[i];
    return L;
}

static void fd_check(problem *p, ref_bufs *r, double *x, size_t n, const double *ana,
                     attention_rows kt, int cols, const char *what) {
    const double h = 1e-5;
    for (size_t i = 0; i < n; i++) {
        double keepv = x[i];
        x[i] = keepv + h;
        double lp = ref_loss(p, r);
        x[i] = keepv - h;
        double lm = ref_loss(p, r);
        x[i] = keepv;
        double fd = (lp - lm) / (2 * h);
        if (!(fabs(ana[i] - fd) <= 1e-6 * (1 + fabs(fd))))
            fail_msg("reference %s[%zu]: analytic %.9g, finite difference %.9g", what, i, ana[i],
                     fd);
        double got = at(kt, (int)(i / cols), (int)(i % cols));
        if (!(fabs(got - fd) <= 1e-4 * (1 + fabs(fd))))
            fail_msg("kernel %s[%zu] [%s]: %.9g, finite difference %.9g", what, i,
                     isa_name(isa_level()), got, fd);
    }
}

static void fd_level(void) {
    problem p;
    problem_init(&p, &fd_case, 77);
    ref_bufs r;
    ref_alloc(&r, &p);
    ref_run(&p, &r, true);
    size_t N = rows_of(&p);
    double *dq = xmalloc(N * p.qcols * sizeof(double)), *dk = xmalloc(N * p.kcols * sizeof(double)),
           *dv = xmalloc(N * p.kcols * sizeof(double));
    memcpy(dq, r.dq, N * p.qcols * sizeof(double));
    memcpy(dk, r.dk, N * p.kcols * sizeof(double));
    memcpy(dv, r.dv, N * p.kcols * sizeof(double));
    run_forward(&p, NULL);
    run_backward(&p, NULL);
    fd_check(&p, &r, r.q, N * p.qcols, dq, p.dQ, p.qcols, "dq");
    fd_check(&p, &r, r.k, N * p.kcols, dk, p.dK, p.kcols, "dk");
    fd_check(&p, &r, r.v, N * p.kcols, dv, p.dV, p.kcols, "dv");
    free(dq);
    free(dk);
    free(dv);
    ref_free(&r);
    problem_free(&p);
}

static void test_finite_differences(void **s) {
    (void)s;
    for_each_level(fd_level);
}

/* 1 and 2 threads (and 1 or 2 scratch slices) give the same bits. */
static void threads_level(void) {
    for (int ci = 0; ci < NCASES; ci++) {
        problem a, b;
        problem_init(&a, &cases[ci], 31);
        problem_init(&b, &cases[ci], 31);
        engine_set_threads(1);
        run_forward(&a, NULL);
        run_backward(&a, NULL);
        engine_set_threads(2);
        b.scratch_threads = ci % 2 ? 2 : 1;
        run_forward(&b, NULL);
        run_backward(&b, NULL);
        size_t N = rows_of(&a);
        assert_memory_equal(a.out, b.out, N * a.O.ld * sizeof(float));
        assert_memory_equal(a.lse, b.lse, N * cases[ci].nH * sizeof(float));
        assert_memory_equal(a.dq, b.dq, N * a.dQ.ld * sizeof(float));
        assert_memory_equal(a.dk, b.dk, N * a.dK.ld * sizeof(float));
        assert_memory_equal(a.dv, b.dv, N * a.dV.ld * sizeof(float));
        problem_free(&a);
        problem_free(&b);
    }
    engine_set_threads(1);
}

static void test_thread_count_invariant(void **s) {
    (void)s;
    for_each_level(threads_level);
}

/* FLOPs: 2 (forward) and 4 (backward) dense products of 2*T*T*d per head. */
static void test_flops_as_gemms(void **s) {
    (void)s;
    problem p;
    problem_init(&p, &cases[4], 5); /* causal GQA: still the dense count */
    aflo_flops f;
    memset(&f, 0, sizeof f);
    run_forward(&p, &f);
    uint64_t one = 2ULL * 70 * 70 * 16 * 4 * 2; /* 2*T*T*d * heads * batch */
    assert_int_equal(f.by_kind[FLOP_FORWARD], 2 * one);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_INPUT], 0);
    run_backward(&p, &f);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_INPUT], 4 * one);
    assert_int_equal(f.by_kind[FLOP_BACKWARD_WEIGHT], 0);
    problem_free(&p);
}

/* A row that sees no key: output 0, lse +inf, and no gradient flows. */
static void test_row_without_keys(void **s) {
    (void)s;
    problem p;
    problem_init(&p, &cases[9], 9); /* causal, first keys masked */
    run_forward(&p, NULL);
    run_backward(&p, NULL);
    assert_true(isinf(p.lse[0]) && p.lse[0] > 0); /* batch 0, head 0, row 0 */
    for (int c = 0; c < p.qcols; c++) {
        assert_true(at(p.O, 0, c) == 0.0f);
        assert_true(at(p.dQ, 0, c) == 0.0f);
    }
    problem_free(&p);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_against_double_reference), cmocka_unit_test(test_finite_differences),
        cmocka_unit_test(test_thread_count_invariant),   cmocka_unit_test(test_flops_as_gemms),
        cmocka_unit_test(test_row_without_keys),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
