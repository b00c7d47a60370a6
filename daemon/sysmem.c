/* sysmem.c — the memory limit for jobs (sysmem.h). */
#include "sysmem.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MEMINFO "/proc/meminfo"

static int parse_limit(const char *text, size_t *bytes, char *err, size_t errlen) {
    char *end;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    unsigned shift = 0;
    if (*end == 'K' || *end == 'k')
        shift = 10;
    else if (*end == 'M' || *end == 'm')
        shift = 20;
    else if (*end == 'G' || *end == 'g')
        shift = 30;
    if (shift) end++;
    if (errno || end == text || *end || text[0] == '-' || v > (SIZE_MAX >> shift)) {
        snprintf(err, errlen,
                 "%s: '%.40s' is not a size (bytes, or a number with K, M or G: \"2G\")",
                 SYSMEM_LIMIT_ENV, text);
        return -1;
    }
    *bytes = (size_t)v << shift;
    return 0;
}

int sysmem_limit(size_t *bytes, const char **source, char *err, size_t errlen) {
    const char *env = getenv(SYSMEM_LIMIT_ENV);
    if (env && *env) {
        *source = SYSMEM_LIMIT_ENV;
        return parse_limit(env, bytes, err, errlen);
    }
    *source = "MemAvailable";
    FILE *f = fopen(MEMINFO, "r");
    if (!f) {
        snprintf(err, errlen, "%s: cannot open: %s", MEMINFO, strerror(errno));
        return 1;
    }
    char line[256];
    int rc = 1;
    while (fgets(line, sizeof line, f)) {
        unsigned long long kib;
        if (sscanf(line, "MemAvailable: %llu kB", &kib) == 1) {
            *bytes = kib > (SIZE_MAX >> 10) ? SIZE_MAX : (size_t)kib << 10;
            rc = 0;
            break;
        }
    }
    fclose(f);
    if (rc != 0) snprintf(err, errlen, "%s: no MemAvailable line", MEMINFO);
    return rc;
}

void sysmem_format(char *buf, size_t cap, size_t bytes) {
    double b = (double)bytes;
    if (b >= 1024.0 * 1024 * 1024)
        snprintf(buf, cap, "%.2f GiB", b / (1024.0 * 1024 * 1024));
    else if (b >= 1024.0 * 1024)
        snprintf(buf, cap, "%.1f MiB", b / (1024.0 * 1024));
    else if (b >= 1024.0)
        snprintf(buf, cap, "%.1f KiB", b / 1024.0);
    else
        snprintf(buf, cap, "%zu B", bytes);
}
