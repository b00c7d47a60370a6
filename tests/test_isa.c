/* test_isa.c — the kernel level: names, the CPU's best, AFLORAD_ISA on first
 * use (honoured, or refused with the reason), and isa_select. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "base/isa.h"

/* Runs first: the level is chosen on first use, from the environment. */
static void test_env_override_on_first_use(void **state) {
    (void)state;
    setenv("AFLORAD_ISA", "base", 1);
    assert_int_equal(isa_level(), ISA_BASE);
    assert_non_null(strstr(isa_describe(), "from AFLORAD_ISA"));
    unsetenv("AFLORAD_ISA");
}

static void test_names_round_trip(void **state) {
    (void)state;
    for (int i = 0; i < ISA_COUNT; i++) {
        aflo_isa back;
        assert_int_equal(isa_parse(isa_name((aflo_isa)i), &back), 0);
        assert_int_equal(back, i);
    }
    aflo_isa x;
    assert_int_equal(isa_parse("avx1024", &x), -1);
    assert_string_equal(isa_name((aflo_isa)7), "?");
}

static void test_select_what_the_cpu_runs(void **state) {
    (void)state;
    char err[128];
    assert_true(isa_supported(ISA_BASE));
    assert_true(isa_supported(isa_best()));
    for (int i = 0; i < ISA_COUNT; i++) {
        if (isa_supported((aflo_isa)i)) {
            assert_int_equal(isa_select((aflo_isa)i, err, sizeof err), 0);
            assert_int_equal(isa_level(), i);
        } else {
            /* refused with the level's name, and the level stays */
            aflo_isa before = isa_level();
            assert_int_equal(isa_select((aflo_isa)i, err, sizeof err), -1);
            assert_non_null(strstr(err, isa_name((aflo_isa)i)));
            assert_int_equal(isa_level(), before);
        }
    }
    assert_int_equal(isa_select(ISA_COUNT, err, sizeof err), -1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_env_override_on_first_use),
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_select_what_the_cpu_runs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
