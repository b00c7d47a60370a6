/* errmsg.c — see errmsg.h. */
#include "base/errmsg.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int set_err(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return -1;
}

void vappendf(char *buf, size_t cap, const char *fmt, va_list ap) {
    size_t len = strnlen(buf, cap);
    if (len + 1 >= cap) return;
    vsnprintf(buf + len, cap - len, fmt, ap);
}

void appendf(char *buf, size_t cap, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vappendf(buf, cap, fmt, ap);
    va_end(ap);
}
