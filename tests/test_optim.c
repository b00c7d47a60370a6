/* test_optim.c — AdamW against a double-precision reference, a hand-worked
 * first step and PyTorch golden values; the HF linear warm-up schedule at its
 * boundaries; global-norm clipping below and above the limit. Every ISA
 * level the CPU runs (base/isa.h) on tensors spanning several parallel
 * chunks: AdamW bit-identical to the scalar float formula, the global norm
 * against a long-double sum and identical across levels and thread counts. */
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
#include "train/optim.h"

#define N 5
/* Same tensor and gradients as tests/golden/gen_adamw.py. */
static const float P0[N] = {0.5f, -1.25f, 2.0f, 0.0f, 3e-3f};
static const float GRADS[3][N] = {
    {0.1f, -0.2f, 0.0f, 1e-7f, -3.0f},
    {-0.05f, 0.3f, 0.0f, 2e-7f, 2.5f},
    {0.2f, 0.1f, 0.0f, -1e-7f, -1.0f},
};

/* Printed by tests/golden/gen_adamw.py (torch 1.13, torch.optim.AdamW,
 * foreach=False): parameters after the 3 steps. */
static const float expected_wd[5] = {4.796623290e-01f, -1.242382526e+00f, 1.993007064e+00f,
                                     -3.801556071e-03f, 1.466224995e-02f};
static const float expected_nowd[5] = {4.809350967e-01f, -1.246552348e+00f, 2.000000000e+00f,
                                       -2.184158377e-02f, 1.486178953e-02f};

/* Float results may differ from a double or torch computation by a few ulps
 * of the values involved; parameters here are O(1e-3..2). */
#define TOL_REL 1e-6
#define TOL_ABS 1e-8

static void assert_close(double got, double want) {
    double tol = TOL_ABS + TOL_REL * fabs(want);
    if (fabs(got - want) > tol) fail_msg("got %.10g, want %.10g (tol %.3g)", got, want, tol);
}

/* AdamW written from the formula, in double. */
static void adamw_reference(double *p, const float g[3][N], const float *lrs, double wd, double b1,
                            double b2, double eps) {
    double m[N] = {0}, v[N] = {0};
    for (int t = 1; t <= 3; t++) {
        double lr = lrs[t - 1];
        for (int i = 0; i < N; i++) {
            double gi = g[t - 1][i];
            p[i] -= lr * wd * p[i];
            m[i] = b1 * m[i] + (1 - b1) * gi;
            v[i] = b2 * v[i] + (1 - b2) * gi * gi;
            double mhat = m[i] / (1 - pow(b1, t)), vhat = v[i] / (1 - pow(b2, t));
            p[i] -= lr * mhat / (sqrt(vhat) + eps);
        }
    }
}

static void run_adamw(float *p, const float *lrs, float wd, float b1, float b2, float eps) {
    aflo_adam_state s;
    assert_int_equal(adam_state_init(&s, N), 0);
    memcpy(p, P0, sizeof P0);
    for (long t = 1; t <= 3; t++) adamw_update(p, GRADS[t - 1], &s, lrs[t - 1], wd, b1, b2, eps, t);
    adam_state_free(&s);
}

static void test_adamw_matches_double_reference_with_decay(void **state) {
    (void)state;
    const float lrs[3] = {1e-2f, 2e-2f, 5e-3f};
    float p[N];
    run_adamw(p, lrs, 0.1f, 0.9f, 0.999f, 1e-6f);
    double ref[N];
    for (int i = 0; i < N; i++) ref[i] = P0[i];
    adamw_reference(ref, GRADS, lrs, 0.1f, 0.9f, 0.999f, 1e-6f);
    for (int i = 0; i < N; i++) assert_close(p[i], ref[i]);
}

static void test_adamw_matches_double_reference_without_decay(void **state) {
    (void)state;
    const float lrs[3] = {1e-2f, 1e-2f, 1e-2f};
    float p[N];
    run_adamw(p, lrs, 0.0f, 0.85f, 0.95f, 1e-8f);
    double ref[N];
    for (int i = 0; i < N; i++) ref[i] = P0[i];
    adamw_reference(ref, GRADS, lrs, 0.0, 0.85f, 0.95f, 1e-8f);
    for (int i = 0; i < N; i++) assert_close(p[i], ref[i]);
    /* zero gradient and no decay: untouched */
    assert_true(p[2] == 2.0f);
}

static void test_adamw_matches_pytorch(void **state) {
    (void)state;
    const float lrs_wd[3] = {1e-2f, 2e-2f, 5e-3f}, lrs_nowd[3] = {1e-2f, 1e-2f, 1e-2f};
    float p[N];
    run_adamw(p, lrs_wd, 0.1f, 0.9f, 0.999f, 1e-6f);
    for (int i = 0; i < N; i++) assert_close(p[i], expected_wd[i]);
    run_adamw(p, lrs_nowd, 0.0f, 0.85f, 0.95f, 1e-8f);
    for (int i = 0; i < N; i++) assert_close(p[i], expected_nowd[i]);
}

/* Step 1 by hand: m/(1-b1) = g and v/(1-b2) = g^2, so
 * p1 = p0 (1 - lr wd) - lr g / (|g| + eps). */
static void test_adamw_first_step_by_hand(void **state) {
    (void)state;
    float p[2] = {0.5f, -2.0f};
    const float g[2] = {0.1f, 0.0f};
    aflo_adam_state s;
    assert_int_equal(adam_state_init(&s, 2), 0);
    adamw_update(p, g, &s, 0.01f, 0.1f, 0.9f, 0.999f, 1e-6f, 1);
    /* 0.5 * 0.999 - 0.01 * 0.1 / 0.100001 = 0.4995 - 0.00999990000099999 */
    assert_close(p[0], 0.489500099999);
    assert_close(p[1], -2.0 * 0.999); /* g = 0: decay only */
    assert_close(s.m[0], 0.01);       /* (1 - 0.9) * 0.1 */
    assert_close(s.v[0], 1e-5);       /* (1 - 0.999) * 0.01 */
    adam_state_free(&s);
}

static void test_adam_state_zeroed_and_double_free_safe(void **state) {
    (void)state;
    aflo_adam_state s;
    assert_int_equal(adam_state_init(&s, 7), 0);
    assert_int_equal(s.size, 7);
    for (int i = 0; i < 7; i++) {
        assert_true(s.m[i] == 0.0f);
        assert_true(s.v[i] == 0.0f);
    }
    adam_state_free(&s);
    adam_state_free(&s);
    assert_null(s.m);
    assert_int_equal(adam_state_init(&s, 0), 0); /* empty tensor: nothing to hold */
    adam_state_free(&s);
}

static void test_lr_schedule_boundaries(void **state) {
    (void)state;
    const float peak = 1e-2f;
    /* warmup 6, total 100 */
    assert_close(lr_linear_warmup(peak, 0, 6, 100), 0.0);
    assert_close(lr_linear_warmup(peak, 3, 6, 100), 0.5 * 1e-2f);
    assert_close(lr_linear_warmup(peak, 5, 6, 100), 5.0 / 6.0 * 1e-2f);
    assert_close(lr_linear_warmup(peak, 6, 6, 100), 1e-2f);        /* (100-6)/94 */
    assert_close(lr_linear_warmup(peak, 53, 6, 100), 0.5 * 1e-2f); /* 47/94 */
    assert_close(lr_linear_warmup(peak, 99, 6, 100), 1.0 / 94 * 1e-2f);
    assert_close(lr_linear_warmup(peak, 100, 6, 100), 0.0);
    assert_close(lr_linear_warmup(peak, 120, 6, 100), 0.0); /* clamped at 0 */
    /* no warm-up: starts at the peak */
    assert_close(lr_linear_warmup(peak, 0, 0, 100), 1e-2f);
    assert_close(lr_linear_warmup(peak, 50, 0, 100), 0.5 * 1e-2f);
    assert_close(lr_linear_warmup(peak, 100, 0, 100), 0.0);
    /* warm-up as long as training: HF divides by max(1, 0) */
    assert_close(lr_linear_warmup(peak, 9, 10, 10), 0.9 * 1e-2f);
    assert_close(lr_linear_warmup(peak, 10, 10, 10), 0.0);
}

static void test_global_norm_skips_null(void **state) {
    (void)state;
    const float a[2] = {3.0f, 4.0f}, c[1] = {12.0f};
    const float *g[3] = {a, NULL, c};
    const size_t sizes[3] = {2, 99, 1};
    assert_close(grad_global_norm(g, sizes, 3), 13.0);
    assert_close(grad_global_norm(g, sizes, 0), 0.0);
}

static void test_clip_below_max_leaves_grads(void **state) {
    (void)state;
    float a[2] = {3.0f, 4.0f}, c[1] = {12.0f};
    float *g[3] = {a, NULL, c};
    const size_t sizes[3] = {2, 5, 1};
    assert_close(grad_clip_global_norm(g, sizes, 3, 14.0), 13.0);
    assert_true(a[0] == 3.0f && a[1] == 4.0f && c[0] == 12.0f);
}

static void test_clip_above_max_scales_grads(void **state) {
    (void)state;
    float a[2] = {3.0f, 4.0f}, c[1] = {12.0f};
    float *g[3] = {a, NULL, c};
    const size_t sizes[3] = {2, 5, 1};
    assert_close(grad_clip_global_norm(g, sizes, 3, 0.1), 13.0);
    const double coef = 0.1 / (13.0 + 1e-6);
    assert_close(a[0], 3.0 * coef);
    assert_close(a[1], 4.0 * coef);
    assert_close(c[0], 12.0 * coef);
    const float *cg[3] = {a, NULL, c};
    assert_close(grad_global_norm(cg, sizes, 3), 0.1 * 13.0 / (13.0 + 1e-6));
}

static void test_clip_at_exactly_max_still_scales(void **state) {
    /* torch divides by norm + 1e-6, so coef < 1 even at norm == max_norm. */
    (void)state;
    float a[2] = {3.0f, 4.0f};
    float *g[1] = {a};
    const size_t sizes[1] = {2};
    assert_close(grad_clip_global_norm(g, sizes, 1, 5.0), 5.0);
    assert_close(a[0], 3.0 * 5.0 / (5.0 + 1e-6));
    assert_true(a[0] < 3.0f);
}

static void test_clip_nonfinite_norm_leaves_grads(void **state) {
    (void)state;
    float a[2] = {INFINITY, 1.0f};
    float *g[1] = {a};
    const size_t sizes[1] = {2};
    assert_true(isinf(grad_clip_global_norm(g, sizes, 1, 1.0)));
    assert_true(a[1] == 1.0f);
}

/* ------------------------------------------------ every ISA level, big tensors */

/* Three 64K-element chunks and a ragged tail: exercises the parallel split. */
#define BIG ((size_t)3 * 65536 + 123)

static void fill_uniform(float *x, size_t n, uint64_t seed, float lo, float hi) {
    aflo_rng r;
    rng_seed(&r, seed);
    for (size_t i = 0; i < n; i++) x[i] = rng_uniform_range(&r, lo, hi);
}

/* The scalar float loop adamw_update ran before it was vectorised; the
 * kernels promise its exact bits (no FMA, correctly rounded sqrt and div). */
static void adamw_scalar(float *param, const float *grad, float *m, float *v, size_t n, float lr,
                         float wd, float beta1, float beta2, float eps, long t) {
    const double bias1 = 1.0 - pow((double)beta1, (double)t);
    const double bias2 = 1.0 - pow((double)beta2, (double)t);
    const float decay = (float)(1.0 - (double)lr * (double)wd);
    const float one_b1 = (float)(1.0 - (double)beta1), one_b2 = (float)(1.0 - (double)beta2);
    const float step_size = (float)((double)lr / bias1), bias2_sqrt = (float)sqrt(bias2);
    for (size_t i = 0; i < n; i++) {
        volatile float g = grad[i]; /* volatile: keep this loop scalar, unfused */
        float p = param[i] * decay;
        m[i] = m[i] * beta1 + g * one_b1;
        v[i] = v[i] * beta2 + one_b2 * g * g;
        float denom = sqrtf(v[i]) / bias2_sqrt + eps;
        param[i] = p - step_size * m[i] / denom;
    }
}

static void select_level(int level) {
    char err[128];
    if (isa_select((aflo_isa)level, err, sizeof err) != 0) fail_msg("%s", err);
}

static void test_adamw_every_level_matches_scalar(void **state) {
    (void)state;
    float *p0 = malloc(BIG * sizeof *p0), *g = malloc(3 * BIG * sizeof *g);
    float *p = malloc(BIG * sizeof *p), *pr = malloc(BIG * sizeof *pr);
    float *mr = calloc(BIG, sizeof *mr), *vr = calloc(BIG, sizeof *vr);
    assert_true(p0 && g && p && pr && mr && vr);
    fill_uniform(p0, BIG, 1, -2.0f, 2.0f);
    fill_uniform(g, 3 * BIG, 2, -1.0f, 1.0f);
    for (size_t i = 0; i < BIG; i += 97) g[i] = 0.0f; /* zero gradients: v stays tiny */
    memcpy(pr, p0, BIG * sizeof *pr);
    const float lrs[3] = {1e-2f, 3e-2f, 5e-3f};
    for (long t = 1; t <= 3; t++)
        adamw_scalar(pr, g + (t - 1) * BIG, mr, vr, BIG, lrs[t - 1], 0.1f, 0.9f, 0.999f, 1e-6f, t);
    aflo_isa before = isa_level();
    int ran = 0;
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        for (int threads = 1; threads <= 2; threads++) {
            engine_set_threads(threads);
            aflo_adam_state s;
            assert_int_equal(adam_state_init(&s, BIG), 0);
            memcpy(p, p0, BIG * sizeof *p);
            for (long t = 1; t <= 3; t++)
                adamw_update(p, g + (t - 1) * BIG, &s, lrs[t - 1], 0.1f, 0.9f, 0.999f, 1e-6f, t);
            for (size_t i = 0; i < BIG; i++)
                if (p[i] != pr[i] || s.m[i] != mr[i] || s.v[i] != vr[i])
                    fail_msg("level %s, %d threads, element %zu: p %.9g vs %.9g",
                             isa_name((aflo_isa)level), threads, i, p[i], pr[i]);
            adam_state_free(&s);
        }
        ran++;
    }
    assert_true(ran >= 1);
    select_level(before);
    engine_set_threads(0);
    free(p0), free(g), free(p), free(pr), free(mr), free(vr);
}

static void test_global_norm_every_level(void **state) {
    (void)state;
    /* Tensors below, at and above one chunk, and one with a NULL gradient. */
    const size_t sizes[4] = {BIG, 5, 65536, 300001};
    float *g[4];
    long double ref = 0.0L;
    for (int k = 0; k < 4; k++) {
        g[k] = malloc(sizes[k] * sizeof(float));
        assert_non_null(g[k]);
        fill_uniform(g[k], sizes[k], 10 + (uint64_t)k, -3.0f, 3.0f);
        if (k == 1) continue; /* passed as NULL below */
        for (size_t i = 0; i < sizes[k]; i++) ref += (long double)g[k][i] * g[k][i];
    }
    const float *cg[4] = {g[0], NULL, g[2], g[3]};
    double want = sqrt((double)ref), first = 0.0;
    aflo_isa before = isa_level();
    bool have_first = false;
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        select_level(level);
        for (int threads = 1; threads <= 2; threads++) {
            engine_set_threads(threads);
            double got = grad_global_norm(cg, sizes, 4);
            /* 1e-12: valgrind runs x87 long double at double precision,
             * which leaves the reference itself ~3e-13 off */
            if (fabs(got - want) > 1e-12 * want) fail_msg("norm %.17g vs %.17g", got, want);
            if (!have_first) first = got, have_first = true;
            /* fixed order: the same bits at every level and thread count */
            assert_true(got == first);
        }
    }
    /* Clipping scales every element by the same float coefficient. */
    float *keep = malloc(sizes[3] * sizeof *keep);
    assert_non_null(keep);
    memcpy(keep, g[3], sizes[3] * sizeof *keep);
    float *mg[4] = {g[0], NULL, g[2], g[3]};
    assert_true(grad_clip_global_norm(mg, sizes, 4, 1.0) == first);
    const float c = (float)(1.0 / (first + 1e-6));
    for (size_t i = 0; i < sizes[3]; i++) assert_true(g[3][i] == keep[i] * c);
    select_level(before);
    engine_set_threads(0);
    free(keep);
    for (int k = 0; k < 4; k++) free(g[k]);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_adamw_matches_double_reference_with_decay),
        cmocka_unit_test(test_adamw_matches_double_reference_without_decay),
        cmocka_unit_test(test_adamw_matches_pytorch),
        cmocka_unit_test(test_adamw_first_step_by_hand),
        cmocka_unit_test(test_adam_state_zeroed_and_double_free_safe),
        cmocka_unit_test(test_lr_schedule_boundaries),
        cmocka_unit_test(test_global_norm_skips_null),
        cmocka_unit_test(test_clip_below_max_leaves_grads),
        cmocka_unit_test(test_clip_above_max_scales_grads),
        cmocka_unit_test(test_clip_at_exactly_max_still_scales),
        cmocka_unit_test(test_clip_nonfinite_norm_leaves_grads),
        cmocka_unit_test(test_adamw_every_level_matches_scalar),
        cmocka_unit_test(test_global_norm_every_level),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
