/* test_ops.c — the transformer kernels of engine/model/ops.c against independent
 * double-precision references.
 *
 * Every forward is re-implemented here in double (a few lines each) and the
 * fp32 kernel is compared with it. Every backward is checked by finite
 * differences: with a fixed random R, the scalar L = sum(out * R) is
 * evaluated in double at x +- h for each input element, and the central
 * difference is compared with the fp32 analytic gradient (called with
 * dout = R). Parameter gradients start from nonzero values to check that the
 * kernels accumulate (+=) rather than overwrite.
 *
 * The kernels of ops_kern.c (GELU, bias + GELU, bias, dropout) are built once per ISA level: their tests run once at
 * every level this CPU supports (isa_select), and test_levels_agree checks
 * on larger tensors that every level gives the same bits as the baseline.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <math.h>
#include <omp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "base/isa.h"
#include "base/rng.h"
#include "model/gemm.h"
#include "model/ops.h"

/* Central-difference step (absolute). With a
 * double reference, truncation (~h^2) and rounding (~1e-16/h) errors are
 * both ~1e-10, far below the fp32 error being measured. */
#define FD_STEP 1e-5
/* fp32 analytic gradient vs double finite difference. */
#define GRAD_ATOL 2e-5
#define GRAD_RTOL 1e-4
/* fp32 forward vs double forward. */
#define FWD_ATOL 1e-5
#define FWD_RTOL 1e-5

/* ------------------------------------------------------------------ helpers */

static void *xmalloc(size_t n) {
    void *p = malloc(n);
    assert_non_null(p);
    return p;
}

static void fill_uniform(float *a, size_t n, float lo, float hi, aflo_rng *r) {
    for (size_t i = 0; i < n; i++) a[i] = rng_uniform_range(r, lo, hi);
}

static double *to_double(const float *a, size_t n) {
    double *d = xmalloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++) d[i] = a[i];
    return d;
}

/* |got - want| <= atol + rtol*|want| for every element, else fail naming it. */
static void check_close(const char *what, const float *got, const double *want, size_t n,
                        double atol, double rtol) {
    for (size_t i = 0; i < n; i++) {
        double err = fabs((double)got[i] - want[i]);
        if (!(err <= atol + rtol * fabs(want[i])))
            fail_msg("%s[%zu]: got %.9g, want %.9g (err %.3g)", what, i, (double)got[i], want[i],
                     err);
    }
}

/* A scalar loss of double arrays, for finite differences. */
typedef double (*loss_fn)(void *ctx);

/* grad[i] = (L(v + h e_i) - L(v - h e_i)) / 2h, v restored afterwards. */
static void fd_grad(loss_fn loss, void *ctx, double *v, size_t n, double *grad) {
    for (size_t i = 0; i < n; i++) {
        double saved = v[i];
        double h = FD_STEP;
        v[i] = saved + h;
        double lp = loss(ctx);
        v[i] = saved - h;
        double lm = loss(ctx);
        v[i] = saved;
        grad[i] = (lp - lm) / (2.0 * h);
    }
}

static double dot_d(const double *a, const double *b, size_t n) {
    double s = 0.0;
    for (size_t i = 0; i < n; i++) s += a[i] * b[i];
    return s;
}

/* ---------------------------------------------------------------- layernorm */

static const float LN_EPS = 1e-5f;

static void ref_layernorm(double *out, double *mean, double *rstd, const double *x, const double *g,
                          const double *b, int N, int C, double eps) {
    for (int n = 0; n < N; n++) {
        const double *xr = x + (size_t)n * C;
        double m = 0.0, v = 0.0;
        for (int c = 0; c < C; c++) m += xr[c];
        m /= C;
        for (int c = 0; c < C; c++) v += (xr[c] - m) * (xr[c] - m);
        v /= C;
        double s = 1.0 / sqrt(v + eps);
        for (int c = 0; c < C; c++) out[(size_t)n * C + c] = (xr[c] - m) * s * g[c] + b[c];
        if (mean) mean[n] = m;
        if (rstd) rstd[n] = s;
    }
}

typedef struct {
    int N, C;
    double *x, *g, *b, *R, *out;
} ln_ctx;

static double ln_loss(void *p) {
    ln_ctx *c = p;
    ref_layernorm(c->out, NULL, NULL, c->x, c->g, c->b, c->N, c->C, LN_EPS);
    return dot_d(c->out, c->R, (size_t)c->N * c->C);
}

static void test_layernorm_forward_matches_double(void **state) {
    (void)state;
    enum { N = 5, C = 16 };
    aflo_rng r;
    rng_seed(&r, 11);
    float x[N * C], g[C], b[C], out[N * C], mean[N], rstd[N];
    fill_uniform(x, N * C, -2.0f, 3.0f, &r);
    /* A large common offset in one row: two-pass variance must not cancel. */
    for (int c = 0; c < C; c++) x[C + c] += 1000.0f;
    fill_uniform(g, C, 0.5f, 1.5f, &r);
    fill_uniform(b, C, -0.5f, 0.5f, &r);
    layernorm_forward(out, mean, rstd, x, g, b, N, C, LN_EPS);

    double *xd = to_double(x, N * C), *gd = to_double(g, C), *bd = to_double(b, C);
    double outd[N * C], meand[N], rstdd[N];
    ref_layernorm(outd, meand, rstdd, xd, gd, bd, N, C, LN_EPS);
    /* Row 1 has |x| ~ 1000, so fp32 loses ~1000 * 2^-24 absolutely in x - mean. */
    check_close("out", out, outd, N * C, 1e-4, FWD_RTOL);
    check_close("mean", mean, meand, N, FWD_ATOL, FWD_RTOL);
    check_close("rstd", rstd, rstdd, N, FWD_ATOL, 1e-4);
    free(xd);
    free(gd);
    free(bd);
}

static void test_layernorm_backward_gradcheck(void **state) {
    (void)state;
    enum { N = 4, C = 12 };
    aflo_rng r;
    rng_seed(&r, 12);
    float x[N * C], g[C], b[C], out[N * C], mean[N], rstd[N], R[N * C], dx[N * C];
    float dg[C], db[C], dg0[C], db0[C];
    fill_uniform(x, N * C, -2.0f, 2.0f, &r);
    fill_uniform(g, C, 0.5f, 1.5f, &r);
    fill_uniform(b, C, -0.5f, 0.5f, &r);
    fill_uniform(R, N * C, -1.0f, 1.0f, &r);
    fill_uniform(dg0, C, -1.0f, 1.0f, &r);
    fill_uniform(db0, C, -1.0f, 1.0f, &r);
    memcpy(dg, dg0, sizeof dg);
    memcpy(db, db0, sizeof db);
    layernorm_forward(out, mean, rstd, x, g, b, N, C, LN_EPS);
    layernorm_backward(dx, dg, db, R, x, mean, rstd, g, N, C);

    double outd[N * C], gx[N * C], gg[C], gb[C];
    ln_ctx c = {N,   C, to_double(x, N * C), to_double(g, C), to_double(b, C), to_double(R, N * C),
                outd};
    fd_grad(ln_loss, &c, c.x, N * C, gx);
    fd_grad(ln_loss, &c, c.g, C, gg);
    fd_grad(ln_loss, &c, c.b, C, gb);
    for (int i = 0; i < C; i++) {
        gg[i] += dg0[i];
        gb[i] += db0[i];
    }
    check_close("dx", dx, gx, N * C, GRAD_ATOL, GRAD_RTOL);
    check_close("dgamma", dg, gg, C, GRAD_ATOL, GRAD_RTOL);
    check_close("dbeta", db, gb, C, GRAD_ATOL, GRAD_RTOL);
    free(c.x);
    free(c.g);
    free(c.b);
    free(c.R);
}

/* Frozen gamma/beta (NULL gradients) give the same dx; dx may overwrite dout. */
static void test_layernorm_backward_null_params_and_in_place(void **state) {
    (void)state;
    enum { N = 3, C = 10 };
    aflo_rng r;
    rng_seed(&r, 13);
    float x[N * C], g[C], b[C], out[N * C], mean[N], rstd[N], R[N * C];
    float dx_full[N * C], dx_null[N * C], inplace[N * C], dg[C] = {0}, db[C] = {0};
    fill_uniform(x, N * C, -2.0f, 2.0f, &r);
    fill_uniform(g, C, 0.5f, 1.5f, &r);
    fill_uniform(b, C, -0.5f, 0.5f, &r);
    fill_uniform(R, N * C, -1.0f, 1.0f, &r);
    layernorm_forward(out, mean, rstd, x, g, b, N, C, LN_EPS);
    layernorm_backward(dx_full, dg, db, R, x, mean, rstd, g, N, C);
    layernorm_backward(dx_null, NULL, NULL, R, x, mean, rstd, g, N, C);
    assert_memory_equal(dx_full, dx_null, sizeof dx_full);

    /* Only one of the two frozen. */
    float dg2[C] = {0};
    layernorm_backward(dx_null, dg2, NULL, R, x, mean, rstd, g, N, C);
    assert_memory_equal(dg, dg2, sizeof dg);

    memcpy(inplace, R, sizeof R);
    float dg3[C] = {0}, db3[C] = {0};
    layernorm_backward(inplace, dg3, db3, inplace, x, mean, rstd, g, N, C);
    assert_memory_equal(dx_full, inplace, sizeof inplace);
    assert_memory_equal(dg, dg3, sizeof dg);
    assert_memory_equal(db, db3, sizeof db);
}

/* The parameter-gradient reduction must not depend on the thread count. */
static void test_layernorm_backward_thread_determinism(void **state) {
    (void)state;
    enum { N = 256, C = 256 }; /* 65536 elements: above the parallel threshold */
    aflo_rng r;
    rng_seed(&r, 14);
    size_t nc = (size_t)N * C;
    float *x = xmalloc(nc * sizeof *x), *out = xmalloc(nc * sizeof *x);
    float *R = xmalloc(nc * sizeof *x), *dx1 = xmalloc(nc * sizeof *x);
    float *dx2 = xmalloc(nc * sizeof *x);
    float g[C], b[C], mean[N], rstd[N], dg1[C] = {0}, db1[C] = {0}, dg2[C] = {0}, db2[C] = {0};
    fill_uniform(x, nc, -3.0f, 3.0f, &r);
    fill_uniform(R, nc, -1.0f, 1.0f, &r);
    fill_uniform(g, C, 0.5f, 1.5f, &r);
    fill_uniform(b, C, -0.5f, 0.5f, &r);

    engine_set_threads(1);
    layernorm_forward(out, mean, rstd, x, g, b, N, C, LN_EPS);
    layernorm_backward(dx1, dg1, db1, R, x, mean, rstd, g, N, C);
    engine_set_threads(2);
    float mean2[N], rstd2[N];
    layernorm_forward(out, mean2, rstd2, x, g, b, N, C, LN_EPS);
    layernorm_backward(dx2, dg2, db2, R, x, mean, rstd, g, N, C);
    engine_set_threads(1);

    assert_memory_equal(mean, mean2, sizeof mean);
    assert_memory_equal(rstd, rstd2, sizeof rstd);
    assert_memory_equal(dg1, dg2, sizeof dg1);
    assert_memory_equal(db1, db2, sizeof db1);
    assert_memory_equal(dx1, dx2, nc * sizeof *dx1);
    /* And not trivially: the gradients are nonzero. */
    float ss = 0.0f;
    for (int c = 0; c < C; c++) ss += fabsf(dg1[c]);
    assert_true(ss > 0.0f);
    free(x);
    free(out);
    free(R);
    free(dx1);
    free(dx2);
}

/* --------------------------------------------------------------------- gelu */

static double ref_gelu(double x) { return 0.5 * x * (1.0 + erf(x / sqrt(2.0))); }

typedef struct {
    size_t n;
    double *x, *R;
    double (*f)(double);
} ew_ctx;

static double ew_loss(void *p) {
    ew_ctx *c = p;
    double s = 0.0;
    for (size_t i = 0; i < c->n; i++) s += c->f(c->x[i]) * c->R[i];
    return s;
}

static const float GELU_SPECIAL[] = {-1e4f, -30.0f, -10.0f, -5.0f, -3.0f, -1.0f, -1e-3f, 0.0f,
                                     1e-3f, 0.5f,   1.0f,   3.0f,  5.0f,  10.0f, 30.0f,  1e4f};
#define N_SPECIAL (sizeof GELU_SPECIAL / sizeof GELU_SPECIAL[0])

static void test_gelu_forward_matches_erf(void **state) {
    (void)state;
    enum { NR = 48 };
    enum { N = NR + N_SPECIAL };
    aflo_rng r;
    rng_seed(&r, 21);
    float x[N], y[N];
    memcpy(x, GELU_SPECIAL, sizeof GELU_SPECIAL);
    fill_uniform(x + N_SPECIAL, NR, -6.0f, 6.0f, &r);
    gelu_forward(y, x, N);
    double want[N];
    for (int i = 0; i < N; i++) want[i] = ref_gelu(x[i]);
    /* Near x = -5, 1 + erf(x/sqrt2) cancels in fp32 (as in torch): ~1e-7 absolute. */
    check_close("gelu", y, want, N, 1e-6, FWD_RTOL);
    for (int i = 0; i < N; i++) assert_true(isfinite(y[i]));
    /* In place. */
    gelu_forward(x, x, N);
    assert_memory_equal(x, y, sizeof y);
}

static void test_gelu_backward_gradcheck(void **state) {
    (void)state;
    enum { NR = 40 };
    enum { N = NR + N_SPECIAL };
    aflo_rng r;
    rng_seed(&r, 22);
    float x[N], R[N], dx[N];
    memcpy(x, GELU_SPECIAL, sizeof GELU_SPECIAL);
    fill_uniform(x + N_SPECIAL, NR, -4.0f, 4.0f, &r);
    fill_uniform(R, N, -1.0f, 1.0f, &r);
    gelu_backward(dx, x, R, N);
    double want[N];
    ew_ctx c = {N, to_double(x, N), to_double(R, N), ref_gelu};
    fd_grad(ew_loss, &c, c.x, N, want);
    check_close("dgelu", dx, want, N, GRAD_ATOL, GRAD_RTOL);
    for (int i = 0; i < N; i++) assert_true(isfinite(dx[i]));
    /* Saturation: gelu' is exactly 1 far right, exactly 0 far left. */
    assert_true(dx[0] == 0.0f);
    assert_true(dx[N_SPECIAL - 1] == R[N_SPECIAL - 1]);
    free(c.x);
    free(c.R);
}

static double ref_gelu_grad(double x) {
    return 0.5 * (1.0 + erf(x / sqrt(2.0))) + x * exp(-0.5 * x * x) / sqrt(2.0 * M_PI);
}

/* A dense sweep of [-8, 8] (every vector lane and the remainder loop see
 * every region of vm_erff) against the double GELU and its derivative. */
static void test_gelu_sweep_matches_double(void **state) {
    (void)state;
    enum { N = 40003 }; /* odd: the remainder loop runs too */
    float *x = xmalloc(N * sizeof *x), *y = xmalloc(N * sizeof *y), *g = xmalloc(N * sizeof *g);
    float *one = xmalloc(N * sizeof *one);
    double *want = xmalloc(N * sizeof *want);
    for (int i = 0; i < N; i++) {
        x[i] = -8.0f + 16.0f * (float)i / (N - 1);
        one[i] = 1.0f;
    }
    gelu_forward(y, x, N);
    for (int i = 0; i < N; i++) want[i] = ref_gelu(x[i]);
    check_close("gelu", y, want, N, 1e-6, FWD_RTOL);
    gelu_backward(g, x, one, N);
    for (int i = 0; i < N; i++) want[i] = ref_gelu_grad(x[i]);
    check_close("gelu'", g, want, N, 1e-6, FWD_RTOL);
    free(x);
    free(y);
    free(g);
    free(one);
    free(want);
}

/* ------------------------------------------------------------- bias + gelu */

typedef struct {
    int N, C;
    double *x, *b, *R;
} bg_ctx;

static double bg_loss(void *p) {
    bg_ctx *c = p;
    double s = 0.0;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++) {
            size_t i = (size_t)n * c->C + j;
            s += ref_gelu(c->x[i] + c->b[j]) * c->R[i];
        }
    return s;
}

static void test_bias_gelu_forward_backward(void **state) {
    (void)state;
    enum { N = 5, C = 37 }; /* C not a multiple of any vector width */
    aflo_rng r;
    rng_seed(&r, 23);
    float x[N * C], b[C], y[N * C], R[N * C], dx[N * C], db[C], db0[C];
    fill_uniform(x, N * C, -4.0f, 4.0f, &r);
    fill_uniform(b, C, -1.0f, 1.0f, &r);
    fill_uniform(R, N * C, -1.0f, 1.0f, &r);
    fill_uniform(db0, C, -1.0f, 1.0f, &r);
    bias_gelu_forward(y, x, b, N, C);
    double want[N * C];
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++) want[n * C + j] = ref_gelu((double)(x[n * C + j] + b[j]));
    check_close("bias_gelu", y, want, N * C, 1e-6, FWD_RTOL);

    memcpy(db, db0, sizeof db);
    bias_gelu_backward(dx, db, x, b, R, N, C);
    bg_ctx c = {N, C, to_double(x, N * C), to_double(b, C), to_double(R, N * C)};
    double gx[N * C], gb[C];
    fd_grad(bg_loss, &c, c.x, N * C, gx);
    fd_grad(bg_loss, &c, c.b, C, gb);
    for (int j = 0; j < C; j++) gb[j] += db0[j];
    check_close("dx", dx, gx, N * C, GRAD_ATOL, GRAD_RTOL);
    check_close("dbias", db, gb, C, GRAD_ATOL, GRAD_RTOL);

    /* The same as the unfused kernels: bias, then GELU; bias' gradient. */
    float sum[N * C], y2[N * C], dx2[N * C], db2[C];
    memcpy(sum, x, sizeof sum);
    bias_forward(sum, b, N, C);
    gelu_forward(y2, sum, N * C);
    assert_memory_equal(y, y2, sizeof y);
    gelu_backward(dx2, sum, R, N * C);
    assert_memory_equal(dx, dx2, sizeof dx);
    memcpy(db2, db0, sizeof db2);
    bias_backward(db2, dx2, N, C);
    assert_memory_equal(db, db2, sizeof db);

    /* Frozen bias: the same dx; in place over dout; forward in place. */
    float inplace[N * C];
    memcpy(inplace, R, sizeof R);
    bias_gelu_backward(inplace, NULL, x, b, inplace, N, C);
    assert_memory_equal(inplace, dx, sizeof dx);
    bias_gelu_forward(x, x, b, N, C);
    assert_memory_equal(x, y, sizeof y);
    free(c.x);
    free(c.b);
    free(c.R);
}

/* Above the parallel threshold: 1 and 2 threads give the same bits (rows
 * split for the values, whole columns for the bias gradient). */
static void test_bias_gelu_thread_determinism(void **state) {
    (void)state;
    enum { N = 300, C = 301 };
    const size_t nc = (size_t)N * C;
    aflo_rng r;
    rng_seed(&r, 24);
    float *x = xmalloc(nc * sizeof *x), *R = xmalloc(nc * sizeof *R);
    float *y1 = xmalloc(nc * sizeof *y1), *y2 = xmalloc(nc * sizeof *y2);
    float *d1 = xmalloc(nc * sizeof *d1), *d2 = xmalloc(nc * sizeof *d2);
    float b[C], db1[C] = {0}, db2[C] = {0}, bb1[C] = {0}, bb2[C] = {0};
    fill_uniform(x, nc, -4.0f, 4.0f, &r);
    fill_uniform(R, nc, -1.0f, 1.0f, &r);
    fill_uniform(b, C, -1.0f, 1.0f, &r);
    engine_set_threads(1);
    bias_gelu_forward(y1, x, b, N, C);
    bias_gelu_backward(d1, db1, x, b, R, N, C);
    bias_backward(bb1, R, N, C);
    engine_set_threads(2);
    bias_gelu_forward(y2, x, b, N, C);
    bias_gelu_backward(d2, db2, x, b, R, N, C);
    bias_backward(bb2, R, N, C);
    engine_set_threads(1);
    assert_memory_equal(y1, y2, nc * sizeof *y1);
    assert_memory_equal(d1, d2, nc * sizeof *d1);
    assert_memory_equal(db1, db2, sizeof db1);
    assert_memory_equal(bb1, bb2, sizeof bb1);
    float ss = 0.0f;
    for (int c = 0; c < C; c++) ss += fabsf(db1[c]);
    assert_true(ss > 0.0f);
    /* And the column sums are the serial row-order sums, exactly. */
    for (int c = 0; c < C; c++) {
        float t = 0.0f;
        for (int n = 0; n < N; n++) t += R[(size_t)n * C + c];
        assert_true(t == bb1[c]);
    }
    free(x);
    free(R);
    free(y1);
    free(y2);
    free(d1);
    free(d2);
}

/* --------------------------------------------------------------------- tanh */

static void test_tanh_forward_backward(void **state) {
    (void)state;
    enum { N = 40 };
    aflo_rng r;
    rng_seed(&r, 31);
    float x[N], y[N], R[N], dx[N];
    fill_uniform(x, N, -4.0f, 4.0f, &r);
    x[0] = 50.0f;
    x[1] = -50.0f;
    fill_uniform(R, N, -1.0f, 1.0f, &r);
    tanh_forward(y, x, N);
    double want[N];
    for (int i = 0; i < N; i++) want[i] = tanh((double)x[i]);
    check_close("tanh", y, want, N, FWD_ATOL, FWD_RTOL);

    tanh_backward(dx, y, R, N);
    ew_ctx c = {N, to_double(x, N), to_double(R, N), tanh};
    fd_grad(ew_loss, &c, c.x, N, want);
    check_close("dtanh", dx, want, N, GRAD_ATOL, GRAD_RTOL);
    free(c.x);
    free(c.R);
}

/* --------------------------------------------------------------------- bias */

typedef struct {
    int N, C;
    double *y0, *b, *R;
} bias_ctx;

static double bias_loss(void *p) {
    bias_ctx *c = p;
    double s = 0.0;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++)
            s += (c->y0[(size_t)n * c->C + j] + c->b[j]) * c->R[(size_t)n * c->C + j];
    return s;
}

static void test_bias_forward_backward(void **state) {
    (void)state;
    enum { N = 5, C = 7 };
    aflo_rng r;
    rng_seed(&r, 41);
    float y[N * C], y0[N * C], b[C], R[N * C], db[C], db0[C];
    fill_uniform(y0, N * C, -1.0f, 1.0f, &r);
    fill_uniform(b, C, -1.0f, 1.0f, &r);
    fill_uniform(R, N * C, -1.0f, 1.0f, &r);
    fill_uniform(db0, C, -1.0f, 1.0f, &r);
    memcpy(y, y0, sizeof y);
    bias_forward(y, b, N, C);
    double want[N * C];
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++) want[n * C + j] = (double)y0[n * C + j] + b[j];
    check_close("bias", y, want, N * C, 1e-6, 1e-6);

    memcpy(db, db0, sizeof db);
    bias_backward(db, R, N, C);
    bias_ctx c = {N, C, to_double(y0, N * C), to_double(b, C), to_double(R, N * C)};
    double gb[C];
    fd_grad(bias_loss, &c, c.b, C, gb);
    for (int j = 0; j < C; j++) gb[j] += db0[j];
    check_close("dbias", db, gb, C, GRAD_ATOL, GRAD_RTOL);
    free(c.y0);
    free(c.b);
    free(c.R);
}

/* --------------------------------------------------------------- scale_cols */

typedef struct {
    int N, C;
    double *x, *s, *R;
} sc_ctx;

static double sc_loss(void *p) {
    sc_ctx *c = p;
    double t = 0.0;
    for (int n = 0; n < c->N; n++)
        for (int j = 0; j < c->C; j++)
            t += c->x[(size_t)n * c->C + j] * c->s[j] * c->R[(size_t)n * c->C + j];
    return t;
}

static void test_scale_cols(void **state) {
    (void)state;
    enum { N = 6, C = 9 };
    aflo_rng r;
    rng_seed(&r, 51);
    float x[N * C], s[C], y[N * C], R[N * C], dx[N * C], ds[C], ds0[C];
    fill_uniform(x, N * C, -2.0f, 2.0f, &r);
    fill_uniform(s, C, -1.5f, 1.5f, &r);
    fill_uniform(R, N * C, -1.0f, 1.0f, &r);
    fill_uniform(ds0, C, -1.0f, 1.0f, &r);
    scale_cols_forward(y, x, s, N, C);
    double want[N * C];
    for (int n = 0; n < N; n++)
        for (int j = 0; j < C; j++) want[n * C + j] = (double)x[n * C + j] * s[j];
    check_close("scale_cols", y, want, N * C, 1e-7, 1e-6);

    memcpy(ds, ds0, sizeof ds);
    scale_cols_backward(dx, ds, R, x, s, N, C);
    sc_ctx c = {N, C, to_double(x, N * C), to_double(s, C), to_double(R, N * C)};
    double gx[N * C], gs[C];
    fd_grad(sc_loss, &c, c.x, N * C, gx);
    fd_grad(sc_loss, &c, c.s, C, gs);
    for (int j = 0; j < C; j++) gs[j] += ds0[j];
    check_close("dx", dx, gx, N * C, GRAD_ATOL, GRAD_RTOL);
    check_close("ds", ds, gs, C, GRAD_ATOL, GRAD_RTOL);

    /* No input gradient wanted: ds alone, the same values. */
    float ds_only[C];
    memcpy(ds_only, ds0, sizeof ds_only);
    scale_cols_backward(NULL, ds_only, R, x, s, N, C);
    assert_memory_equal(ds_only, ds, sizeof ds);
    /* Frozen s, dx in place over dy. */
    float inplace[N * C];
    memcpy(inplace, R, sizeof R);
    scale_cols_backward(inplace, NULL, inplace, x, s, N, C);
    assert_memory_equal(inplace, dx, sizeof dx);
    /* Forward in place. */
    scale_cols_forward(x, x, s, N, C);
    assert_memory_equal(x, y, sizeof y);
    free(c.x);
    free(c.s);
    free(c.R);
}

/* ------------------------------------------------------------------ softmax */

static void ref_softmax(double *p, const double *s, const uint8_t *mask, int rows, int S) {
    for (int r = 0; r < rows; r++) {
        const double *sr = s + (size_t)r * S;
        double *pr = p + (size_t)r * S;
        double mx = -INFINITY, sum = 0.0;
        for (int j = 0; j < S; j++)
            if (!mask || mask[j]) mx = fmax(mx, sr[j]);
        for (int j = 0; j < S; j++) {
            pr[j] = (!mask || mask[j]) ? exp(sr[j] - mx) : 0.0;
            sum += pr[j];
        }
        for (int j = 0; j < S; j++) pr[j] /= sum;
    }
}

typedef struct {
    int rows, S;
    const uint8_t *mask;
    double *s, *R, *p;
} sm_ctx;

static double sm_loss(void *v) {
    sm_ctx *c = v;
    ref_softmax(c->p, c->s, c->mask, c->rows, c->S);
    return dot_d(c->p, c->R, (size_t)c->rows * c->S);
}

static void test_softmax_masked(void **state) {
    (void)state;
    enum { ROWS = 4, S = 7 };
    static const uint8_t mask[S] = {1, 1, 0, 1, 0, 1, 1};
    aflo_rng r;
    rng_seed(&r, 61);
    float s[ROWS * S], p[ROWS * S], R[ROWS * S], ds[ROWS * S];
    fill_uniform(s, ROWS * S, -3.0f, 3.0f, &r);
    /* Row 3: large scores, max subtraction keeps exp finite. */
    for (int j = 0; j < S; j++) s[3 * S + j] += 1000.0f;
    fill_uniform(R, ROWS * S, -1.0f, 1.0f, &r);
    double *sd = to_double(s, ROWS * S);
    /* Masked scores may hold anything and must be ignored. */
    s[2] = NAN;
    s[S + 2] = 1e30f;
    s[2 * S + 4] = INFINITY;
    softmax_forward(p, s, mask, ROWS, S);

    for (int row = 0; row < ROWS; row++) {
        double sum = 0.0;
        for (int j = 0; j < S; j++) {
            float v = p[row * S + j];
            if (!mask[j])
                assert_true(v == 0.0f); /* exactly 0 */
            else
                assert_true(v > 0.0f && v < 1.0f);
            sum += v;
        }
        assert_true(fabs(sum - 1.0) < 1e-6);
    }
    double pd[ROWS * S];
    ref_softmax(pd, sd, mask, ROWS, S);
    check_close("softmax", p, pd, ROWS * S, FWD_ATOL, FWD_RTOL);

    softmax_backward(ds, p, R, ROWS, S);
    sm_ctx c = {ROWS, S, mask, sd, to_double(R, ROWS * S), pd};
    double g[ROWS * S];
    fd_grad(sm_loss, &c, c.s, ROWS * S, g);
    check_close("dscores", ds, g, ROWS * S, GRAD_ATOL, GRAD_RTOL);
    for (int row = 0; row < ROWS; row++)
        for (int j = 0; j < S; j++)
            if (!mask[j]) assert_true(ds[row * S + j] == 0.0f);

    /* In place, backward over dp. */
    float inplace[ROWS * S];
    memcpy(inplace, R, sizeof R);
    softmax_backward(inplace, p, inplace, ROWS, S);
    assert_memory_equal(inplace, ds, sizeof ds);
    free(sd);
    free(c.R);
}

static void test_softmax_unmasked_in_place(void **state) {
    (void)state;
    enum { ROWS = 3, S = 5 };
    aflo_rng r;
    rng_seed(&r, 62);
    float s[ROWS * S], p[ROWS * S];
    fill_uniform(s, ROWS * S, -5.0f, 5.0f, &r);
    double *sd = to_double(s, ROWS * S), pd[ROWS * S];
    ref_softmax(pd, sd, NULL, ROWS, S);
    softmax_forward(p, s, NULL, ROWS, S);
    check_close("softmax", p, pd, ROWS * S, FWD_ATOL, FWD_RTOL);
    softmax_forward(s, s, NULL, ROWS, S);
    assert_memory_equal(s, p, sizeof p);
    free(sd);
}

/* ------------------------------------------------------------------ dropout */

enum { DROP_N = 100000 };
static const uint64_t DROP_SEED = 0x5eedULL;

/* The documented keep rule, restated here from ops.h / ops.c. */
static int doc_keep(uint64_t seed, uint64_t stream, size_t i, float p) {
    uint64_t h = rng_hash(seed, (stream << 32) + (uint64_t)i);
    return (double)(h >> 40) / 16777216.0 >= (double)p;
}

static float *drop_input(void) {
    float *x = xmalloc(DROP_N * sizeof *x);
    for (size_t i = 0; i < DROP_N; i++) x[i] = 1.0f + (float)(i % 7) * 0.25f; /* never 0 */
    return x;
}

static void test_dropout_p0_copies(void **state) {
    (void)state;
    float *x = drop_input(), *y = xmalloc(DROP_N * sizeof *y);
    dropout_forward(y, x, DROP_N, 0.0f, DROP_SEED, 1);
    assert_memory_equal(x, y, DROP_N * sizeof *y);
    dropout_backward(y, x, DROP_N, 0.0f, DROP_SEED, 1);
    assert_memory_equal(x, y, DROP_N * sizeof *y);
    memcpy(y, x, DROP_N * sizeof *y);
    dropout_forward(y, y, DROP_N, 0.0f, DROP_SEED, 1);
    assert_memory_equal(x, y, DROP_N * sizeof *y);
    free(x);
    free(y);
}

static void test_dropout_rate_scale_and_rule(void **state) {
    (void)state;
    const float p = 0.1f;
    float *x = drop_input(), *y = xmalloc(DROP_N * sizeof *y);
    dropout_forward(y, x, DROP_N, p, DROP_SEED, 3);
    size_t dropped = 0;
    for (size_t i = 0; i < DROP_N; i++) {
        int keep = doc_keep(DROP_SEED, 3, i, p);
        if (y[i] == 0.0f) {
            dropped++;
            assert_false(keep);
        } else {
            assert_true(keep);
            double want = (double)x[i] / (1.0 - (double)p);
            assert_true(fabs(y[i] - want) <= 1e-6 * want);
        }
    }
    /* 10% +- 1% (the binomial sd is 0.095%, so this is > 10 sigma). */
    assert_in_range(dropped, 9000, 11000);
    free(x);
    free(y);
}

static void test_dropout_backward_regenerates_mask(void **state) {
    (void)state;
    const float p = 0.25f;
    aflo_rng r;
    rng_seed(&r, 71);
    float *x = drop_input(), *y = xmalloc(DROP_N * sizeof *y);
    float *dy = xmalloc(DROP_N * sizeof *dy), *dx = xmalloc(DROP_N * sizeof *dx);
    fill_uniform(dy, DROP_N, 0.5f, 1.5f, &r); /* never 0 */
    dropout_forward(y, x, DROP_N, p, DROP_SEED, 9);
    dropout_backward(dx, dy, DROP_N, p, DROP_SEED, 9);
    for (size_t i = 0; i < DROP_N; i++) {
        assert_int_equal(y[i] == 0.0f, dx[i] == 0.0f);
        if (dx[i] != 0.0f) {
            double want = (double)dy[i] / (1.0 - (double)p);
            assert_true(fabs(dx[i] - want) <= 1e-6 * want);
        }
    }
    /* In place over dy gives the same. */
    dropout_backward(dy, dy, DROP_N, p, DROP_SEED, 9);
    assert_memory_equal(dy, dx, DROP_N * sizeof *dx);
    free(x);
    free(y);
    free(dy);
    free(dx);
}

/* p >= 1 drops every element (and never forms 1/(1-p)); a tiny p keeps
 * all but about p*n. */
static void test_dropout_extremes(void **state) {
    (void)state;
    float *x = drop_input(), *y = xmalloc(DROP_N * sizeof *y);
    dropout_forward(y, x, DROP_N, 1.0f, DROP_SEED, 2);
    for (size_t i = 0; i < DROP_N; i++) assert_true(y[i] == 0.0f);
    const float p = 1e-4f;
    dropout_forward(y, x, DROP_N, p, DROP_SEED, 2);
    size_t dropped = 0;
    for (size_t i = 0; i < DROP_N; i++) {
        assert_int_equal(y[i] != 0.0f, doc_keep(DROP_SEED, 2, i, p));
        dropped += y[i] == 0.0f;
    }
    assert_in_range(dropped, 1, 40); /* mean 10 */
    free(x);
    free(y);
}

static size_t mask_differences(const float *a, const float *b) {
    size_t d = 0;
    for (size_t i = 0; i < DROP_N; i++) d += (a[i] == 0.0f) != (b[i] == 0.0f);
    return d;
}

static void test_dropout_seed_stream_and_threads(void **state) {
    (void)state;
    const float p = 0.1f;
    float *x = drop_input();
    float *a = xmalloc(DROP_N * sizeof *a), *b = xmalloc(DROP_N * sizeof *b);
    dropout_forward(a, x, DROP_N, p, DROP_SEED, 5);
    dropout_forward(b, x, DROP_N, p, DROP_SEED, 5);
    assert_memory_equal(a, b, DROP_N * sizeof *a);
    /* Independent masks differ in ~2p(1-p) = 18% of positions. */
    dropout_forward(b, x, DROP_N, p, DROP_SEED, 6);
    assert_true(mask_differences(a, b) > DROP_N / 10);
    dropout_forward(b, x, DROP_N, p, DROP_SEED + 1, 5);
    assert_true(mask_differences(a, b) > DROP_N / 10);
    /* Two threads: the same mask as one. */
    engine_set_threads(2);
    dropout_forward(b, x, DROP_N, p, DROP_SEED, 5);
    engine_set_threads(1);
    assert_memory_equal(a, b, DROP_N * sizeof *a);
    free(x);
    free(a);
    free(b);
}

/* ---------------------------------------------------------------- embedding */

static void test_embedding(void **state) {
    (void)state;
    enum { V = 5, C = 3, N = 4 };
    /* Halves and small integers: every sum below is exact in fp32. */
    const float table[V * C] = {0.5f, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, -1, -2, -3};
    const int32_t ids[N] = {2, 0, 2, 4};
    float out[N * C];
    embedding_forward(out, ids, table, N, C, 0);
    const float want[N * C] = {6, 7, 8, 0.5f, 1, 2, 6, 7, 8, -1, -2, -3};
    assert_memory_equal(out, want, sizeof want);
    embedding_forward(out, ids, table, N, C, 1);
    const float want2[N * C] = {12, 14, 16, 1, 2, 4, 12, 14, 16, -2, -4, -6};
    assert_memory_equal(out, want2, sizeof want2);

    const float dout[N * C] = {1, 2, 3, 0.5f, 0.5f, 0.5f, 10, 20, 30, -1, -1, -1};
    float dtable[V * C];
    for (int i = 0; i < V * C; i++) dtable[i] = 100.0f;
    embedding_backward(dtable, ids, dout, N, C);
    /* Row 2 gets rows 0 and 2 of dout; rows 1 and 3 of the table get none. */
    const float wantd[V * C] = {100.5f, 100.5f, 100.5f, 100, 100, 100, 111, 122,
                                133,    100,    100,    100, 99,  99,  99};
    assert_memory_equal(dtable, wantd, sizeof wantd);
}

/* ------------------------------------------------------------ cross entropy */

static double ref_ce(const double *logits, const int32_t *labels, int B, int L) {
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const double *lr = logits + (size_t)b * L;
        double mx = lr[0], sum = 0.0;
        for (int j = 1; j < L; j++) mx = fmax(mx, lr[j]);
        for (int j = 0; j < L; j++) sum += exp(lr[j] - mx);
        total += mx + log(sum) - lr[labels[b]];
    }
    return total / B;
}

typedef struct {
    int B, L;
    const int32_t *labels;
    double *logits;
    double scale;
} ce_ctx;

static double ce_loss(void *p) {
    ce_ctx *c = p;
    return c->scale * ref_ce(c->logits, c->labels, c->B, c->L);
}

static void test_cross_entropy_gradcheck(void **state) {
    (void)state;
    enum { B = 4, L = 5 };
    const int32_t labels[B] = {0, 3, 4, 3};
    aflo_rng r;
    rng_seed(&r, 81);
    float logits[B * L], probs[B * L], dl[B * L];
    fill_uniform(logits, B * L, -3.0f, 3.0f, &r);
    float loss = cross_entropy_forward(probs, logits, labels, B, L);
    double *ld = to_double(logits, B * L);
    double want = ref_ce(ld, labels, B, L);
    assert_true(fabs(loss - want) <= 1e-6 * fabs(want));
    for (int b = 0; b < B; b++) {
        double s = 0.0;
        for (int j = 0; j < L; j++) s += probs[b * L + j];
        assert_true(fabs(s - 1.0) < 1e-6);
    }

    const float scale = 0.5f;
    cross_entropy_backward(dl, probs, labels, B, L, scale);
    ce_ctx c = {B, L, labels, ld, scale};
    double g[B * L];
    fd_grad(ce_loss, &c, c.logits, B * L, g);
    check_close("dlogits", dl, g, B * L, GRAD_ATOL, GRAD_RTOL);
    free(ld);
}

static void test_cross_entropy_huge_logits(void **state) {
    (void)state;
    enum { B = 5, L = 5 };
    float logits[B * L];
    const float row[L] = {1e4f, -1e4f, 0.0f, 1e4f - 3.0f, 5e3f};
    for (int b = 0; b < B; b++) memcpy(logits + b * L, row, sizeof row);
    const int32_t labels[B] = {0, 1, 2, 3, 4}; /* every position once */
    float probs[B * L], dl[B * L];
    float loss = cross_entropy_forward(probs, logits, labels, B, L);
    assert_true(isfinite(loss));
    for (int i = 0; i < B * L; i++) assert_true(isfinite(probs[i]));
    double *ld = to_double(logits, B * L);
    /* By hand: lse = 1e4 + log(1 + e^-3); mean over labels of (lse - logit). */
    double lse = 1e4 + log1p(exp(-3.0));
    double hand = ((lse - 1e4) + (lse + 1e4) + lse + (lse - (1e4 - 3)) + (lse - 5e3)) / 5.0;
    assert_true(fabs(ref_ce(ld, labels, B, L) - hand) < 1e-9 * hand);
    assert_true(fabs(loss - hand) <= 1e-6 * hand);
    cross_entropy_backward(dl, probs, labels, B, L, 1.0f);
    for (int i = 0; i < B * L; i++) assert_true(isfinite(dl[i]));
    /* Row 1's label has probability 0: its gradient is exactly -1/B. */
    assert_float_equal(dl[1 * L + 1], -1.0f / B, 1e-7f);
    free(ld);
}

/* ---------------------------------------------------------------------- mse */

typedef struct {
    int B;
    double *pred, *target;
    double scale;
} mse_ctx;

static double mse_loss(void *p) {
    mse_ctx *c = p;
    double s = 0.0;
    for (int b = 0; b < c->B; b++) s += (c->pred[b] - c->target[b]) * (c->pred[b] - c->target[b]);
    return c->scale * s / c->B;
}

static void test_mse(void **state) {
    (void)state;
    enum { B = 6 };
    aflo_rng r;
    rng_seed(&r, 91);
    float pred[B], target[B], dp[B];
    fill_uniform(pred, B, -2.0f, 2.0f, &r);
    fill_uniform(target, B, 0.0f, 5.0f, &r);
    mse_ctx c = {B, to_double(pred, B), to_double(target, B), 1.0};
    double want = mse_loss(&c);
    float loss = mse_forward(pred, target, B);
    assert_true(fabs(loss - want) <= 1e-6 * want);
    /* A hand case: errors 1 and 3 -> (1 + 9) / 2 = 5. */
    const float p2[2] = {1.0f, 0.0f}, t2[2] = {0.0f, 3.0f};
    assert_true(mse_forward(p2, t2, 2) == 5.0f);

    c.scale = 0.25;
    mse_backward(dp, pred, target, B, 0.25f);
    double g[B];
    fd_grad(mse_loss, &c, c.pred, B, g);
    check_close("dpred", dp, g, B, GRAD_ATOL, GRAD_RTOL);
    free(c.pred);
    free(c.target);
}

/* Run violate() in a child process: true when it stops on a failed assert(). */
static bool aborts(void (*violate)(void)) {
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY); /* the assert's message is expected */
        if (null >= 0) dup2(null, STDERR_FILENO);
        violate();
        _exit(0);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    return WIFSIGNALED(status) && WTERMSIG(status) == SIGABRT;
}

static void gemm_with_short_stride(void) {
    float a[6] = {0}, b[6] = {0}, c[4] = {0};
    /* A is 2 x 3, so its rows are 3 apart, not 2 */
    gemm(NULL, FLOP_FORWARD, false, false, 2, 2, 3, 1.0f, a, 2, b, 2, 0.0f, c, 2);
}

static void cross_entropy_with_label_out_of_range(void) {
    float logits[4] = {0}, probs[4];
    int32_t labels[2] = {1, 2}; /* 2 classes: label 2 does not exist */
    cross_entropy_forward(probs, logits, labels, 2, 2);
}

/* Release builds keep assert() (the Makefile refuses -DNDEBUG): a violated
 * invariant stops the process instead of reading past a matrix. */
static void test_invariants_are_checked(void **state) {
    (void)state;
    assert_true(aborts(gemm_with_short_stride));
    assert_true(aborts(cross_entropy_with_label_out_of_range));
}

/* ------------------------------------------------------------ thread counts */

/* Two jobs run on two worker threads: each one's `threads` must stay its
 * own (it used to be one process-wide value the second job overwrote). */
typedef struct {
    pthread_barrier_t *set, *read;
    int want, got;
} thread_count_probe;

static void *set_then_read_threads(void *arg) {
    thread_count_probe *p = arg;
    engine_set_threads(p->want);
    pthread_barrier_wait(p->set); /* both have set theirs */
    p->got = engine_threads();
    pthread_barrier_wait(p->read);
    return NULL;
}

static void test_thread_count_is_per_thread(void **state) {
    (void)state;
    pthread_barrier_t set, read;
    assert_int_equal(pthread_barrier_init(&set, NULL, 2), 0);
    assert_int_equal(pthread_barrier_init(&read, NULL, 2), 0);
    thread_count_probe a = {&set, &read, 3, 0}, b = {&set, &read, 1, 0};
    pthread_t ta, tb;
    assert_int_equal(pthread_create(&ta, NULL, set_then_read_threads, &a), 0);
    assert_int_equal(pthread_create(&tb, NULL, set_then_read_threads, &b), 0);
    assert_int_equal(pthread_join(ta, NULL), 0);
    assert_int_equal(pthread_join(tb, NULL), 0);
    pthread_barrier_destroy(&set);
    pthread_barrier_destroy(&read);
    assert_int_equal(a.got, 3);
    assert_int_equal(b.got, 1);
}

/* ------------------------------------------------------------------- levels */

static void select_level(aflo_isa level) {
    char err[128];
    if (isa_select(level, err, sizeof err) != 0) fail_msg("%s", err);
}

/* The outputs of every ops_kern.c kernel on tensors above the parallel
 * threshold, at the current level, 2 threads. */
enum { LV_N = 256, LV_C = 300 };
typedef struct {
    float *gelu, *dgelu, *bg, *dbg, *bias, *drop;
    float dbias[LV_C], db[LV_C];
} level_outputs;

static void run_level(level_outputs *o, const float *x, const float *R, const float *b) {
    const size_t nc = (size_t)LV_N * LV_C;
    engine_set_threads(2);
    gelu_forward(o->gelu, x, nc);
    gelu_backward(o->dgelu, x, R, nc);
    bias_gelu_forward(o->bg, x, b, LV_N, LV_C);
    memset(o->db, 0, sizeof o->db);
    bias_gelu_backward(o->dbg, o->db, x, b, R, LV_N, LV_C);
    memcpy(o->bias, x, nc * sizeof *x);
    bias_forward(o->bias, b, LV_N, LV_C);
    memset(o->dbias, 0, sizeof o->dbias);
    bias_backward(o->dbias, R, LV_N, LV_C);
    dropout_forward(o->drop, x, nc, 0.1f, DROP_SEED, 4);
    engine_set_threads(1);
}

/* No FMA contraction and no reassociation in ops_kern.c: every level
 * computes each element with the same IEEE operations, so the bits agree. */
static void test_levels_agree(void **state) {
    (void)state;
    const size_t nc = (size_t)LV_N * LV_C;
    aflo_rng r;
    rng_seed(&r, 101);
    float *x = xmalloc(nc * sizeof *x), *R = xmalloc(nc * sizeof *R), b[LV_C];
    fill_uniform(x, nc, -6.0f, 6.0f, &r);
    fill_uniform(R, nc, -1.0f, 1.0f, &r);
    fill_uniform(b, LV_C, -1.0f, 1.0f, &r);
    level_outputs out[ISA_COUNT];
    const aflo_isa start = isa_level();
    int ran = 0;
    for (int l = 0; l < ISA_COUNT; l++) {
        level_outputs *o = &out[l];
        float **bufs[] = {&o->gelu, &o->dgelu, &o->bg, &o->dbg, &o->bias, &o->drop};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++)
            *bufs[i] = isa_supported((aflo_isa)l) ? xmalloc(nc * sizeof(float)) : NULL;
        if (!isa_supported((aflo_isa)l)) continue;
        select_level((aflo_isa)l);
        run_level(o, x, R, b);
        ran++;
        if (l == ISA_BASE) continue;
        const level_outputs *z = &out[ISA_BASE];
        print_message("level %s against base\n", isa_name((aflo_isa)l));
        assert_memory_equal(o->gelu, z->gelu, nc * sizeof(float));
        assert_memory_equal(o->dgelu, z->dgelu, nc * sizeof(float));
        assert_memory_equal(o->bg, z->bg, nc * sizeof(float));
        assert_memory_equal(o->dbg, z->dbg, nc * sizeof(float));
        assert_memory_equal(o->db, z->db, sizeof o->db);
        assert_memory_equal(o->bias, z->bias, nc * sizeof(float));
        assert_memory_equal(o->dbias, z->dbias, sizeof o->dbias);
        assert_memory_equal(o->drop, z->drop, nc * sizeof(float));
    }
    select_level(start);
    assert_true(ran >= 1 && isa_supported(ISA_BASE));
    for (int l = 0; l < ISA_COUNT; l++) {
        free(out[l].gelu);
        free(out[l].dgelu);
        free(out[l].bg);
        free(out[l].dbg);
        free(out[l].bias);
        free(out[l].drop);
    }
    free(x);
    free(R);
}

int main(void) {
    /* The kernels of ops_kern.c: run at every level. */
    const struct CMUnitTest per_level[] = {
        cmocka_unit_test(test_gelu_forward_matches_erf),
        cmocka_unit_test(test_gelu_backward_gradcheck),
        cmocka_unit_test(test_gelu_sweep_matches_double),
        cmocka_unit_test(test_bias_gelu_forward_backward),
        cmocka_unit_test(test_bias_gelu_thread_determinism),
        cmocka_unit_test(test_bias_forward_backward),
        cmocka_unit_test(test_dropout_p0_copies),
        cmocka_unit_test(test_dropout_rate_scale_and_rule),
        cmocka_unit_test(test_dropout_backward_regenerates_mask),
        cmocka_unit_test(test_dropout_seed_stream_and_threads),
        cmocka_unit_test(test_dropout_extremes),
    };
    /* The rest of ops.c (one build), the level comparison, thread counts. */
    const struct CMUnitTest once[] = {
        cmocka_unit_test(test_layernorm_forward_matches_double),
        cmocka_unit_test(test_layernorm_backward_gradcheck),
        cmocka_unit_test(test_layernorm_backward_null_params_and_in_place),
        cmocka_unit_test(test_layernorm_backward_thread_determinism),
        cmocka_unit_test(test_tanh_forward_backward),
        cmocka_unit_test(test_scale_cols),
        cmocka_unit_test(test_softmax_masked),
        cmocka_unit_test(test_softmax_unmasked_in_place),
        cmocka_unit_test(test_embedding),
        cmocka_unit_test(test_cross_entropy_gradcheck),
        cmocka_unit_test(test_cross_entropy_huge_logits),
        cmocka_unit_test(test_mse),
        cmocka_unit_test(test_invariants_are_checked),
        cmocka_unit_test(test_thread_count_is_per_thread),
        cmocka_unit_test(test_levels_agree),
    };
    int failed = cmocka_run_group_tests_name("ops", once, NULL, NULL);
    for (int l = 0; l < ISA_COUNT; l++) {
        if (!isa_supported((aflo_isa)l)) {
            /* Not a pass: nothing is counted for a level this CPU lacks. */
            printf("ops_kern at %s: not run, this CPU does not support it\n",
                   isa_name((aflo_isa)l));
            continue;
        }
        char err[128];
        if (isa_select((aflo_isa)l, err, sizeof err) != 0) {
            printf("%s\n", err);
            return 1;
        }
        failed += cmocka_run_group_tests_name(isa_name((aflo_isa)l), per_level, NULL, NULL);
    }
    /* libgomp keeps its worker threads alive until exit, and valgrind
     * reports their thread-local blocks as "possibly lost": release them. */
    omp_pause_resource_all(omp_pause_hard);
    return failed;
}
