/* fsutil.c — see fsutil.h. */
#include "fsutil.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int path_join(char *out, size_t cap, const char *dir, const char *name, char *err, size_t errlen) {
    int n = snprintf(out, cap, "%s/%s", dir, name);
    if (n < 0 || (size_t)n >= cap) {
        snprintf(err, errlen, "path too long: %s/%s", dir, name);
        return -1;
    }
    return 0;
}

bool file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

int make_dir(const char *path, char *err, size_t errlen) {
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

int make_dirs(const char *path, char *err, size_t errlen) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) {
        snprintf(err, errlen, "path too long: %s", path);
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/') continue;
        *p = '\0';
        int rc = make_dir(buf, err, errlen);
        *p = '/';
        if (rc != 0) return -1;
    }
    return make_dir(buf, err, errlen);
}
