/* test_metrics.c — accuracy, binary F1, multi-class MCC, Pearson, Spearman
 * (with ties) and MSE on small cases worked out by hand; the arithmetic is in
 * the comments. The MCC and Spearman numbers were also cross-checked with a
 * numpy computation written from the formulas (confusion matrix for MCC,
 * average-rank ranking for Spearman), not from this code. Undefined cases
 * (constant predictions, a class never predicted, n = 0) must give 0. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <string.h>

#include "train/metrics.h"

/* Results are short double sums of small integers: only last-bit rounding. */
#define TOL 1e-12

static void assert_close(double got, double want) {
    if (!(fabs(got - want) <= TOL)) fail_msg("got %.15g, want %.15g", got, want);
}

static void test_binary(void **state) {
    (void)state;
    /* i:     0  1  2  3  4  5  6  7
     * pred:  1  1  0  0  1  0  1  0
     * gold:  1  0  0  1  1  0  0  0
     * TP = {0,4} = 2, FP = {1,6} = 2, FN = {3} = 1, TN = {2,5,7} = 3.
     * accuracy = (2+3)/8 = 0.625; F1 = 2TP/(2TP+FP+FN) = 4/7.
     * MCC = (TP*TN - FP*FN)/sqrt((TP+FP)(TP+FN)(TN+FP)(TN+FN))
     *     = (6 - 2)/sqrt(4*3*5*4) = 4/sqrt(240). */
    const int32_t pred[] = {1, 1, 0, 0, 1, 0, 1, 0};
    const int32_t gold[] = {1, 0, 0, 1, 1, 0, 0, 0};
    aflo_metrics m;
    assert_int_equal(metrics_classification(pred, gold, 8, 2, &m), 0);
    assert_true(m.classification);
    assert_int_equal(m.n, 8);
    assert_close(m.accuracy, 0.625);
    assert_close(m.f1, 4.0 / 7.0);
    assert_close(m.mcc, 4.0 / sqrt(240.0));
}

static void test_binary_perfect_and_inverted(void **state) {
    (void)state;
    const int32_t gold[] = {0, 1, 1, 0, 1};
    const int32_t inv[] = {1, 0, 0, 1, 0};
    aflo_metrics m;
    assert_int_equal(metrics_classification(gold, gold, 5, 2, &m), 0);
    assert_close(m.accuracy, 1.0);
    assert_close(m.f1, 1.0);
    assert_close(m.mcc, 1.0);
    /* Every prediction wrong: TP = TN = 0, FP = 2, FN = 3.
     * F1 = 0; MCC = (0 - 6)/sqrt(2*3*3*2) = -1. */
    assert_int_equal(metrics_classification(inv, gold, 5, 2, &m), 0);
    assert_close(m.accuracy, 0.0);
    assert_close(m.f1, 0.0);
    assert_close(m.mcc, -1.0);
}

static void test_binary_undefined(void **state) {
    (void)state;
    aflo_metrics m;
    /* No positive predicted, some positive gold: precision 0/0 -> F1 0.
     * Constant predictions make s^2 - sum p_k^2 = 16 - 16 = 0 -> MCC 0.
     * accuracy = 2/4 (the two gold 0s). */
    const int32_t zeros[] = {0, 0, 0, 0};
    const int32_t gold[] = {0, 1, 0, 1};
    assert_int_equal(metrics_classification(zeros, gold, 4, 2, &m), 0);
    assert_close(m.accuracy, 0.5);
    assert_close(m.f1, 0.0);
    assert_close(m.mcc, 0.0);
    /* No positive anywhere: precision and recall both 0/0 -> F1 0; both
     * sides constant -> MCC 0; accuracy 1. */
    assert_int_equal(metrics_classification(zeros, zeros, 4, 2, &m), 0);
    assert_close(m.accuracy, 1.0);
    assert_close(m.f1, 0.0);
    assert_close(m.mcc, 0.0);
    /* Constant predictions of the positive class: TP = 2, FP = 2, FN = 0,
     * F1 = 4/6; MCC still 0 (the prediction side is constant). */
    const int32_t ones[] = {1, 1, 1, 1};
    assert_int_equal(metrics_classification(ones, gold, 4, 2, &m), 0);
    assert_close(m.f1, 4.0 / 6.0);
    assert_close(m.mcc, 0.0);
}

static void test_three_class_mcc(void **state) {
    (void)state;
    /* i:     0 1 2 3 4 5 6 7 8 9
     * pred:  0 1 2 0 1 2 0 1 2 2
     * gold:  0 1 2 1 1 0 0 2 2 1
     * correct at 0,1,2,4,6,8 -> c = 6, s = 10, accuracy 0.6.
     * p = (3, 3, 4) predicted counts, t = (3, 4, 3) gold counts.
     * sum p.t = 9 + 12 + 12 = 33; c*s - 33 = 27.
     * s^2 - sum p^2 = 100 - 34 = 66; s^2 - sum t^2 = 100 - 34 = 66.
     * MCC = 27 / sqrt(66*66) = 27/66 = 9/22 (numpy cross-check 0.409090909).
     * F1 (class 1 positive, 0 and 2 negative): TP = {1,4} = 2, FP = {7} = 1,
     * FN = {3,9} = 2 -> 4/7. */
    const int32_t pred[] = {0, 1, 2, 0, 1, 2, 0, 1, 2, 2};
    const int32_t gold[] = {0, 1, 2, 1, 1, 0, 0, 2, 2, 1};
    aflo_metrics m;
    assert_int_equal(metrics_classification(pred, gold, 10, 3, &m), 0);
    assert_close(m.accuracy, 0.6);
    assert_close(m.mcc, 9.0 / 22.0);
    assert_close(m.f1, 4.0 / 7.0);

    /* Every prediction shifted by one class: c = 0, s = 6, p = t = (2,2,2).
     * num = 0 - 12 = -12; den = sqrt((36-12)(36-12)) = 24; MCC = -0.5
     * (the multi-class MCC's minimum is above -1). */
    const int32_t g2[] = {0, 1, 2, 0, 1, 2};
    const int32_t p2[] = {1, 2, 0, 1, 2, 0};
    assert_int_equal(metrics_classification(p2, g2, 6, 3, &m), 0);
    assert_close(m.mcc, -0.5);

    /* Class 2 never predicted (defined, not 0): correct at 0,1,4,5 -> c = 4,
     * s = 6; p = (2,4,0), t = (2,2,2); sum p.t = 12; num = 24 - 12 = 12;
     * den = sqrt((36-20)(36-12)) = sqrt(384); MCC = 12/sqrt(384) = sqrt(6)/4. */
    const int32_t g3[] = {0, 1, 2, 2, 1, 0};
    const int32_t p3[] = {0, 1, 1, 1, 1, 0};
    assert_int_equal(metrics_classification(p3, g3, 6, 3, &m), 0);
    assert_close(m.mcc, sqrt(6.0) / 4.0);
}

static void test_classification_invalid(void **state) {
    (void)state;
    aflo_metrics m;
    const int32_t ok[] = {0, 1, 2};
    const int32_t bad_hi[] = {0, 1, 3};
    const int32_t bad_neg[] = {0, -1, 2};
    assert_int_equal(metrics_classification(bad_hi, ok, 3, 3, &m), -1);
    assert_int_equal(metrics_classification(ok, bad_hi, 3, 3, &m), -1);
    assert_int_equal(metrics_classification(bad_neg, ok, 3, 3, &m), -1);
    assert_int_equal(metrics_classification(ok, ok, 3, 0, &m), -1);
    assert_int_equal(metrics_classification(ok, ok, -1, 3, &m), -1);
    assert_int_equal(metrics_classification(NULL, ok, 3, 3, &m), -1);
    assert_int_equal(metrics_classification(ok, ok, 3, 3, NULL), -1);
    /* n = 0: nothing to measure, everything 0, not an error. */
    m.accuracy = m.f1 = m.mcc = 7.0;
    assert_int_equal(metrics_classification(NULL, NULL, 0, 2, &m), 0);
    assert_int_equal(m.n, 0);
    assert_close(m.accuracy, 0.0);
    assert_close(m.f1, 0.0);
    assert_close(m.mcc, 0.0);
}

static void test_loss_is_left_alone(void **state) {
    (void)state;
    /* The caller fills loss; computing metrics must not overwrite it. */
    const int32_t a[] = {0, 1};
    const float x[] = {1.0f, 2.0f};
    aflo_metrics m;
    m.loss = 0.25;
    assert_int_equal(metrics_classification(a, a, 2, 2, &m), 0);
    assert_close(m.loss, 0.25);
    assert_int_equal(metrics_regression(x, x, 2, &m), 0);
    assert_close(m.loss, 0.25);
}

static void test_regression(void **state) {
    (void)state;
    /* x = pred = 1..5, y = gold = (2,4,5,4,5). means 3 and 4.
     * dx = (-2,-1,0,1,2), dy = (-2,0,1,0,1).
     * Sxy = 4+0+0+0+2 = 6, Sxx = 10, Syy = 4+0+1+0+1 = 6.
     * Pearson = 6/sqrt(60).
     * MSE: differences (-1,-2,-2,0,0) -> (1+4+4)/5 = 1.8.
     * Spearman: ranks of x = (1,2,3,4,5). y sorted: 2 (rank 1), 4,4 (ranks 2,3
     * -> 2.5 each), 5,5 (ranks 4,5 -> 4.5 each): ry = (1,2.5,4.5,2.5,4.5),
     * mean 3, dry = (-2,-0.5,1.5,-0.5,1.5).
     * S = 4+0.5+0-0.5+3 = 7, Sxx = 10, Syy = 4+0.25+2.25+0.25+2.25 = 9.
     * Spearman = 7/sqrt(90) (numpy cross-check 0.737864787). */
    const float pred[] = {1, 2, 3, 4, 5};
    const float gold[] = {2, 4, 5, 4, 5};
    aflo_metrics m;
    assert_int_equal(metrics_regression(pred, gold, 5, &m), 0);
    assert_false(m.classification);
    assert_int_equal(m.n, 5);
    assert_close(m.pearson, 6.0 / sqrt(60.0));
    assert_close(m.spearman, 7.0 / sqrt(90.0));
    assert_close(m.mse, 1.8);
}

static void test_spearman_ties_in_both(void **state) {
    (void)state;
    /* Ties on both sides, unsorted input order.
     * pred = (3, 1, 3, 2): sorted 1 (r1), 2 (r2), 3,3 (r3,r4 -> 3.5):
     *   rx = (3.5, 1, 3.5, 2), mean 2.5, dx = (1, -1.5, 1, -0.5).
     * gold = (7, 7, 9, 7): 7,7,7 take ranks 1..3 -> 2 each, 9 -> 4:
     *   ry = (2, 2, 4, 2), mean 2.5, dy = (-0.5, -0.5, 1.5, -0.5).
     * S = -0.5 + 0.75 + 1.5 + 0.25 = 2; Sxx = 1+2.25+1+0.25 = 4.5;
     * Syy = 0.25*3 + 2.25 = 3. Spearman = 2/sqrt(13.5). */
    const float pred[] = {3, 1, 3, 2};
    const float gold[] = {7, 7, 9, 7};
    aflo_metrics m;
    assert_int_equal(metrics_regression(pred, gold, 4, &m), 0);
    assert_close(m.spearman, 2.0 / sqrt(13.5));
}

static void test_monotone_nonlinear(void **state) {
    (void)state;
    /* Strictly decreasing, not linear: Spearman is exactly -1; Pearson:
     * dx = (-1.5,-0.5,0.5,1.5), dy = (4.25,0.25,-1.75,-2.75) around 3.75,
     * Sxy = -6.375-0.125-0.875-4.125 = -11.5, Sxx = 5,
     * Syy = 18.0625+0.0625+3.0625+7.5625 = 28.75 -> -11.5/sqrt(143.75). */
    const float pred[] = {1, 2, 3, 4};
    const float gold[] = {8, 4, 2, 1};
    aflo_metrics m;
    assert_int_equal(metrics_regression(pred, gold, 4, &m), 0);
    assert_close(m.spearman, -1.0);
    assert_close(m.pearson, -11.5 / sqrt(143.75));
}

static void test_regression_undefined(void **state) {
    (void)state;
    /* Constant predictions: correlations undefined -> 0; MSE still defined:
     * (3-1)^2 + (3-2)^2 + (3-3)^2 = 5, /3. */
    const float pred[] = {3, 3, 3};
    const float gold[] = {1, 2, 3};
    aflo_metrics m;
    assert_int_equal(metrics_regression(pred, gold, 3, &m), 0);
    assert_close(m.pearson, 0.0);
    assert_close(m.spearman, 0.0);
    assert_close(m.mse, 5.0 / 3.0);
    /* A single example has zero variance too. */
    assert_int_equal(metrics_regression(pred, gold, 1, &m), 0);
    assert_close(m.pearson, 0.0);
    assert_close(m.spearman, 0.0);
    assert_close(m.mse, 4.0);
    assert_int_equal(metrics_regression(NULL, NULL, 0, &m), 0);
    assert_close(m.mse, 0.0);
}

static void test_regression_offset(void **state) {
    (void)state;
    /* A large common offset (exact in float: 1e6+k < 2^24) must not wreck
     * Pearson through cancellation: still exactly linear -> 1. */
    const float pred[] = {1000001.0f, 1000002.0f, 1000003.0f, 1000005.0f};
    const float gold[] = {1.0f, 2.0f, 3.0f, 5.0f};
    aflo_metrics m;
    assert_int_equal(metrics_regression(pred, gold, 4, &m), 0);
    assert_close(m.pearson, 1.0);
    assert_close(m.spearman, 1.0);
    assert_close(m.mse, 1e12);
}

static void test_regression_invalid(void **state) {
    (void)state;
    const float ok[] = {1, 2, 3};
    const float with_nan[] = {1, NAN, 3};
    const float with_inf[] = {1, 2, INFINITY};
    aflo_metrics m;
    assert_int_equal(metrics_regression(with_nan, ok, 3, &m), -1);
    assert_true(isnan(m.pearson) && isnan(m.spearman) && isnan(m.mse));
    assert_int_equal(metrics_regression(ok, with_inf, 3, &m), -1);
    assert_int_equal(metrics_regression(ok, ok, -2, &m), -1);
    assert_int_equal(metrics_regression(NULL, ok, 3, &m), -1);
}

static void test_lookup(void **state) {
    (void)state;
    aflo_metrics c = {.classification = true, .accuracy = 0.5, .f1 = 0.25, .mcc = -0.125};
    aflo_metrics r = {.classification = false, .pearson = 0.75, .spearman = 0.5, .mse = 2.0};
    double v = 0.0;
    assert_int_equal(metrics_lookup(&c, "accuracy", &v), 0);
    assert_close(v, 0.5);
    assert_int_equal(metrics_lookup(&c, "f1", &v), 0);
    assert_close(v, 0.25);
    assert_int_equal(metrics_lookup(&c, "mcc", &v), 0);
    assert_close(v, -0.125);
    assert_int_equal(metrics_lookup(&r, "pearson", &v), 0);
    assert_close(v, 0.75);
    assert_int_equal(metrics_lookup(&r, "spearman", &v), 0);
    assert_close(v, 0.5);
    assert_int_equal(metrics_lookup(&r, "mse", &v), 0);
    assert_close(v, 2.0);
    /* Unknown names, wrong case, and a metric of the other task kind. */
    assert_int_equal(metrics_lookup(&c, "Accuracy", &v), -1);
    assert_int_equal(metrics_lookup(&c, "loss", &v), -1);
    assert_int_equal(metrics_lookup(&c, "pearson", &v), -1);
    assert_int_equal(metrics_lookup(&r, "mcc", &v), -1);
    assert_int_equal(metrics_lookup(&r, NULL, &v), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_binary),
        cmocka_unit_test(test_binary_perfect_and_inverted),
        cmocka_unit_test(test_binary_undefined),
        cmocka_unit_test(test_three_class_mcc),
        cmocka_unit_test(test_classification_invalid),
        cmocka_unit_test(test_loss_is_left_alone),
        cmocka_unit_test(test_regression),
        cmocka_unit_test(test_spearman_ties_in_both),
        cmocka_unit_test(test_monotone_nonlinear),
        cmocka_unit_test(test_regression_undefined),
        cmocka_unit_test(test_regression_offset),
        cmocka_unit_test(test_regression_invalid),
        cmocka_unit_test(test_lookup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
