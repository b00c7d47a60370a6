/* answer.c — answer extraction and matching (see answer.h for the rules).
 *
 * Numbers are found by one left-to-right scan that skips each number whole,
 * so a digit inside a number ("234" of "1,234") never starts another. */
#include "train/answer.h"

#include <stdlib.h>
#include <string.h>

const char *const answer_rule_names[ANSWER_RULE_COUNT] = {
    [ANSWER_NONE] = "none", [ANSWER_EXACT] = "exact", [ANSWER_GSM8K] = "gsm8k"};

/* ASCII only: the rules are about digits and separators, and bytes of
 * UTF-8 sequences are neither. */
static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
static bool is_space(char c) {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f';
}

static size_t skip_digits(const char *s, size_t len, size_t j) {
    while (j < len && is_digit(s[j])) j++;
    return j;
}

/* The end of the number that starts at i, or i when none starts there. */
static size_t number_at(const char *s, size_t len, size_t i) {
    /* a sign or a leading '.' belongs to a number only after a non-word
     * character: "5-3" is 5 and 3, "v.5" has no ".5" */
    bool free_before = i == 0 || !is_alnum(s[i - 1]);
    size_t j = i;
    if (s[j] == '-') {
        if (!free_before) return i;
        j++;
    }
    if (j < len && is_digit(s[j])) {
        j = skip_digits(s, len, j);
        /* thousands groups: a comma and exactly three digits */
        while (j + 3 < len && s[j] == ',' && is_digit(s[j + 1]) && is_digit(s[j + 2]) &&
               is_digit(s[j + 3]) && (j + 4 == len || !is_digit(s[j + 4])))
            j += 4;
    } else if (!(j + 1 < len && s[j] == '.' && is_digit(s[j + 1]) && free_before)) {
        return i;
    }
    if (j + 1 < len && s[j] == '.' && is_digit(s[j + 1])) j = skip_digits(s, len, j + 1);
    return j;
}

/* The first number in s[from..len): its span, false when there is none. */
static bool next_number(const char *s, size_t len, size_t from, size_t *start, size_t *end) {
    for (size_t i = from; i < len; i++) {
        size_t e = number_at(s, len, i);
        if (e > i) {
            *start = i;
            *end = e;
            return true;
        }
    }
    return false;
}

/* The normalised form of the number s[a..b) into out (b - a + 2 bytes do). */
static long normalise(const char *s, size_t a, size_t b, char *out, size_t cap) {
    bool neg = s[a] == '-';
    if (neg) a++;
    size_t int_end = a;
    while (int_end < b && s[int_end] != '.') int_end++;
    size_t frac_from = int_end < b ? int_end + 1 : b, frac_end = b;
    while (frac_end > frac_from && s[frac_end - 1] == '0') frac_end--;
    /* the sign's byte is kept free until we know the number is not zero */
    size_t k = neg ? 1 : 0;
    for (size_t i = a; i < int_end; i++) {
        if (s[i] == ',' || (k == (neg ? 1u : 0u) && s[i] == '0')) continue;
        if (k + 1 >= cap) return -1;
        out[k++] = s[i];
    }
    if (k == (neg ? 1u : 0u)) {
        if (k + 1 >= cap) return -1;
        out[k++] = '0';
    }
    bool zero = k == (neg ? 2u : 1u) && out[k - 1] == '0' && frac_end == frac_from;
    if (frac_end > frac_from) {
        if (k + 1 + (frac_end - frac_from) >= cap) return -1;
        out[k++] = '.';
        for (size_t i = frac_from; i < frac_end; i++) out[k++] = s[i];
    }
    if (neg && zero) { /* "-0" is "0" */
        out[0] = '0';
        k = 1;
    } else if (neg) {
        out[0] = '-';
    }
    out[k] = '\0';
    return (long)k;
}

static long extract_gsm8k(const char *s, size_t len, char *out, size_t cap) {
    size_t a, b;
    for (size_t i = 0; i + 4 <= len; i++) {
        if (memcmp(s + i, "####", 4) != 0) continue;
        if (next_number(s, len, i + 4, &a, &b)) return normalise(s, a, b, out, cap);
        break;
    }
    bool found = false;
    size_t la = 0, lb = 0;
    for (size_t from = 0; next_number(s, len, from, &a, &b); from = b) {
        found = true;
        la = a;
        lb = b;
    }
    return found ? normalise(s, la, lb, out, cap) : -1;
}

long answer_extract(answer_rule rule, const char *text, size_t len, char *out, size_t cap) {
    switch (rule) {
    case ANSWER_EXACT: {
        size_t a = 0, b = len;
        while (a < b && is_space(text[a])) a++;
        while (b > a && is_space(text[b - 1])) b--;
        if (b - a + 1 > cap) return -1;
        memcpy(out, text + a, b - a);
        out[b - a] = '\0';
        return (long)(b - a);
    }
    case ANSWER_GSM8K: return extract_gsm8k(text, len, out, cap);
    case ANSWER_NONE:
    case ANSWER_RULE_COUNT: break;
    }
    return -1;
}

int answer_match(answer_rule rule, const char *generated, size_t glen, const char *reference,
                 size_t rlen) {
    char *g = malloc(glen + 2), *r = malloc(rlen + 2);
    int rc = -1;
    if (g && r) {
        long gn = answer_extract(rule, generated, glen, g, glen + 2);
        long rn = answer_extract(rule, reference, rlen, r, rlen + 2);
        rc = gn >= 0 && rn >= 0 && gn == rn && memcmp(g, r, (size_t)gn) == 0;
    }
    free(g);
    free(r);
    return rc;
}
