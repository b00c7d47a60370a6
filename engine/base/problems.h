/* problems.h — problems found while checking a file against a model (missing
 * tensors, wrong shapes, unknown names), collected and reported together in
 * one message, so a user fixes them all at once instead of one per attempt.
 * The first PROBLEMS_LISTED are spelled out; the rest are counted. */
#ifndef AFLO_PROBLEMS_H
#define AFLO_PROBLEMS_H

#include <stddef.h>

/* Enough to name a handful of tensors in a message that stays readable. */
#define PROBLEMS_LISTED 8

typedef struct {
    char text[1536]; /* the first PROBLEMS_LISTED, "; "-separated */
    int count;       /* all of them */
} problem_list;

/* Add one problem (printf-style). Zero-initialise the list first. */
void problem_add(problem_list *pr, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* "<what>: <count> <noun>: <problems>[; and N more]" into err, with noun
 * `one` for a single problem and `many` otherwise; returns -1. */
int problems_error(const problem_list *pr, const char *what, const char *one, const char *many,
                   char *err, size_t errlen);

#endif
