/* test_resnorm.c — the fused residual / dropout / LayerNorm passes
 * (engine/model/resnorm.h) at every ISA level the CPU runs, dropout on and
 * off:
 * - forward against a double LayerNorm of x + dropout(y), with the residual
 *   bit-identical to ops.c's dropout_forward (same mask, same scaling);
 * - backward against a double reference, itself checked by central finite
 *   differences; dy bit-identical to ops.c's dropout_backward of dres;
 *   dgamma/dbeta accumulate;
 * - the embedding sum + LayerNorm + dropout against ops.c's unfused calls;
 * - the same bits for 1 and 2 threads and at every level (fixed row blocks
 *   and fixed summation lanes). */
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
#include "model/gemm.h"
#include "model/ops.h"
#include "model/resnorm.h"

#define EPS 1e-12f
#define SEED 0x5eed5eedULL
#define STREAM 77
/* fp32 LayerNorm against double: a few ulps of O(1) outputs. */
#define TOL_FWD 2e-5
#define TOL_BWD 2e-4

static void *xmalloc(size_t n) {
    void *p = malloc(n);
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

static void assert_tol(double got, double want, double tol, const char *what, size_t i) {
    if (!(fabs(got - want) <= tol * (1.0 + fabs(want))))
        fail_msg("%s[%zu]: got %.9g, want %.9g", what, i, got, want);
}

/* Double LayerNorm forward of one row; xhat and rstd out. */
static void ln_ref_row(double *out, double *xhat, double *rstd, const double *r, const float *g,
                       const float *b, int C) {
    double m = 0, v = 0;
    for (int c = 0; c < C; c++) m += r[c];
    m /= C;
    for (int c = 0; c < C; c++) v += (r[c] - m) * (r[c] - m);
    double s = 1.0 / sqrt(v / C + (double)EPS);
    for (int c = 0; c < C; c++) {
        xhat[c] = (r[c] - m) * s;
        out[c] = xhat[c] * g[c] + b[c];
    }
    *rstd = s;
}

/* Double LayerNorm backward of one row: dr and the row's dgamma/dbeta terms. */
static void ln_ref_bwd_row(double *dr, double *dg, double *db, const double *dout,
                           const double *xhat, double rstd, const float *g, int C) {
    double mg = 0, mgx = 0;
    for (int c = 0; c < C; c++) {
        mg += dout[c] * g[c];
        mgx += dout[c] * g[c] * xhat[c];
        dg[c] += dout[c] * xhat[c];
        db[c] += dout[c];
    }
    mg /= C;
    mgx /= C;
    for (int c = 0; c < C; c++) dr[c] = rstd * (dout[c] * g[c] - mg - xhat[c] * mgx);
}

/* The double backward agrees with central differences of the double
 * forward (loss = sum w*out), so it can judge the fp32 kernels. */
static void test_reference_matches_finite_differences(void **state) {
    (void)state;
    enum { C = 9 };
    float x[C], g[C], b[C], wf[C];
    fill(x, C, 1, -2, 2);
    fill(g, C, 2, 0.5f, 1.5f);
    fill(b, C, 3, -0.5f, 0.5f);
    fill(wf, C, 4, -1, 1);
    double r[C], out[C], xhat[C], rstd, w[C], dr[C], dg[C] = {0}, db[C] = {0};
    for (int c = 0; c < C; c++) r[c] = x[c], w[c] = wf[c];
    ln_ref_row(out, xhat, &rstd, r, g, b, C);
    ln_ref_bwd_row(dr, dg, db, w, xhat, rstd, g, C);
    const double h = 1e-6;
    for (int c = 0; c < C; c++) {
        double lp = 0, lm = 0, o[C], xh[C], s;
        r[c] = x[c] + h;
        ln_ref_row(o, xh, &s, r, g, b, C);
        for (int k = 0; k < C; k++) lp += w[k] * o[k];
        r[c] = x[c] - h;
        ln_ref_row(o, xh, &s, r, g, b, C);
        for (int k = 0; k < C; k++) lm += w[k] * o[k];
        r[c] = x[c];
        assert_tol(dr[c], (lp - lm) / (2 * h), 1e-6, "fd dres", (size_t)c);
        /* dgamma: out is linear in gamma with slope xhat */
        assert_tol(dg[c], w[c] * xhat[c], 1e-12, "fd dgamma", (size_t)c);
    }
}

typedef struct {
    int N, C;
    float *x, *y, *gamma, *beta, *dout;
    float *out, *res, *mean, *rstd, *dres, *dy, *dg, *db, *scratch;
} fixture;

static void fixture_init(fixture *f, int N, int C) {
    size_t n = (size_t)N * C;
    f->N = N, f->C = C;
    f->x = xmalloc(n * 4), f->y = xmalloc(n * 4), f->dout = xmalloc(n * 4);
    f->gamma = xmalloc((size_t)C * 4), f->beta = xmalloc((size_t)C * 4);
    f->out = xmalloc(n * 4), f->res = xmalloc(n * 4), f->dres = xmalloc(n * 4);
    f->dy = xmalloc(n * 4);
    f->mean = xmalloc((size_t)N * 4), f->rstd = xmalloc((size_t)N * 4);
    f->dg = xmalloc((size_t)C * 4), f->db = xmalloc((size_t)C * 4);
    f->scratch = xmalloc(resnorm_scratch_floats(N, C) * 4);
    fill(f->x, n, 11, -2, 2);
    fill(f->y, n, 12, -1, 1);
    fill(f->dout, n, 13, -1, 1);
    fill(f->gamma, (size_t)C, 14, 0.5f, 1.5f);
    fill(f->beta, (size_t)C, 15, -0.5f, 0.5f);
}

static void fixture_free(fixture *f) {
    float *ps[] = {f->x,    f->y,  f->dout, f->gamma, f->beta, f->out, f->res,
                   f->dres, f->dy, f->mean, f->rstd,  f->dg,   f->db,  f->scratch};
    for (size_t i = 0; i < sizeof ps / sizeof *ps; i++) free(ps[i]);
}

/* Runs forward and backward at the current level and thread count. */
static void fixture_run(fixture *f, float p) {
    resnorm_forward(f->out, f->res, f->mean, f->rstd, f->x, f->y, f->gamma, f->beta, f->N, f->C,
                    EPS, p, SEED, STREAM);
    for (int c = 0; c < f->C; c++) f->dg[c] = 0.25f, f->db[c] = -0.5f; /* accumulate onto */
    resnorm_backward(f->dres, f->dy, f->dg, f->db, f->scratch, f->dout, f->res, f->mean, f->rstd,
                     f->gamma, f->N, f->C, p, SEED, STREAM);
}

/* One level, one thread count: everything against ops.c and double. */
static void check_against_references(fixture *f, float p) {
    const int N = f->N, C = f->C;
    const size_t n = (size_t)N * C;
    fixture_run(f, p);
    /* the residual: exactly ops.c's x + dropout(y) */
    float *yd = xmalloc(n * 4);
    dropout_forward(yd, f->y, n, p, SEED, STREAM);
    for (size_t i = 0; i < n; i++)
        if (f->res[i] != f->x[i] + yd[i]) fail_msg("res[%zu] differs from ops.c", i);
    /* dy: exactly ops.c's dropout backward of dres */
    float *dyd = xmalloc(n * 4);
    dropout_backward(dyd, f->dres, n, p, SEED, STREAM);
    for (size_t i = 0; i < n; i++)
        if (f->dy[i] != dyd[i]) fail_msg("dy[%zu] differs from ops.c's dropout", i);
    /* LayerNorm forward and backward against double */
    double *r = xmalloc((size_t)C * 8), *o = xmalloc((size_t)C * 8), *xh = xmalloc((size_t)C * 8);
    double *dd = xmalloc((size_t)C * 8), *dr = xmalloc((size_t)C * 8);
    double *dg = calloc((size_t)C, 8), *db = calloc((size_t)C, 8);
    assert_true(dg && db);
    for (int row = 0; row < N; row++) {
        size_t off = (size_t)row * C;
        double s;
        for (int c = 0; c < C; c++) r[c] = f->res[off + c], dd[c] = f->dout[off + c];
        ln_ref_row(o, xh, &s, r, f->gamma, f->beta, C);
        ln_ref_bwd_row(dr, dg, db, dd, xh, s, f->gamma, C);
        assert_tol(f->rstd[row], s, TOL_FWD, "rstd", (size_t)row);
        for (int c = 0; c < C; c++) {
            assert_tol(f->out[off + c], o[c], TOL_FWD, "out", off + c);
            assert_tol(f->dres[off + c], dr[c], TOL_BWD, "dres", off + c);
        }
    }
    for (int c = 0; c < C; c++) {
        assert_tol(f->dg[c], 0.25 + dg[c], TOL_BWD * sqrt(N), "dgamma", (size_t)c);
        assert_tol(f->db[c], -0.5 + db[c], TOL_BWD * sqrt(N), "dbeta", (size_t)c);
    }
    free(yd), free(dyd), free(r), free(o), free(xh), free(dd), free(dr), free(dg), free(db);
}

/* Copies of every output of one run, to compare runs bit for bit. */
typedef struct {
    float *buf;
    size_t n;
} snapshot;

static snapshot take(const fixture *f) {
    size_t n = (size_t)f->N * f->C, N = (size_t)f->N, C = (size_t)f->C;
    snapshot s = {xmalloc((4 * n + 2 * N + 2 * C) * 4), 4 * n + 2 * N + 2 * C};
    float *p = s.buf;
    const float *src[] = {f->out, f->res, f->dres, f->dy, f->mean, f->rstd, f->dg, f->db};
    const size_t len[] = {n, n, n, n, N, N, C, C};
    for (int i = 0; i < 8; i++) memcpy(p, src[i], len[i] * 4), p += len[i];
    return s;
}

static void run_levels(int N, int C, float p) {
    fixture f;
    fixture_init(&f, N, C);
    aflo_isa before = isa_level();
    snapshot first = {NULL, 0};
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        for (int threads = 1; threads <= 2; threads++) {
            engine_set_threads(threads);
            check_against_references(&f, p);
            snapshot s = take(&f);
            if (!first.buf) {
                first = s;
                continue;
            }
            if (memcmp(s.buf, first.buf, s.n * 4) != 0)
                fail_msg("%s, %d threads: not the same bits as the first run (N %d C %d p %g)",
                         isa_name((aflo_isa)level), threads, N, C, p);
            free(s.buf);
        }
    }
    free(first.buf);
    select_level(before);
    engine_set_threads(0);
    fixture_free(&f);
}

/* 70 rows: three blocks, the last ragged, and big enough to run parallel. */
static void test_bert_width_dropout_off(void **state) {
    (void)state;
    run_levels(70, 768, 0.0f);
}
static void test_bert_width_dropout_on(void **state) {
    (void)state;
    run_levels(70, 768, 0.1f);
}
/* C not a multiple of the 16 lanes; p exactly representable (u == p keeps). */
static void test_odd_width_dropout_quarter(void **state) {
    (void)state;
    run_levels(45, 50, 0.25f);
}
static void test_one_row(void **state) {
    (void)state;
    run_levels(1, 37, 0.5f);
}

/* NULL outputs: dres only (plain LayerNorm backward), dy only, and dres
 * aliasing dout; no parameter gradients and no scratch. */
static void test_partial_outputs(void **state) {
    (void)state;
    fixture f;
    fixture_init(&f, 40, 96);
    const size_t n = (size_t)f.N * f.C;
    const float p = 0.2f;
    fixture_run(&f, p);
    float *full_dres = xmalloc(n * 4), *full_dy = xmalloc(n * 4), *t = xmalloc(n * 4);
    memcpy(full_dres, f.dres, n * 4);
    memcpy(full_dy, f.dy, n * 4);
    resnorm_backward(t, NULL, NULL, NULL, NULL, f.dout, f.res, f.mean, f.rstd, f.gamma, f.N, f.C, p,
                     SEED, STREAM);
    assert_memory_equal(t, full_dres, n * 4);
    resnorm_backward(NULL, t, NULL, NULL, NULL, f.dout, f.res, f.mean, f.rstd, f.gamma, f.N, f.C, p,
                     SEED, STREAM);
    assert_memory_equal(t, full_dy, n * 4);
    memcpy(t, f.dout, n * 4);
    resnorm_backward(t, NULL, NULL, NULL, NULL, t, f.res, f.mean, f.rstd, f.gamma, f.N, f.C, p,
                     SEED, STREAM);
    assert_memory_equal(t, full_dres, n * 4);
    /* p = 0: dy is dres */
    resnorm_backward(full_dres, t, NULL, NULL, NULL, f.dout, f.res, f.mean, f.rstd, f.gamma, f.N,
                     f.C, 0.0f, SEED, STREAM);
    assert_memory_equal(t, full_dres, n * 4);
    free(full_dres), free(full_dy), free(t);
    fixture_free(&f);
}

/* Embedding sum + LayerNorm + dropout against ops.c's four calls. */
static void check_embnorm(float p) {
    enum { N = 66, C = 72, V = 30, P = 20, T = 2 };
    float *word = xmalloc(V * C * 4), *pos = xmalloc(P * C * 4), *type = xmalloc(T * C * 4);
    float g[C], b[C];
    int32_t ids[N], pids[N], tids[N];
    fill(word, V * C, 21, -1, 1);
    fill(pos, P * C, 22, -1, 1);
    fill(type, T * C, 23, -1, 1);
    fill(g, C, 24, 0.5f, 1.5f);
    fill(b, C, 25, -0.5f, 0.5f);
    for (int n = 0; n < N; n++) ids[n] = (n * 7) % V, pids[n] = n % P, tids[n] = n % T;
    float *sum_ref = xmalloc(N * C * 4), *out_ref = xmalloc(N * C * 4);
    float mean_ref[N], rstd_ref[N];
    embedding_forward(sum_ref, ids, word, N, C, 0);
    embedding_forward(sum_ref, pids, pos, N, C, 1);
    embedding_forward(sum_ref, tids, type, N, C, 1);
    layernorm_forward(out_ref, mean_ref, rstd_ref, sum_ref, g, b, N, C, EPS);
    dropout_forward(out_ref, out_ref, N * C, p, SEED, STREAM);
    float *sum = xmalloc(N * C * 4), *out = xmalloc(N * C * 4);
    float mean[N], rstd[N];
    aflo_isa before = isa_level();
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        embnorm_forward(out, sum, mean, rstd, word, ids, pos, pids, type, tids, g, b, N, C, EPS, p,
                        SEED, STREAM);
        assert_memory_equal(sum, sum_ref, N * C * 4);
        for (int i = 0; i < N * C; i++) {
            /* the same elements dropped */
            if ((out[i] == 0.0f) != (out_ref[i] == 0.0f)) fail_msg("mask differs at %d", i);
            assert_tol(out[i], out_ref[i], TOL_FWD, "emb out", (size_t)i);
        }
        for (int n = 0; n < N; n++)
            assert_tol(rstd[n], rstd_ref[n], TOL_FWD, "emb rstd", (size_t)n);
    }
    select_level(before);
    free(word), free(pos), free(type), free(sum_ref), free(out_ref), free(sum), free(out);
}

static void test_embnorm_dropout_off(void **state) {
    (void)state;
    check_embnorm(0.0f);
}
static void test_embnorm_dropout_on(void **state) {
    (void)state;
    check_embnorm(0.1f);
}

/* u(i) == p exactly keeps the element (ops.c: dropped when u < p). Search a
 * stream where one of 16 elements hashes to exactly p = 0.25, then check
 * the fused kernels keep it as dropout_forward does. */
static void test_u_equal_p_is_kept(void **state) {
    (void)state;
    enum { C = 16 };
    const uint64_t k = 1u << 22; /* 0.25 * 2^24 */
    uint64_t stream = 0;
    int hit = -1;
    for (; hit < 0 && stream < (1u << 26); stream++)
        for (int c = 0; c < C; c++)
            if ((rng_hash(SEED, ((stream) << 32) + (uint64_t)c) >> 40) == k) hit = c;
    stream--;
    if (hit < 0) fail_msg("no element with u == p found");
    float x[C] = {0}, y[C], out[C], res[C], mean[1], rstd[1], g[C], b[C] = {0};
    for (int c = 0; c < C; c++) y[c] = (float)(c + 1), g[c] = 1.0f;
    float ref[C];
    dropout_forward(ref, y, C, 0.25f, SEED, stream);
    assert_true(ref[hit] != 0.0f); /* ops.c keeps it */
    aflo_isa before = isa_level();
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        resnorm_forward(out, res, mean, rstd, x, y, g, b, 1, C, EPS, 0.25f, SEED, stream);
        assert_memory_equal(res, ref, sizeof ref);
    }
    select_level(before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_matches_finite_differences),
        cmocka_unit_test(test_bert_width_dropout_off),
        cmocka_unit_test(test_bert_width_dropout_on),
        cmocka_unit_test(test_odd_width_dropout_quarter),
        cmocka_unit_test(test_one_row),
        cmocka_unit_test(test_partial_outputs),
        cmocka_unit_test(test_u_equal_p_is_kept),
        cmocka_unit_test(test_embnorm_dropout_off),
        cmocka_unit_test(test_embnorm_dropout_on),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
