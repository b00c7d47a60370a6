/* test_vmath.c — vmath.h's vectorisable functions against double-precision
 * libm: error in ulps over a dense sweep, the clamps, and the flush below. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <float.h>
#include <math.h>

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

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expf_within_two_ulps),
        cmocka_unit_test(test_expf_edges),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
