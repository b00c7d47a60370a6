/* problems.c — see problems.h. */
#include "base/problems.h"

#include "base/errmsg.h"

#include <stdarg.h>
#include <stdio.h>

void problem_add(problem_list *pr, const char *fmt, ...) {
    if (pr->count++ >= PROBLEMS_LISTED) return;
    if (pr->count > 1) appendf(pr->text, sizeof pr->text, "; ");
    va_list ap;
    va_start(ap, fmt);
    vappendf(pr->text, sizeof pr->text, fmt, ap);
    va_end(ap);
}

int problems_error(const problem_list *pr, const char *what, const char *one, const char *many,
                   char *err, size_t errlen) {
    char more[48] = "";
    if (pr->count > PROBLEMS_LISTED)
        snprintf(more, sizeof more, "; and %d more", pr->count - PROBLEMS_LISTED);
    return set_err(err, errlen, "%s: %d %s: %s%s", what, pr->count, pr->count == 1 ? one : many,
                   pr->text, more);
}
