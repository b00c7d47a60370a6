/* answer.h — answer rules: whether a generated text gives the same answer
 * as a reference text, for exact-match evaluation of causal LMs.
 *
 * Rules:
 *   none    no answer is judged (evaluation generates nothing)
 *   exact   the whole text, ASCII whitespace trimmed at both ends, compared
 *           byte for byte
 *   gsm8k   a number: the first one after the first "####" when the text
 *           has "####" followed somewhere by a number (GSM8K's reference
 *           answers end "#### 72"), else the last number in the text;
 *           compared after normalising (below)
 * A number is an optional '-' (a sign only when the character before it is
 * not a letter or digit: "5-3" is 5 and 3), digits whose groups may be
 * separated by commas followed by exactly three digits ("1,234,567"; "1,2"
 * is two numbers), then optionally '.' and digits; ".5" counts when the
 * character before the '.' is not a letter or digit. A '.' not followed by
 * a digit ends the number ("42." is 42). Normalised: commas removed, the
 * integer part's leading zeros dropped, the fraction's trailing zeros
 * dropped and a fraction left empty removed ("7.0", "7.", "007" are all
 * "7"; ".5" is "0.5"), and "-0" is "0". Exponents, words ("seven") and
 * fractions ("1/2") are not read as numbers.
 *
 * A text with no answer under the rule (gsm8k: no number) never matches,
 * not even another text without one. Pure functions: no model, no I/O. */
#ifndef AFLO_ANSWER_H
#define AFLO_ANSWER_H

#include <stdbool.h>
#include <stddef.h>

typedef enum { ANSWER_NONE, ANSWER_EXACT, ANSWER_GSM8K, ANSWER_RULE_COUNT } answer_rule;
/* "none", "exact", "gsm8k": the job spec's names. */
extern const char *const answer_rule_names[ANSWER_RULE_COUNT];

/* The answer of text[0..len) under rule, normalised, into out (NUL-
 * terminated; cap >= len + 2 always suffices). Returns its length, or -1
 * when the text has none (rule none, gsm8k without a number) or cap is too
 * small. */
long answer_extract(answer_rule rule, const char *text, size_t len, char *out, size_t cap);

/* 1 when both texts have an answer under rule and the answers are equal,
 * 0 when not, -1 when out of memory. */
int answer_match(answer_rule rule, const char *generated, size_t glen, const char *reference,
                 size_t rlen);

#endif
