/* folder.c — see folder.h. */
#include "base/folder.h"

#include "base/atomicfile.h"
#include "base/errmsg.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Directory part of path ("." when none) into out. */
static void parent_of(char *out, size_t cap, const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(out, cap, ".");
    else if (slash == path)
        snprintf(out, cap, "/");
    else
        snprintf(out, cap, "%.*s", (int)(slash - path), path);
}

char *read_text_file(const char *path, size_t max, size_t *len, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        set_err(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return NULL;
    }
    struct stat st;
    char *buf = NULL;
    if (fstat(fd, &st) || !S_ISREG(st.st_mode)) {
        set_err(err, errlen, "%s: not a regular file", path);
        goto out;
    }
    if ((size_t)st.st_size > max) {
        set_err(err, errlen, "%s: larger than %zu bytes, not a plausible file of this kind", path,
                max);
        goto out;
    }
    size_t n = (size_t)st.st_size;
    buf = malloc(n + 1);
    if (!buf) {
        set_err(err, errlen, "%s: out of memory", path);
        goto out;
    }
    size_t got = 0;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            set_err(err, errlen, "%s: read failed", path);
            free(buf);
            buf = NULL;
            goto out;
        }
        got += (size_t)k;
    }
    buf[n] = '\0';
    *len = n;
out:
    close(fd);
    return buf;
}

/* Remove the files a staging directory may hold, then the directory itself.
 * Best effort. (A failed atomic write removes its own temporary.) */
static void remove_staging(const char *staging, const char *const *names, size_t n) {
    char p[4096];
    for (size_t i = 0; i < n; i++)
        if ((size_t)snprintf(p, sizeof p, "%s/%s", staging, names[i]) < sizeof p) unlink(p);
    rmdir(staging);
}

/* Refuse to replace a directory that holds anything but `names`. */
static int only_these_files(const char *dir, const char *const *names, size_t n, char *err,
                            size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) return set_err(err, errlen, "%s: cannot read: %s", dir, strerror(errno));
    int rc = 0;
    struct dirent *e;
    while (rc == 0 && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        bool ours = false;
        for (size_t i = 0; i < n; i++) ours |= strcmp(e->d_name, names[i]) == 0;
        if (!ours)
            rc = set_err(err, errlen,
                         "%s: exists and holds %s, which is not part of an adapter; refusing to "
                         "replace it",
                         dir, e->d_name);
    }
    closedir(d);
    return rc;
}

int write_folder_atomic(const char *dir_in, const char *const *names, size_t n, folder_filler fill,
                        void *ctx, char *err, size_t errlen) {
    char dir[4096], staging[4096 + 16], parent[4096];
    size_t len = strlen(dir_in);
    while (len > 1 && dir_in[len - 1] == '/') len--; /* "out/" is "out" */
    if (len == 0 || len + 16 >= sizeof dir) return set_err(err, errlen, "adapter folder: bad path");
    memcpy(dir, dir_in, len);
    dir[len] = '\0';
    parent_of(parent, sizeof parent, dir);
    snprintf(staging, sizeof staging, "%s.tmp-XXXXXX", dir);

    struct stat st;
    bool exists = stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode))
        return set_err(err, errlen, "%s: exists and is not a directory", dir);
    if (exists && only_these_files(dir, names, n, err, errlen)) return -1;
    if (!mkdtemp(staging))
        return set_err(err, errlen, "%s: cannot create a temporary directory beside it: %s", dir,
                       strerror(errno));
    if (fill(staging, ctx, err, errlen)) goto fail;
    if (fsync_dir(staging)) {
        set_err(err, errlen, "%s: fsync failed: %s", staging, strerror(errno));
        goto fail;
    }
    if (!exists) {
        if (rename(staging, dir)) {
            set_err(err, errlen, "%s: rename from %s failed: %s", dir, staging, strerror(errno));
            goto fail;
        }
    } else if (renameat2(AT_FDCWD, staging, AT_FDCWD, dir, RENAME_EXCHANGE) == 0) {
        remove_staging(staging, names, n); /* now the old files */
    } else if (errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP) {
        for (size_t i = 0; i < n; i++) {
            char from[4096 + 64], to[4096 + 64];
            snprintf(from, sizeof from, "%s/%s", staging, names[i]);
            snprintf(to, sizeof to, "%s/%s", dir, names[i]);
            if (rename(from, to)) {
                set_err(err, errlen, "%s: rename failed: %s", to, strerror(errno));
                goto fail;
            }
        }
        if (fsync_dir(dir)) {
            set_err(err, errlen, "%s: fsync failed: %s", dir, strerror(errno));
            goto fail;
        }
        remove_staging(staging, names, n);
    } else {
        set_err(err, errlen, "%s: swapping in the new folder failed: %s", dir, strerror(errno));
        goto fail;
    }
    if (fsync_dir(parent))
        return set_err(err, errlen, "%s: written, but syncing its directory failed: %s", dir,
                       strerror(errno));
    return 0;
fail:
    remove_staging(staging, names, n);
    return -1;
}

int copy_file_atomic(const char *from, const char *to, char *err, size_t errlen) {
    int in = open(from, O_RDONLY | O_CLOEXEC);
    if (in < 0) return set_err(err, errlen, "%s: cannot open: %s", from, strerror(errno));
    atomic_file af;
    if (atomic_file_open(&af, to, err, errlen)) {
        close(in);
        return -1;
    }
    char buf[1 << 16];
    for (;;) {
        ssize_t k = read(in, buf, sizeof buf);
        if (k < 0 && errno == EINTR) continue;
        if (k < 0) {
            set_err(err, errlen, "%s: read failed: %s", from, strerror(errno));
            close(in);
            atomic_file_abort(&af);
            return -1;
        }
        if (k == 0) break;
        if (atomic_file_write(&af, buf, (size_t)k)) break; /* commit reports it */
    }
    close(in);
    return atomic_file_commit(&af, err, errlen);
}

json_value *read_json_file(const char *path, size_t max, char *err, size_t errlen) {
    size_t len;
    char *text = read_text_file(path, max, &len, err, errlen);
    if (!text) return NULL;
    char jerr[160];
    json_value *root = json_parse(text, len, JSON_DEFAULT_MAX_DEPTH, jerr, sizeof jerr);
    free(text);
    if (!root) set_err(err, errlen, "%s: %s", path, jerr);
    return root;
}
