/* test_answer.c — the answer rules of exact-match evaluation (answer.h):
 * what gsm8k reads as the answer of tricky texts (thousands commas, "####"
 * before or after other numbers, signs, decimals, sentence-final dots, no
 * number at all), that exact trims whitespace and nothing else, and that a
 * text without an answer never matches. Expected answers are written out
 * by hand from the rules in the header. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "train/answer.h"

/* The gsm8k answer of text, or NULL when it has none. */
static const char *gsm8k(const char *text, char *buf, size_t cap) {
    long n = answer_extract(ANSWER_GSM8K, text, strlen(text), buf, cap);
    if (n < 0) return NULL;
    assert_int_equal((size_t)n, strlen(buf));
    return buf;
}

static void test_gsm8k_extraction(void **state) {
    (void)state;
    static const struct {
        const char *text, *answer; /* NULL: no answer */
    } cases[] = {
        {"#### 1,234", "1234"},
        {"She pays 3 * 4 = 12 dollars.\n#### 12", "12"},
        {"#### 72\nand then 5 more", "72"}, /* after ####, not the last number */
        {"the answer is 42.", "42"},        /* a sentence-final dot is no decimal point */
        {"the answer is 42", "42"},
        {"-17", "-17"},
        {"it fell to -3 degrees", "-3"},
        {"5-3=2", "2"},
        {"5-3", "3"}, /* the '-' after a digit is an operator */
        {"x-3", "3"},
        {"#### -5", "-5"},
        {"####-5", "-5"},
        {"3.50", "3.5"},
        {"7.0", "7"},
        {"7.00.", "7"},
        {"costs $0.75 each", "0.75"},
        {"007", "7"},
        {"-0", "0"},
        {"-0.0", "0"},
        {"0", "0"},
        {"pay .5 more", "0.5"},
        {"v.5", "5"}, /* no leading dot after a letter: the digits alone */
        {"1,234,567.890", "1234567.89"},
        {"1,2", "2"},       /* a comma before fewer than 3 digits separates numbers */
        {"1,2345", "2345"}, /* and before more than 3 */
        {"12,345 and 6", "6"},
        {"numbers 3, 4 and 10", "10"},
        {"no number here", NULL},
        {"", NULL},
        {"####", NULL},
        {"#### seven", NULL},
        {"#### none yet, 9 follows", "9"}, /* the first number after #### */
        {"1 then ####", "1"},              /* #### with no number after it: the last number */
        {"1e5", "5"},                      /* no exponents: 1 and 5 */
        {"1/2", "2"},                      /* no fractions */
        {"２", NULL},                      /* full-width digits are not ASCII digits */
    };
    char buf[64];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const char *got = gsm8k(cases[i].text, buf, sizeof buf);
        if (!cases[i].answer) {
            if (got) fail_msg("\"%s\": want no answer, got \"%s\"", cases[i].text, got);
        } else if (!got || strcmp(got, cases[i].answer) != 0) {
            fail_msg("\"%s\": want \"%s\", got %s%s%s", cases[i].text, cases[i].answer,
                     got ? "\"" : "", got ? got : "none", got ? "\"" : "");
        }
    }
}

static void test_gsm8k_small_buffer(void **state) {
    (void)state;
    char buf[4];
    /* "12345" needs 6 bytes: refused, not cut */
    assert_int_equal(answer_extract(ANSWER_GSM8K, "12345", 5, buf, sizeof buf), -1);
    assert_int_equal(answer_extract(ANSWER_GSM8K, "123", 3, buf, sizeof buf), 3);
    assert_string_equal(buf, "123");
}

static int match(answer_rule r, const char *g, const char *ref) {
    return answer_match(r, g, strlen(g), ref, strlen(ref));
}

static void test_gsm8k_match(void **state) {
    (void)state;
    assert_int_equal(match(ANSWER_GSM8K, " #### 7", "Four and three. #### 7"), 1);
    assert_int_equal(match(ANSWER_GSM8K, "so 1,234.0 in all", "#### 1234"), 1);
    assert_int_equal(match(ANSWER_GSM8K, "#### 7 then 8", "#### 7"), 1);
    assert_int_equal(match(ANSWER_GSM8K, "#### 8", "#### 7"), 0);
    assert_int_equal(match(ANSWER_GSM8K, "#### -7", "#### 7"), 0);
    assert_int_equal(match(ANSWER_GSM8K, "#### 0.7", "#### 7"), 0);
    assert_int_equal(match(ANSWER_GSM8K, "#### 70", "#### 7"), 0);
    /* no answer on either side never matches */
    assert_int_equal(match(ANSWER_GSM8K, "none", "#### 7"), 0);
    assert_int_equal(match(ANSWER_GSM8K, "#### 7", "none"), 0);
    assert_int_equal(match(ANSWER_GSM8K, "none", "none either"), 0);
}

static void test_exact(void **state) {
    (void)state;
    char buf[32];
    assert_int_equal(answer_extract(ANSWER_EXACT, " \t a b \r\n", 9, buf, sizeof buf), 3);
    assert_string_equal(buf, "a b");
    assert_int_equal(match(ANSWER_EXACT, " blue blue blue\n", "blue blue blue"), 1);
    assert_int_equal(match(ANSWER_EXACT, "blue  blue", "blue blue"), 0); /* inner space counts */
    assert_int_equal(match(ANSWER_EXACT, "Blue", "blue"), 0);
    assert_int_equal(match(ANSWER_EXACT, "#### 7.0", "#### 7"), 0); /* no number rule */
    assert_int_equal(match(ANSWER_EXACT, "  ", ""), 1);             /* both empty after trimming */
    /* too small a buffer is refused */
    assert_int_equal(answer_extract(ANSWER_EXACT, "abcd", 4, buf, 4), -1);
}

static void test_none(void **state) {
    (void)state;
    char buf[16];
    assert_int_equal(answer_extract(ANSWER_NONE, "7", 1, buf, sizeof buf), -1);
    assert_int_equal(match(ANSWER_NONE, "7", "7"), 0);
    assert_string_equal(answer_rule_names[ANSWER_NONE], "none");
    assert_string_equal(answer_rule_names[ANSWER_EXACT], "exact");
    assert_string_equal(answer_rule_names[ANSWER_GSM8K], "gsm8k");
}

/* Texts not NUL-terminated: nothing past len is read (ASan checks). */
static void test_lengths_are_respected(void **state) {
    (void)state;
    char *t = malloc(6);
    assert_non_null(t);
    memcpy(t, "#### 5", 6);
    char buf[16];
    assert_int_equal(answer_extract(ANSWER_GSM8K, t, 6, buf, sizeof buf), 1);
    assert_string_equal(buf, "5");
    memcpy(t, "1,234x", 6); /* "1,23" is cut at len 4: no thousands group */
    assert_int_equal(answer_extract(ANSWER_GSM8K, t, 4, buf, sizeof buf), 2);
    assert_string_equal(buf, "23");
    free(t);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_gsm8k_extraction),
        cmocka_unit_test(test_gsm8k_small_buffer),
        cmocka_unit_test(test_gsm8k_match),
        cmocka_unit_test(test_exact),
        cmocka_unit_test(test_none),
        cmocka_unit_test(test_lengths_are_respected),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
