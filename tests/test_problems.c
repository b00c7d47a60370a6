/* test_problems.c — the problem list that file checks (hfmodel, the adapter formats)
 * report through: singular and plural, the first PROBLEMS_LISTED spelled out
 * and the rest counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "base/problems.h"

static void test_one_and_many(void **state) {
    (void)state;
    char err[2048];
    problem_list pr = {.count = 0};
    problem_add(&pr, "%s missing", "a.weight");
    assert_int_equal(problems_error(&pr, "dir", "problem", "problems", err, sizeof err), -1);
    assert_string_equal(err, "dir: 1 problem: a.weight missing");
    problem_add(&pr, "%s has shape [%d]", "b.bias", 3);
    problems_error(&pr, "dir", "tensor missing or unusable", "tensors missing or unusable", err,
                   sizeof err);
    assert_string_equal(
        err, "dir: 2 tensors missing or unusable: a.weight missing; b.bias has shape [3]");
}

static void test_the_rest_are_counted(void **state) {
    (void)state;
    char err[2048];
    problem_list pr = {.count = 0};
    for (int i = 0; i < PROBLEMS_LISTED + 3; i++) problem_add(&pr, "p%d", i);
    assert_int_equal(pr.count, PROBLEMS_LISTED + 3);
    problems_error(&pr, "f", "problem", "problems", err, sizeof err);
    char want[256];
    snprintf(want, sizeof want, "f: %d problems: ", PROBLEMS_LISTED + 3);
    assert_memory_equal(err, want, strlen(want));
    assert_non_null(strstr(err, "; and 3 more"));
    char last_listed[16], first_unlisted[16];
    snprintf(last_listed, sizeof last_listed, "p%d;", PROBLEMS_LISTED - 1);
    snprintf(first_unlisted, sizeof first_unlisted, "p%d", PROBLEMS_LISTED);
    assert_non_null(strstr(err, last_listed));
    assert_null(strstr(err, first_unlisted));

    /* a long problem is cut, never overflows */
    problem_list big = {.count = 0};
    char name[1000];
    memset(name, 'x', sizeof name - 1);
    name[sizeof name - 1] = '\0';
    for (int i = 0; i < 4; i++) problem_add(&big, "%s", name);
    assert_int_equal(big.count, 4);
    assert_true(strlen(big.text) < sizeof big.text);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_and_many),
        cmocka_unit_test(test_the_rest_are_counted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
