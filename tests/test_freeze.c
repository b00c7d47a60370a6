/* test_freeze.c — the AFLoRA freezing score, cubic schedule and decision
 * rule (aflora.md §3-4), against hand-worked numbers and an independent
 * sort-based reference; checkpoint round trip and corrupt blobs. The score
 * update at every ISA level the CPU runs against a double reference, with
 * the same saved state at every level and thread count. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "train/freeze.h"
#include "base/isa.h"
#include "base/rng.h"
#include "model/gemm.h"

#define ERRLEN 256

static aflo_freeze_config cfg(double b1, double b2, int dt, long T, long ti, long tf) {
    aflo_freeze_config c = {b1, b2, dt, T, ti, tf, FREEZE_SENS_GRAD};
    return c;
}

static aflo_freezer *make(const aflo_freeze_config *c, int n, const size_t *sizes,
                          const bool *trainable) {
    char err[ERRLEN] = "";
    aflo_freezer *f = freezer_create(c, n, sizes, trainable, err, sizeof err);
    if (!f) fail_msg("freezer_create: %s", err);
    return f;
}

static void assert_near(double got, double want, double tol) {
    if (fabs(got - want) > tol) fail_msg("got %.12g, want %.12g", got, want);
}

/* ---------------------------------------------------------------- schedule */

static void test_schedule_hand_cases(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.85, 0.95, 10, 100, 10, 30);
    assert_true(schedule_remaining_fraction(&c, 1) == 1.0);
    assert_true(schedule_remaining_fraction(&c, 10) == 1.0);
    assert_near(schedule_remaining_fraction(&c, 11), pow(59.0 / 60.0, 3), 1e-15);
    assert_near(schedule_remaining_fraction(&c, 40), 0.125, 1e-15);    /* (1 - 30/60)^3 */
    assert_near(schedule_remaining_fraction(&c, 55), 0.015625, 1e-15); /* (1 - 45/60)^3 */
    assert_true(schedule_remaining_fraction(&c, 70) == 0.0);           /* (1 - 60/60)^3 */
    assert_true(schedule_remaining_fraction(&c, 71) == 0.0);
    assert_true(schedule_remaining_fraction(&c, 100) == 0.0);

    aflo_freeze_config z = cfg(0.85, 0.95, 10, 10, 0, 0); /* no warm-up, no final phase */
    assert_near(schedule_remaining_fraction(&z, 1), 0.729, 1e-15);
    assert_true(schedule_remaining_fraction(&z, 10) == 0.0);
}

static void test_schedule_without_middle_phase(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.85, 0.95, 1, 10, 4, 6); /* T - t_i - t_f = 0 */
    assert_true(schedule_remaining_fraction(&c, 4) == 1.0);
    assert_true(schedule_remaining_fraction(&c, 5) == 0.0);
    assert_true(schedule_remaining_fraction(&c, 10) == 0.0);
    aflo_freeze_config o = cfg(0.85, 0.95, 1, 10, 6, 6); /* phases overlap: warm-up wins */
    assert_true(schedule_remaining_fraction(&o, 5) == 1.0);
    assert_true(schedule_remaining_fraction(&o, 6) == 1.0);
    assert_true(schedule_remaining_fraction(&o, 7) == 0.0);
}

/* ----------------------------------------------------------- score arithmetic */

/* Two size-1 matrices carry the element streams a and b, a size-2 matrix
 * carries both, so its score is their mean. beta1 = beta2 = 0.5, delta_t = 2.
 *   t=1: a=1,  b=-2  -> window sum [1,2], count 1
 *   t=2: boundary, mean [1,2]: Ibar = .5*[1,2] = [.5,1];
 *        Ubar = .5*|[1,2]-[.5,1]| = [.25,.5]   (new Ibar)
 *        window restarts with |[3,0]|
 *   t=3: a=-1, b=4  -> window [4,4], count 2
 *   t=4: boundary, mean [2,2]: Ibar = .5*[.5,1] + .5*[2,2] = [1.25,1.5];
 *        Ubar = .5*[.25,.5] + .5*|[2,2]-[1.25,1.5]| = [.5,.5]; window = |[5,-1]|
 *   t=5: a=1, b=1   -> window [6,2]
 *   t=6: boundary, mean [3,1]: Ibar = [.625+1.5, .75+.5] = [2.125,1.25];
 *        Ubar = [.25+.5*.875, .25+.5*.25] = [.6875,.375] */
static void test_window_and_ema_by_hand(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.5, 0.5, 2, 100, 100, 0);
    const size_t sizes[3] = {1, 1, 2};
    const bool tr[3] = {true, true, true};
    aflo_freezer *f = make(&c, 3, sizes, tr);
    const float ga[6] = {1, 3, -1, 5, 1, 0}, gb[6] = {-2, 0, 4, -1, 1, 0};
    const double want[6][3] = {
        {0, 0, 0},
        {0.125, 0.5, 0.3125},
        {0.125, 0.5, 0.3125},
        {1.25 * 0.5, 1.5 * 0.5, (0.625 + 0.75) / 2},
        {0.625, 0.75, 0.6875},
        {2.125 * 0.6875, 1.25 * 0.375, (2.125 * 0.6875 + 1.25 * 0.375) / 2},
    };
    for (long t = 1; t <= 6; t++) {
        float both[2] = {ga[t - 1], gb[t - 1]};
        const float *g[3] = {&ga[t - 1], &gb[t - 1], both};
        freeze_score_update(f, t, g, NULL);
        for (int i = 0; i < 3; i++) assert_near(freezer_matrix_score(f, i), want[t - 1][i], 1e-12);
    }
    freezer_free(f);
}

/* Default betas, one boundary: g = 2 at t = 1; at t = 2 Ibar = .15*2 = .3,
 * Ubar = .05*|2 - .3| = .085, score .0255. */
static void test_default_betas_one_boundary(void **state) {
    (void)state;
    aflo_freeze_config c =
        cfg(AFLO_FREEZE_DEFAULT_BETA1, AFLO_FREEZE_DEFAULT_BETA2, 2, 100, 100, 0);
    const size_t sizes[1] = {1};
    const bool tr[1] = {true};
    aflo_freezer *f = make(&c, 1, sizes, tr);
    const float two = 2.0f, seven = 7.0f;
    const float *g1[1] = {&two}, *g2[1] = {&seven};
    freeze_score_update(f, 1, g1, NULL);
    freeze_score_update(f, 2, g2, NULL); /* 7 starts the next window, not this boundary */
    assert_near(freezer_matrix_score(f, 0), 0.0255, 1e-8);
    freezer_free(f);
}

/* ---------------------------------------------------------------- decisions */

/* Three matrices with constant gradients, beta1 = beta2 = 0.5, delta_t = 2,
 * decision at t = 2: the window holds only g, so Ibar = g/2, Ubar = g/4 and
 * each element scores g^2/8:
 *   M0 g=[1,1]      -> [.125,.125]         s = .125
 *   M1 g=[2,3]      -> [.5,1.125]          s = .8125
 *   M2 g=[0,0,1,4]  -> [0,0,.125,2]        s = .53125
 * sorted (N = 8): 0 0 .125 .125 .125 .5 1.125 2 */
static const size_t THREE_SIZES[3] = {2, 2, 4};
static const bool THREE_TRAIN[3] = {true, true, true};
static const float G_M0[2] = {1, 1}, G_M1[2] = {2, 3}, G_M2[4] = {0, 0, 1, 4};

static void three_update(aflo_freezer *f, long t) {
    const float *g[3] = {freezer_is_frozen(f, 0) ? NULL : G_M0,
                         freezer_is_frozen(f, 1) ? NULL : G_M1,
                         freezer_is_frozen(f, 2) ? NULL : G_M2};
    freeze_score_update(f, t, g, NULL);
}

static void test_k_zero_freezes_nothing(void **state) {
    (void)state;
    /* r(2) = (1 - 2/60)^3 = .9033; k = floor(8 * .0967) = 0, although three
     * element scores are at or near zero. */
    aflo_freeze_config c = cfg(0.5, 0.5, 2, 200, 0, 140);
    aflo_freezer *f = make(&c, 3, THREE_SIZES, THREE_TRAIN);
    int out[3];
    three_update(f, 1);
    assert_int_equal(freeze_decide(f, 1, out), 0);
    three_update(f, 2);
    assert_int_equal(freeze_decide(f, 2, out), 0);
    assert_int_equal(freezer_trainable_count(f), 3);
    freezer_free(f);
}

static void test_threshold_decision_three_matrices(void **state) {
    (void)state;
    /* T - t_i - t_f = 5: r(2) = (1 - 2/5)^3 = .216, k = floor(8 * .784) = 6,
     * threshold = 6th smallest = .5: only M0 (.125) is below. M2 survives
     * although 3 of its 4 elements are below the threshold. */
    aflo_freeze_config c = cfg(0.5, 0.5, 2, 10, 0, 5);
    aflo_freezer *f = make(&c, 3, THREE_SIZES, THREE_TRAIN);
    int out[3] = {-1, -1, -1};
    three_update(f, 1);
    assert_int_equal(freeze_decide(f, 1, out), 0);
    three_update(f, 2);
    assert_near(freezer_matrix_score(f, 0), 0.125, 1e-12);
    assert_near(freezer_matrix_score(f, 1), 0.8125, 1e-12);
    assert_near(freezer_matrix_score(f, 2), 0.53125, 1e-12);
    size_t blob_before = freezer_state_size(f);
    assert_int_equal(freeze_decide(f, 2, out), 1);
    assert_int_equal(out[0], 0);
    assert_true(freezer_is_frozen(f, 0));
    assert_int_equal(freezer_frozen_step(f, 0), 2);
    assert_int_equal(freezer_frozen_step(f, 1), -1);
    assert_int_equal(freezer_frozen_step(f, 2), -1);
    assert_true(freezer_matrix_score(f, 0) == 0.0);        /* state freed */
    assert_near(freezer_frozen_score(f, 0), 0.125, 1e-12); /* kept for reports */
    assert_true(freezer_frozen_score(f, 1) == 0.0);
    assert_int_equal(freezer_trainable_count(f), 2);
    /* M0's three score arrays are gone */
    assert_int_equal(blob_before - freezer_state_size(f), 3 * sizeof(float) * 2);

    /* t=3 with M0's gradient NULL: it is skipped. At t=4 the window is [g, g]
     * (mean g): Ibar = .5*g/2 + .5*g = .75g, Ubar = .5*g/4 + .5*.25g = .25g,
     * element score .1875 g^2: M1 [.75, 1.6875] s = 1.21875,
     * M2 [0, 0, .1875, 3] s = .796875. r(4) = (1/5)^3 = .008, N = 6,
     * k = floor(6 * .992) = 5, threshold 1.6875: both freeze. */
    three_update(f, 3);
    assert_int_equal(freeze_decide(f, 3, out), 0);
    three_update(f, 4);
    assert_near(freezer_matrix_score(f, 1), 1.21875, 1e-12);
    assert_near(freezer_matrix_score(f, 2), 0.796875, 1e-12);
    assert_int_equal(freeze_decide(f, 4, out), 2);
    assert_int_equal(out[0], 1);
    assert_int_equal(out[1], 2);
    assert_int_equal(freezer_frozen_step(f, 0), 2);
    assert_int_equal(freezer_frozen_step(f, 1), 4);
    assert_int_equal(freezer_frozen_step(f, 2), 4);
    assert_near(freezer_frozen_score(f, 1), 1.21875, 1e-12);
    assert_near(freezer_frozen_score(f, 2), 0.796875, 1e-12);
    assert_int_equal(freezer_trainable_count(f), 0);

    /* nothing left: scoring stops (all gradients NULL), no more decisions */
    const float *none[3] = {NULL, NULL, NULL};
    for (long t = 5; t <= 10; t++) {
        freeze_score_update(f, t, none, NULL);
        assert_int_equal(freeze_decide(f, t, out), 0);
    }
    freezer_free(f);
}

static void test_threshold_is_strict(void **state) {
    (void)state;
    /* T - t_i - t_f = 6: r(2) = (2/3)^3 = 8/27, k = floor(8 * 19/27) = 5,
     * threshold = .125 = s(M0) exactly: not strictly below, nothing freezes. */
    aflo_freeze_config c = cfg(0.5, 0.5, 2, 11, 0, 5);
    aflo_freezer *f = make(&c, 3, THREE_SIZES, THREE_TRAIN);
    int out[3];
    three_update(f, 1);
    three_update(f, 2);
    assert_int_equal(freeze_decide(f, 2, out), 0);
    assert_int_equal(freezer_trainable_count(f), 3);
    freezer_free(f);
}

/* Ten size-1 matrices with constant gradients 1..10, delta_t = 3, T = 30,
 * t_i = 3, t_f = 10 (middle phase 4..20, span 17). All windows are equal, so
 * every score is c(t) g^2: order by g. At a decision with N left, k =
 * floor(N (1 - r)) and the k-1 smallest left freeze (scores distinct):
 *   t=6:  r = (14/17)^3 = .5585, N=10, k=4 -> g=1,2,3
 *   t=9:  r = (11/17)^3 = .2709, N=7,  k=5 -> g=4..7
 *   t=12: r = (8/17)^3  = .1042, N=3,  k=2 -> g=8
 *   t=15: r = (5/17)^3,  N=2, k=1; t=18: r = (2/17)^3, N=2, k=1 -> none
 *   t=21: first final-phase step -> g=9,10
 * Off-multiple steps would freeze if decided (t=7: k = floor(7*.553) = 3). */
static void test_decisions_only_at_multiples_and_final_once(void **state) {
    (void)state;
    enum { M = 10 };
    aflo_freeze_config c = cfg(0.85, 0.95, 3, 30, 3, 10);
    size_t sizes[M];
    bool tr[M];
    float grad[M];
    for (int j = 0; j < M; j++) {
        sizes[j] = 1;
        tr[j] = true;
        grad[j] = (float)(j + 1);
    }
    aflo_freezer *f = make(&c, M, sizes, tr);
    const long want_step[M] = {6, 6, 6, 9, 9, 9, 9, 12, 21, 21};
    int out[M];
    int final_calls_with_freezes = 0;
    for (long t = 1; t <= 30; t++) {
        const float *g[M];
        for (int j = 0; j < M; j++) g[j] = freezer_is_frozen(f, j) ? NULL : &grad[j];
        freeze_score_update(f, t, g, NULL);
        int nf = freeze_decide(f, t, out);
        assert_true(nf >= 0);
        if (nf > 0) {
            assert_true(t == 6 || t == 9 || t == 12 || t == 21);
            for (int k = 0; k < nf; k++) assert_int_equal(want_step[out[k]], t);
            if (t > 20) final_calls_with_freezes++;
        }
    }
    assert_int_equal(final_calls_with_freezes, 1);
    for (int j = 0; j < M; j++) assert_int_equal(freezer_frozen_step(f, j), want_step[j]);
    assert_int_equal(freezer_trainable_count(f), 0);
    freezer_free(f);
}

/* When every element score is equal, no matrix mean falls strictly below
 * the threshold, so two identical uniform matrices train through the middle
 * phase and freeze together at the first final-phase step (T - t_f + 1 = 11),
 * exactly once. Matrix 1 never trains. |g| = .5 throughout, delta_t = 5:
 *   t=5:  Ibar = .15*.5 = .075, Ubar = .05*(.5-.075) = .02125
 *   t=10: Ibar = .85*.075 + .15*.5 = .13875,
 *         Ubar = .95*.02125 + .05*(.5-.13875) = .03825
 * so the score when they freeze is .13875*.03825 = .0053071875. */
static void test_final_phase_freezes_all_left_once(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.85, 0.95, 5, 20, 0, 10);
    const size_t sizes[3] = {3, 4, 3};
    const bool tr[3] = {true, false, true};
    aflo_freezer *f = make(&c, 3, sizes, tr);
    assert_true(freezer_is_frozen(f, 1));
    assert_int_equal(freezer_frozen_step(f, 1), 0);
    assert_int_equal(freezer_trainable_count(f), 2);
    const float g[3] = {0.5f, -0.5f, 0.5f}; /* all element scores equal */
    int out[3];
    for (long t = 1; t <= 20; t++) {
        const float *gs[3] = {freezer_is_frozen(f, 0) ? NULL : g, NULL,
                              freezer_is_frozen(f, 2) ? NULL : g};
        freeze_score_update(f, t, gs, NULL);
        int nf = freeze_decide(f, t, out);
        if (t == 11) {
            assert_int_equal(nf, 2);
            assert_int_equal(out[0], 0);
            assert_int_equal(out[1], 2);
        } else {
            assert_int_equal(nf, 0);
        }
    }
    assert_int_equal(freezer_frozen_step(f, 0), 11);
    assert_int_equal(freezer_frozen_step(f, 1), 0);
    assert_int_equal(freezer_frozen_step(f, 2), 11);
    assert_near(freezer_frozen_score(f, 0), 0.0053071875, 1e-9);
    assert_near(freezer_frozen_score(f, 2), 0.0053071875, 1e-9);
    assert_true(freezer_frozen_score(f, 1) == 0.0);
    freezer_free(f);
}

/* t_i = 6 > T - t_f = 4: steps 5 and 6 are still warm-up; the final phase
 * starts at 7. */
static void test_overlapping_phases_warmup_first(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.85, 0.95, 1, 10, 6, 6);
    const size_t sizes[1] = {2};
    const bool tr[1] = {true};
    aflo_freezer *f = make(&c, 1, sizes, tr);
    const float g[2] = {1, 2};
    const float *gs[1] = {g};
    int out[1];
    for (long t = 1; t <= 6; t++) {
        freeze_score_update(f, t, gs, NULL);
        assert_int_equal(freeze_decide(f, t, out), 0);
    }
    freeze_score_update(f, 7, gs, NULL);
    assert_int_equal(freeze_decide(f, 7, out), 1);
    assert_int_equal(freezer_frozen_step(f, 0), 7);
    freezer_free(f);
}

/* Many matrices, integer gradients 0..4 (lots of tied scores), decision at
 * t = 2 with beta1 = beta2 = 0.5: element score = (g/2)*(g/4) in float. The
 * expected frozen set comes from sorting all element scores with qsort. */
static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static void test_decision_matches_sort_reference(void **state) {
    (void)state;
    enum { M = 40, MAXSZ = 24 };
    const long spans[4] = {3, 5, 9, 40};
    int froze = 0, kept = 0; /* the trials must exercise both outcomes */
    for (int trial = 0; trial < 8; trial++) {
        aflo_rng rng;
        rng_seed(&rng, 1000 + (uint64_t)trial);
        long span = spans[trial % 4];
        aflo_freeze_config c = cfg(0.5, 0.5, 2, span + 3, 0, 3);
        size_t sizes[M];
        bool tr[M];
        float grads[M][MAXSZ];
        size_t total = 0;
        for (int j = 0; j < M; j++) {
            sizes[j] = 1 + (size_t)rng_below(&rng, MAXSZ);
            tr[j] = rng_below(&rng, 8) != 0;
            if (tr[j]) total += sizes[j];
            int scale = (int)rng_below(&rng, 3); /* some matrices mostly small */
            for (size_t e = 0; e < sizes[j]; e++)
                grads[j][e] = (float)rng_below(&rng, 2 + 2 * (uint64_t)scale) *
                              (rng_below(&rng, 2) ? 1.f : -1.f);
        }
        /* reference */
        float *all = malloc(total * sizeof(float));
        assert_non_null(all);
        double mean[M];
        size_t at = 0;
        for (int j = 0; j < M; j++) {
            if (!tr[j]) continue;
            double sum = 0;
            for (size_t e = 0; e < sizes[j]; e++) {
                float a = fabsf(grads[j][e]);
                float s = (0.5f * a) * (0.25f * a);
                all[at++] = s;
                sum += s;
            }
            mean[j] = sum / (double)sizes[j];
        }
        qsort(all, total, sizeof(float), cmp_float);
        double x = 1.0 - 2.0 / (double)span;
        size_t k = (size_t)floor((double)total * (1.0 - x * x * x));
        bool want[M] = {false};
        int nwant = 0;
        for (int j = 0; j < M; j++)
            if (tr[j] && k > 0 && mean[j] < all[k - 1]) {
                want[j] = true;
                nwant++;
            }
        free(all);

        aflo_freezer *f = make(&c, M, sizes, tr);
        const float *g[M];
        for (int j = 0; j < M; j++) g[j] = tr[j] ? grads[j] : NULL;
        freeze_score_update(f, 1, g, NULL);
        freeze_score_update(f, 2, g, NULL);
        int out[M];
        int nf = freeze_decide(f, 2, out);
        assert_int_equal(nf, nwant);
        for (int j = 0; j < M; j++) {
            assert_int_equal(tr[j] && freezer_is_frozen(f, j), want[j]);
            if (want[j]) assert_int_equal(freezer_frozen_step(f, j), 2);
            if (tr[j]) {
                froze += want[j];
                kept += !want[j];
            }
        }
        freezer_free(f);
    }
    assert_true(froze > 0 && kept > 0);
}

/* ------------------------------------------------------------- checkpoints */

enum { RT_M = 10, RT_MAX = 12, RT_T = 80 };
static const size_t RT_SIZES[RT_M] = {5, 8, 3, 12, 7, 4, 6, 9, 2, 10};
static const bool RT_TRAIN[RT_M] = {true, true, false, true, true, true, true, true, true, true};

/* Deterministic gradients per (step, matrix): scales differ by matrix and
 * drift with the step so that matrices freeze at different times. */
static void rt_grads(long t, float g[RT_M][RT_MAX]) {
    for (int j = 0; j < RT_M; j++) {
        float scale = 0.05f * (float)(j + 1) * (1.0f + 0.02f * (float)((t * (j + 3)) % 7));
        for (size_t e = 0; e < RT_SIZES[j]; e++) {
            uint64_t h = rng_hash((uint64_t)t * 131 + (uint64_t)j, e);
            g[j][e] = scale * ((float)(h >> 40) / 16777216.0f * 2.0f - 1.0f);
        }
    }
}

static int rt_step(aflo_freezer *f, long t, int *out) {
    float g[RT_M][RT_MAX];
    rt_grads(t, g);
    const float *gp[RT_M];
    for (int j = 0; j < RT_M; j++) gp[j] = freezer_is_frozen(f, j) ? NULL : g[j];
    freeze_score_update(f, t, gp, NULL);
    return freeze_decide(f, t, out);
}

static aflo_freeze_config rt_cfg(void) { return cfg(0.85, 0.95, 4, RT_T, 4, 20); }

static void *save_blob(const aflo_freezer *f, size_t *n) {
    *n = freezer_state_size(f);
    void *b = malloc(*n);
    assert_non_null(b);
    assert_int_equal(freezer_save(f, b, *n), 0);
    return b;
}

static void test_save_load_round_trip(void **state) {
    (void)state;
    const long SAVE_AT = 13; /* saved with a window of two gradients open */
    aflo_freeze_config c = rt_cfg();
    aflo_freezer *a = make(&c, RT_M, RT_SIZES, RT_TRAIN);
    aflo_freezer *b = make(&c, RT_M, RT_SIZES, RT_TRAIN);
    aflo_freezer *done = make(&c, RT_M, RT_SIZES, RT_TRAIN);
    int out_a[RT_M], out_b[RT_M], out_d[RT_M];
    for (long t = 1; t <= SAVE_AT; t++) assert_true(rt_step(a, t, out_a) >= 0);
    int frozen_before = (RT_M - 1) - freezer_trainable_count(a);
    assert_true(frozen_before >= 1);              /* the blob holds some frozen matrices */
    assert_true(freezer_trainable_count(a) >= 3); /* and some with live scores */
    /* `done` ran to the end: everything frozen, state freed; loading must re-create it */
    for (long t = 1; t <= RT_T; t++) rt_step(done, t, out_d);
    assert_int_equal(freezer_trainable_count(done), 0);

    size_t n;
    void *blob = save_blob(a, &n);
    char err[ERRLEN];
    assert_int_equal(freezer_load(b, blob, n, err, sizeof err), 0);
    assert_int_equal(freezer_load(done, blob, n, err, sizeof err), 0);
    free(blob);
    for (int j = 0; j < RT_M; j++) {
        assert_int_equal(freezer_frozen_step(b, j), freezer_frozen_step(a, j));
        assert_true(freezer_matrix_score(b, j) == freezer_matrix_score(a, j));
        assert_true(freezer_matrix_score(done, j) == freezer_matrix_score(a, j));
    }

    int middle_freezes_after = 0;
    for (long t = SAVE_AT + 1; t <= RT_T; t++) {
        int na = rt_step(a, t, out_a), nb = rt_step(b, t, out_b), nd = rt_step(done, t, out_d);
        assert_int_equal(na, nb);
        assert_int_equal(na, nd);
        for (int k = 0; k < na; k++) {
            assert_int_equal(out_a[k], out_b[k]);
            assert_int_equal(out_a[k], out_d[k]);
        }
        if (na > 0 && t <= RT_T - 20) middle_freezes_after++;
        for (int j = 0; j < RT_M; j++) {
            assert_true(freezer_matrix_score(b, j) == freezer_matrix_score(a, j));
            assert_true(freezer_matrix_score(done, j) == freezer_matrix_score(a, j));
        }
    }
    assert_true(middle_freezes_after >= 2); /* the continuation decided something */
    for (int j = 0; j < RT_M; j++) {
        assert_int_equal(freezer_frozen_step(b, j), freezer_frozen_step(a, j));
        assert_int_equal(freezer_frozen_step(done, j), freezer_frozen_step(a, j));
        assert_true(freezer_frozen_score(b, j) == freezer_frozen_score(a, j));
        assert_true(freezer_frozen_score(done, j) == freezer_frozen_score(a, j));
        if (j != 2) assert_true(freezer_frozen_score(a, j) > 0.0);
    }
    freezer_free(a);
    freezer_free(b);
    freezer_free(done);
}

/* A failed load must say why and leave the freezer exactly as it was. */
static void expect_rejected(aflo_freezer *f, const void *blob, size_t n, const char *why) {
    size_t n0;
    void *before = save_blob(f, &n0);
    char err[ERRLEN] = "";
    assert_int_equal(freezer_load(f, blob, n, err, sizeof err), -1);
    if (!strstr(err, why)) fail_msg("error '%s' does not mention '%s'", err, why);
    size_t n1;
    void *after = save_blob(f, &n1);
    assert_int_equal(n0, n1);
    assert_memory_equal(before, after, n0);
    free(before);
    free(after);
}

static void test_bad_blobs_rejected(void **state) {
    (void)state;
    aflo_freeze_config c = rt_cfg();
    aflo_freezer *src = make(&c, RT_M, RT_SIZES, RT_TRAIN);
    aflo_freezer *dst = make(&c, RT_M, RT_SIZES, RT_TRAIN);
    int out[RT_M];
    for (long t = 1; t <= 9; t++) {
        rt_step(src, t, out);
        rt_step(dst, t, out);
    }
    for (long t = 10; t <= 12; t++) rt_step(src, t, out); /* dst differs from src */
    size_t n;
    unsigned char *blob = save_blob(src, &n);
    unsigned char *bad = malloc(n);
    assert_non_null(bad);

    assert_int_equal(freezer_save(src, bad, n - 1), -1); /* buffer too small */

    expect_rejected(dst, blob, n - 1, "checksum"); /* truncated */
    expect_rejected(dst, blob, 10, "short");
    expect_rejected(dst, NULL, 0, "short");
    memcpy(bad, blob, n);
    bad[0] ^= 1;
    expect_rejected(dst, bad, n, "magic");
    memcpy(bad, blob, n);
    bad[4] = 2;
    expect_rejected(dst, bad, n, "version");
    memcpy(bad, blob, n);
    bad[n / 2] ^= 0x40; /* a score bit flipped */
    expect_rejected(dst, bad, n, "checksum");
    memcpy(bad, blob, n);
    bad[n - 1] ^= 1; /* checksum itself */
    expect_rejected(dst, bad, n, "checksum");

    /* another freezer's blob: other delta_t; other sizes; other trainable set */
    aflo_freeze_config c2 = c;
    c2.delta_t = 3;
    aflo_freezer *other = make(&c2, RT_M, RT_SIZES, RT_TRAIN);
    size_t n2;
    void *b2 = save_blob(other, &n2);
    expect_rejected(dst, b2, n2, "config");
    free(b2);
    freezer_free(other);

    size_t sizes3[RT_M];
    memcpy(sizes3, RT_SIZES, sizeof sizes3);
    sizes3[3] = 11;
    other = make(&c, RT_M, sizes3, RT_TRAIN);
    b2 = save_blob(other, &n2);
    expect_rejected(dst, b2, n2, "elements");
    free(b2);
    freezer_free(other);

    bool tr4[RT_M];
    memcpy(tr4, RT_TRAIN, sizeof tr4);
    tr4[2] = true;
    other = make(&c, RT_M, RT_SIZES, tr4);
    b2 = save_blob(other, &n2);
    expect_rejected(dst, b2, n2, "frozen step");
    free(b2);
    freezer_free(other);

    other = make(&c, RT_M - 1, RT_SIZES, RT_TRAIN);
    b2 = save_blob(other, &n2);
    expect_rejected(dst, b2, n2, "matrices");
    free(b2);
    freezer_free(other);

    /* and the good blob still loads */
    char err[ERRLEN];
    assert_int_equal(freezer_load(dst, blob, n, err, sizeof err), 0);
    free(bad);
    free(blob);
    freezer_free(src);
    freezer_free(dst);
}

/* ------------------------------------------------------------------ create */

static void test_create_rejects_bad_input(void **state) {
    (void)state;
    const size_t sizes[2] = {3, 0};
    const bool tr[2] = {true, true};
    const bool tr_ok[2] = {true, false};
    char err[ERRLEN];
    aflo_freeze_config c = cfg(0.85, 0.95, 10, 100, 10, 30);
    aflo_freeze_config bad;

    err[0] = 0;
    assert_null(freezer_create(&c, 2, sizes, tr, err, sizeof err)); /* trainable, 0 elements */
    assert_non_null(strstr(err, "matrix 1"));
    bad = c;
    bad.beta1 = 1.0;
    assert_null(freezer_create(&bad, 2, sizes, tr_ok, err, sizeof err));
    assert_non_null(strstr(err, "beta1"));
    bad = c;
    bad.beta2 = -0.1;
    assert_null(freezer_create(&bad, 2, sizes, tr_ok, err, sizeof err));
    assert_non_null(strstr(err, "beta2"));
    bad = c;
    bad.delta_t = 0;
    assert_null(freezer_create(&bad, 2, sizes, tr_ok, err, sizeof err));
    assert_non_null(strstr(err, "delta_t"));
    bad = c;
    bad.final_steps = -1;
    assert_null(freezer_create(&bad, 2, sizes, tr_ok, err, sizeof err));
    bad = c;
    bad.sensitivity = FREEZE_SENS_COUNT;
    assert_null(freezer_create(&bad, 2, sizes, tr_ok, err, sizeof err));
    assert_non_null(strstr(err, "sensitivity"));
    assert_null(freezer_create(NULL, 2, sizes, tr_ok, err, sizeof err));
    assert_null(freezer_create(&c, -1, sizes, tr_ok, err, sizeof err));

    /* a never-trainable matrix may be empty; no matrices at all is valid */
    aflo_freezer *f = make(&c, 2, sizes, tr_ok);
    freezer_free(f);
    f = make(&c, 0, NULL, NULL);
    int out[1];
    freeze_score_update(f, 10, NULL, NULL);
    assert_int_equal(freeze_decide(f, 71, out), 0);
    assert_int_equal(freezer_trainable_count(f), 0);
    freezer_free(f);
    freezer_free(NULL);
}

/* ---------------------------------------------------- every ISA level */

/* Matrices of 3 parallel chunks plus a tail, one small, one never trained;
 * 7 steps with delta_t = 3 cross two window boundaries. */
#define LV_STEPS 7
static const size_t LV_SIZES[3] = {3 * 65536 + 77, 37, 8};
static const bool LV_TRAIN[3] = {true, true, false};

static void lv_grads(float *g[3], long t) {
    aflo_rng r;
    rng_seed(&r, 1000 + (uint64_t)t);
    for (int i = 0; i < 2; i++)
        for (size_t e = 0; e < LV_SIZES[i]; e++) g[i][e] = rng_uniform_range(&r, -1.0f, 1.0f);
}

/* The score of §3 in double: window mean, Ibar, Ubar (with the new Ibar). */
static double lv_reference_score(int i, const aflo_freeze_config *c, float *g[3]) {
    size_t n = LV_SIZES[i];
    double *ib = calloc(n, sizeof *ib), *ub = calloc(n, sizeof *ub), *win = calloc(n, sizeof *win);
    assert_true(ib && ub && win);
    long count = 0;
    for (long t = 1; t <= LV_STEPS; t++) {
        lv_grads(g, t);
        bool boundary = t % c->delta_t == 0 && count > 0;
        for (size_t e = 0; e < n; e++) {
            double a = fabs((double)g[i][e]);
            if (boundary) {
                double w = win[e] / (double)count;
                ib[e] = c->beta1 * ib[e] + (1 - c->beta1) * w;
                ub[e] = c->beta2 * ub[e] + (1 - c->beta2) * fabs(w - ib[e]);
                win[e] = a;
            } else {
                win[e] += a;
            }
        }
        count = boundary ? 1 : count + 1;
    }
    double sum = 0;
    for (size_t e = 0; e < n; e++) sum += ib[e] * ub[e];
    free(ib), free(ub), free(win);
    return sum / (double)n;
}

static void test_score_update_every_level(void **state) {
    (void)state;
    aflo_freeze_config c = cfg(0.85, 0.95, 3, 1000, 1000, 0);
    float *g[3];
    for (int i = 0; i < 3; i++) assert_non_null(g[i] = malloc(LV_SIZES[i] * sizeof(float)));
    double want[2] = {lv_reference_score(0, &c, g), lv_reference_score(1, &c, g)};
    assert_true(want[0] > 0 && want[1] > 0);
    unsigned char *first = NULL;
    size_t first_n = 0;
    aflo_isa before = isa_level();
    char err[ERRLEN];
    for (int level = 0; level < ISA_COUNT; level++) {
        if (!isa_supported((aflo_isa)level)) continue;
        assert_int_equal(isa_select((aflo_isa)level, err, sizeof err), 0);
        for (int threads = 1; threads <= 2; threads++) {
            engine_set_threads(threads);
            aflo_freezer *f = make(&c, 3, LV_SIZES, LV_TRAIN);
            for (long t = 1; t <= LV_STEPS; t++) {
                lv_grads(g, t);
                freeze_score_update(f, t, (const float *const *)g, NULL);
            }
            /* float storage of the EMAs: a few float ulps from the double path */
            for (int i = 0; i < 2; i++)
                assert_near(freezer_matrix_score(f, i), want[i], 1e-5 * want[i]);
            size_t n = freezer_state_size(f);
            unsigned char *blob = malloc(n);
            assert_non_null(blob);
            assert_int_equal(freezer_save(f, blob, n), 0);
            if (!first) {
                first = blob, first_n = n;
            } else {
                /* same bits at every level and thread count */
                assert_int_equal(n, first_n);
                assert_memory_equal(blob, first, n);
                free(blob);
            }
            freezer_free(f);
        }
    }
    assert_non_null(first);
    assert_int_equal(isa_select(before, err, sizeof err), 0);
    engine_set_threads(0);
    free(first);
    for (int i = 0; i < 3; i++) free(g[i]);
}

/* ------------------------------------------------------------- sensitivity */

static aflo_freeze_config sens_cfg(aflo_freeze_sensitivity sens, int dt) {
    aflo_freeze_config c = cfg(0.5, 0.5, dt, 1000, 1000, 0);
    c.sensitivity = sens;
    return c;
}

/* One element: |g| and |p * g|, by hand. */
static void test_sensitivity_element_by_hand(void **state) {
    (void)state;
    assert_true(freeze_sensitivity_element(FREEZE_SENS_GRAD, 2.0f, -0.25f) == 0.25f);
    assert_true(freeze_sensitivity_element(FREEZE_SENS_GRAD, 0.0f, 3.0f) == 3.0f);
    assert_true(freeze_sensitivity_element(FREEZE_SENS_WEIGHT_GRAD, 2.0f, -0.25f) == 0.5f);
    assert_true(freeze_sensitivity_element(FREEZE_SENS_WEIGHT_GRAD, -4.0f, -0.125f) == 0.5f);
    assert_true(freeze_sensitivity_element(FREEZE_SENS_WEIGHT_GRAD, 0.0f, 3.0f) == 0.0f);
    assert_string_equal(freeze_sensitivity_names[FREEZE_SENS_GRAD], "grad");
    assert_string_equal(freeze_sensitivity_names[FREEZE_SENS_WEIGHT_GRAD], "weight_grad");
}

/* A 4-element matrix, beta1 = beta2 = 0.5, delta_t = 1 (every step after
 * the first closes a window of one step). With I1 the step-1 sensitivity:
 * Ibar = I1/2, Ubar = |I1 - I1/2|/2 = I1/4, s = mean(I1^2)/8.
 *   p1 = {2, -0.5, 0, 4}, g1 = {0.25, 0.5, 3, -0.125}
 *   grad:        I1 = {0.25, 0.5, 3, 0.125}  s = 9.328125/32 = 0.2915039...
 *   weight_grad: I1 = {0.5, 0.25, 0, 0.5}    s = 0.5625/32   = 0.017578125
 * Step 2 (p2 = 1 everywhere, g2 = {1, 0.5, 0.25, 2}, so I2 = g2 under
 * both), closed at step 3, weight_grad: Ibar = Ibar/2 + I2/2 =
 * {0.625, 0.3125, 0.125, 1.125}, Ubar = Ubar/2 + |I2 - Ibar|/2 =
 * {0.25, 0.125, 0.0625, 0.5}, s = 0.765625/4 = 0.19140625. All exact in
 * float. */
static void test_weight_grad_score_by_hand(void **state) {
    (void)state;
    static const float p1[4] = {2, -0.5f, 0, 4}, g1[4] = {0.25f, 0.5f, 3, -0.125f};
    static const float p2[4] = {1, 1, 1, 1}, g2[4] = {1, 0.5f, 0.25f, 2};
    const size_t sizes[1] = {4};
    const bool tr[1] = {true};
    const float *gp1[1] = {g1}, *pp1[1] = {p1}, *gp2[1] = {g2}, *pp2[1] = {p2};

    aflo_freeze_config cg = sens_cfg(FREEZE_SENS_GRAD, 1);
    aflo_freezer *f = make(&cg, 1, sizes, tr);
    freeze_score_update(f, 1, gp1, NULL); /* grad does not read weights */
    freeze_score_update(f, 2, gp2, NULL);
    assert_true(freezer_matrix_score(f, 0) == 9.328125 / 32);
    freezer_free(f);

    aflo_freeze_config cw = sens_cfg(FREEZE_SENS_WEIGHT_GRAD, 1);
    f = make(&cw, 1, sizes, tr);
    freeze_score_update(f, 1, gp1, pp1);
    freeze_score_update(f, 2, gp2, pp2);
    assert_true(freezer_matrix_score(f, 0) == 0.017578125);
    freeze_score_update(f, 3, gp2, pp2);
    assert_true(freezer_matrix_score(f, 0) == 0.19140625);
    freezer_free(f);
}

/* Same gradients, weights three times larger: grad scores the two matrices
 * alike, weight_grad 9 times higher (Ibar and Ubar are both linear in I). */
static void test_weight_grad_differs_when_weights_differ(void **state) {
    (void)state;
    enum { N = 6 };
    float g[N], p0[N], p1[N];
    const size_t sizes[2] = {N, N};
    const bool tr[2] = {true, true};
    double score[FREEZE_SENS_COUNT][2];
    for (int sens = 0; sens < FREEZE_SENS_COUNT; sens++) {
        aflo_freeze_config c = sens_cfg((aflo_freeze_sensitivity)sens, 2);
        aflo_freezer *f = make(&c, 2, sizes, tr);
        for (long t = 1; t <= 7; t++) {
            for (int e = 0; e < N; e++) {
                g[e] = (float)((e % 3) - 1) * 0.25f + 0.0625f * (float)t;
                p0[e] = 0.5f + 0.25f * (float)e - 0.125f * (float)t;
                p1[e] = 3 * p0[e];
            }
            const float *gs[2] = {g, g}, *ps[2] = {p0, p1};
            freeze_score_update(f, t, gs, ps);
        }
        score[sens][0] = freezer_matrix_score(f, 0);
        score[sens][1] = freezer_matrix_score(f, 1);
        freezer_free(f);
    }
    assert_true(score[FREEZE_SENS_GRAD][0] > 0);
    assert_true(score[FREEZE_SENS_GRAD][0] == score[FREEZE_SENS_GRAD][1]);
    assert_near(score[FREEZE_SENS_WEIGHT_GRAD][1] / score[FREEZE_SENS_WEIGHT_GRAD][0], 9.0, 1e-5);
    assert_true(score[FREEZE_SENS_WEIGHT_GRAD][0] != score[FREEZE_SENS_GRAD][0]);
}

/* A matrix past one parallel chunk and many product blocks (70001
 * elements, 2 threads): weight_grad gives exactly the bits of grad fed the
 * float products p * g. */
static void test_weight_grad_large_matrix_exact(void **state) {
    (void)state;
    const size_t n = 70001;
    float *g = malloc(n * sizeof *g), *p = malloc(n * sizeof *p), *pg = malloc(n * sizeof *pg);
    assert_true(g && p && pg);
    const size_t sizes[1] = {n};
    const bool tr[1] = {true};
    aflo_freeze_config cw = sens_cfg(FREEZE_SENS_WEIGHT_GRAD, 3),
                       cg = sens_cfg(FREEZE_SENS_GRAD, 3);
    engine_set_threads(2);
    aflo_freezer *fw = make(&cw, 1, sizes, tr), *fg = make(&cg, 1, sizes, tr);
    for (long t = 1; t <= 7; t++) {
        for (size_t e = 0; e < n; e++) {
            g[e] = (float)((e * 7 + (size_t)t * 13) % 101) / 101.0f - 0.5f;
            p[e] = (float)((e * 3 + (size_t)t) % 37) / 37.0f - 0.3f;
            pg[e] = p[e] * g[e];
        }
        const float *gw[1] = {g}, *pw[1] = {p}, *gg[1] = {pg};
        freeze_score_update(fw, t, gw, pw);
        freeze_score_update(fg, t, gg, NULL);
    }
    engine_set_threads(0);
    double sw = freezer_matrix_score(fw, 0);
    assert_true(sw > 0);
    assert_true(sw == freezer_matrix_score(fg, 0));
    freezer_free(fw);
    freezer_free(fg);
    free(g), free(p), free(pg);
}

/* The blob records the sensitivity (in the slot that was reserved, so a
 * grad blob carries the 0 every older blob has there); a freezer with the
 * other one refuses it. */
static void test_blob_keeps_sensitivity(void **state) {
    (void)state;
    const size_t sizes[1] = {4};
    const bool tr[1] = {true};
    static const float g[4] = {1, 2, 3, 4}, p[4] = {1, 1, 1, 1};
    const float *gs[1] = {g}, *ps[1] = {p};
    aflo_freeze_config cw = sens_cfg(FREEZE_SENS_WEIGHT_GRAD, 2),
                       cg = sens_cfg(FREEZE_SENS_GRAD, 2);
    aflo_freezer *fw = make(&cw, 1, sizes, tr), *fg = make(&cg, 1, sizes, tr);
    freeze_score_update(fw, 1, gs, ps);
    freeze_score_update(fg, 1, gs, NULL);
    size_t nw = freezer_state_size(fw), ng = freezer_state_size(fg);
    unsigned char *bw = malloc(nw), *bg = malloc(ng);
    assert_true(bw && bg);
    assert_int_equal(freezer_save(fw, bw, nw), 0);
    assert_int_equal(freezer_save(fg, bg, ng), 0);
    /* bytes 12..15: the sensitivity, little-endian */
    assert_true(bw[12] == 1 && bw[13] == 0 && bw[14] == 0 && bw[15] == 0);
    assert_true(bg[12] == 0 && bg[13] == 0 && bg[14] == 0 && bg[15] == 0);
    char err[ERRLEN] = "";
    aflo_freezer *other = make(&cg, 1, sizes, tr);
    assert_int_equal(freezer_load(other, bw, nw, err, sizeof err), -1);
    assert_non_null(strstr(err, "sensitivity weight_grad"));
    freezer_free(other);
    other = make(&cw, 1, sizes, tr);
    assert_int_equal(freezer_load(other, bg, ng, err, sizeof err), -1);
    assert_non_null(strstr(err, "this run scores by weight_grad"));
    assert_int_equal(freezer_load(other, bw, nw, err, sizeof err), 0);
    freezer_free(other);
    freezer_free(fw);
    freezer_free(fg);
    free(bw), free(bg);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedule_hand_cases),
        cmocka_unit_test(test_schedule_without_middle_phase),
        cmocka_unit_test(test_window_and_ema_by_hand),
        cmocka_unit_test(test_default_betas_one_boundary),
        cmocka_unit_test(test_k_zero_freezes_nothing),
        cmocka_unit_test(test_threshold_decision_three_matrices),
        cmocka_unit_test(test_threshold_is_strict),
        cmocka_unit_test(test_decisions_only_at_multiples_and_final_once),
        cmocka_unit_test(test_final_phase_freezes_all_left_once),
        cmocka_unit_test(test_overlapping_phases_warmup_first),
        cmocka_unit_test(test_decision_matches_sort_reference),
        cmocka_unit_test(test_save_load_round_trip),
        cmocka_unit_test(test_bad_blobs_rejected),
        cmocka_unit_test(test_create_rejects_bad_input),
        cmocka_unit_test(test_score_update_every_level),
        cmocka_unit_test(test_sensitivity_element_by_hand),
        cmocka_unit_test(test_weight_grad_score_by_hand),
        cmocka_unit_test(test_weight_grad_differs_when_weights_differ),
        cmocka_unit_test(test_weight_grad_large_matrix_exact),
        cmocka_unit_test(test_blob_keeps_sensitivity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
