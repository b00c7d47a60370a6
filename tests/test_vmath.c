/* test_vmath.c — vmath.h's vectorisable functions against double-precision
 * libm: error in ulps over a dense sweep, the clamps, the flush below (expf)
 * and the saturation, sign and NaN handling (erff). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "model/vmath.h"

/* Distance in float ulps between got and the correctly rounded want. */
static double ulps(float got, double want) {
    float w = (float)want;
    double ulp = nextafterf(fabsf(w), INFINITY) - fabsf(w);
    return fabs((double)got - want) / ulp;
}

static void test_expf_within_two_ulps(void **state) {
    (void)state;
    double worst = 0;
    for (float x = -87.0f; x <= 88.3f; x += 0.000731f) {
        double u = ulps(vm_expf(x), exp((double)x));
        if (u > worst) worst = u;
    }
    print_message("vm_expf worst error %.2f ulp\n", worst);
    assert_true(worst <= 2.0);
    assert_true(vm_expf(0.0f) == 1.0f);
}

static void test_expf_edges(void **state) {
    (void)state;
    assert_true(vm_expf(-100.0f) == 0.0f);
    assert_true(vm_expf(-INFINITY) == 0.0f);
    float big = vm_expf(1000.0f);
    assert_true(isfinite(big) && big > 1e38f);
    assert_true(isfinite(vm_expf(88.37f)));
    /* Smallest value before the flush is still a normal, positive float. */
    float tiny = vm_expf(-87.3f);
    print_message("vm_expf(-87.3) = %g (%.2f ulp)\n", tiny, ulps(tiny, exp(-87.3f)));
    assert_true(tiny >= FLT_MIN && ulps(tiny, exp(-87.3f)) <= 2.0);
}

/* Every 31st float of [0, 4.5] (every 1021st under valgrind, which is 50x
 * slower), both signs, against double erf. Every 7th gave 1.33 ulp too. */
static void test_erff_within_ulps(void **state) {
    (void)state;
    const uint32_t stride = getenv("AFLORAD_VALGRIND") ? 1021 : 31;
    const uint32_t end = 0x40900000u; /* 4.5f */
    double worst = 0;
    float worst_x = 0;
    for (uint32_t b = 0; b < end; b += stride) {
        float x;
        memcpy(&x, &b, sizeof x);
        for (int sgn = 0; sgn < 2; sgn++) {
            float v = sgn ? -x : x;
            double u = ulps(vm_erff(v), erf((double)v));
            if (u > worst) {
                worst = u;
                worst_x = v;
            }
        }
    }
    print_message("vm_erff worst error %.2f ulp at %.9g\n", worst, worst_x);
    assert_true(worst <= 1.5);
}

static void test_erff_edges(void **state) {
    (void)state;
    assert_true(vm_erff(0.0f) == 0.0f);
    assert_true(signbit(vm_erff(-0.0f)));
    /* Saturation: exactly +-1, as the correctly rounded erf. */
    const float big[] = {4.0f, 4.5f, 10.0f, 1e30f, INFINITY};
    for (size_t i = 0; i < sizeof big / sizeof big[0]; i++) {
        assert_true(vm_erff(big[i]) == 1.0f);
        assert_true(vm_erff(-big[i]) == -1.0f);
    }
    assert_true(isnan(vm_erff(NAN)));
    /* Tiny and subnormal: erf(x) ~ 2x/sqrt(pi), within the bound too. */
    const float tiny[] = {1e-30f, 1e-40f, FLT_MIN, FLT_TRUE_MIN * 3};
    for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++)
        assert_true(ulps(vm_erff(tiny[i]), erf((double)tiny[i])) <= 1.5);
    /* Both sides of the split at 1 agree with erf. */
    const float at_split[] = {nextafterf(1.0f, 0.0f), 1.0f, nextafterf(1.0f, 2.0f)};
    for (size_t i = 0; i < 3; i++) assert_true(ulps(vm_erff(at_split[i]), erf(at_split[i])) <= 1.5);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_within_two_ulps),
        cmocka_unit_test(test_expf_edges),
        cmocka_unit_test(test_erff_within_ulps),
        cmocka_unit_test(test_erff_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
