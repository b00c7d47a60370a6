/* errmsg.h — the engine's error-message helpers. Every fallible engine call
 * takes (char *err, size_t errlen) and returns -1 with a message there, in
 * the style of sqlite3_errmsg; these functions are how messages are made. */
#ifndef AFLO_ERRMSG_H
#define AFLO_ERRMSG_H

#include <stdarg.h>
#include <stddef.h>

/* printf into err (when err is non-NULL and errlen > 0); always returns -1 so
 * callers can write `return set_err(err, errlen, "...", ...);`. */
int set_err(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* printf appended to the NUL-terminated text in buf (capacity cap); silently
 * truncates. For messages that list several problems. */
void appendf(char *buf, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* appendf for a caller's own variadic function (problems.h's problem_add). */
void vappendf(char *buf, size_t cap, const char *fmt, va_list ap)
    __attribute__((format(printf, 3, 0)));

#endif
