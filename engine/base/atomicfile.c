/* atomicfile.c — temp file beside the target, fsync, rename, directory fsync
 * (see atomicfile.h). Every file aflorad writes for keeps goes through here:
 * safetensors, checkpoints, adapter folders, the demo model, the daemon's
 * job files, uploads and archives. */
#include "base/atomicfile.h"

#include "base/errmsg.h"

#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define TEMP_MARK ".tmp-"
/* Names taken by someone else (a temp a crashed process left under a pid
 * that is ours now) are skipped; this many in a row means something else is
 * wrong. */
#define TEMP_NAME_ATTEMPTS 100

int (*atomic_file_fsync)(int fd) = fsync;

static atomic_uint temp_counter;

/* Forget an open file: close it, remove the temporary when asked. Keeps errno. */
static void release(atomic_file *af, bool remove_temp) {
    int saved = errno;
    if (af->fd >= 0) close(af->fd);
    if (remove_temp) unlink(af->tmp);
    free(af->path);
    free(af->tmp);
    *af = (atomic_file){.fd = -1};
    errno = saved;
}

int atomic_file_open(atomic_file *af, const char *path, char *err, size_t errlen) {
    *af = (atomic_file){.fd = -1};
    size_t cap = strlen(path) + sizeof TEMP_MARK + 48; /* two decimal numbers */
    af->path = strdup(path);
    af->tmp = malloc(cap);
    if (!af->path || !af->tmp) {
        release(af, false);
        errno = ENOMEM;
        return set_err(err, errlen, "%s: out of memory", path);
    }
    for (int attempt = 0; attempt < TEMP_NAME_ATTEMPTS; attempt++) {
        snprintf(af->tmp, cap, "%s" TEMP_MARK "%ld-%u", path, (long)getpid(),
                 atomic_fetch_add(&temp_counter, 1));
        af->fd = open(af->tmp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (af->fd >= 0 || errno != EEXIST) break;
    }
    if (af->fd < 0) {
        int e = errno;
        release(af, false);
        set_err(err, errlen, "%s: cannot create a temporary file beside it: %s", path, strerror(e));
        errno = e;
        return -1;
    }
    return 0;
}

int atomic_file_write(atomic_file *af, const void *data, size_t len) {
    if (!af->path) {
        errno = EBADF;
        return -1;
    }
    if (af->error) {
        errno = af->error;
        return -1;
    }
    const char *p = data;
    while (len > 0) {
        ssize_t k = write(af->fd, p, len);
        if (k < 0 && errno == EINTR) continue;
        if (k <= 0) {
            if (k == 0) errno = EIO; /* not for regular files; never spin */
            af->error = errno;
            return -1;
        }
        p += k;
        len -= (size_t)k;
    }
    return 0;
}

void atomic_file_abort(atomic_file *af) {
    if (af->path) release(af, true);
}

/* The directory part of path: "." when there is none. NULL on OOM. */
static char *parent_dir(const char *path) {
    const char *slash = strrchr(path, '/');
    if (!slash) return strdup(".");
    return strndup(path, slash == path ? 1 : (size_t)(slash - path));
}

int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = atomic_file_fsync(fd);
    if (rc != 0 && errno == EINVAL) rc = 0; /* cannot sync directories; the renames stand */
    int saved = errno;
    close(fd);
    errno = saved;
    return rc;
}

int atomic_file_commit(atomic_file *af, char *err, size_t errlen) {
    if (!af->path) {
        errno = EBADF;
        return set_err(err, errlen, "atomic_file_commit: no file is open");
    }
    const char *step = NULL;
    if (af->error) {
        errno = af->error;
        step = "write";
    } else if (atomic_file_fsync(af->fd) != 0) {
        step = "fsync";
    } else {
        int rc = close(af->fd);
        af->fd = -1;
        if (rc != 0)
            step = "close";
        else if (rename(af->tmp, af->path) != 0)
            step = "rename into place";
    }
    if (step) {
        int e = errno;
        set_err(err, errlen, "%s: %s failed: %s (the previous file, if any, is kept)", af->path,
                step, strerror(e));
        release(af, true);
        errno = e;
        return -1;
    }
    /* the rename happened: from here on the target holds the new bytes */
    char *dir = parent_dir(af->path);
    int rc = dir ? fsync_dir(dir) : -1;
    int e = dir ? errno : ENOMEM;
    if (rc != 0)
        set_err(err, errlen, "%s: written, but syncing its directory failed: %s", af->path,
                strerror(e));
    free(dir);
    release(af, false);
    errno = e;
    return rc;
}

int write_file_atomic(const char *path, const void *data, size_t len, char *err, size_t errlen) {
    atomic_file af;
    if (atomic_file_open(&af, path, err, errlen) != 0) return -1;
    atomic_file_write(&af, data, len); /* a failure is reported by the commit */
    return atomic_file_commit(&af, err, errlen);
}

bool atomic_file_is_temp(const char *name) {
    const char *mark = NULL;
    for (const char *p = strstr(name, TEMP_MARK); p; p = strstr(p + 1, TEMP_MARK)) mark = p;
    if (!mark || mark == name) return false;
    const char *p = mark + strlen(TEMP_MARK);
    size_t pid_digits = strspn(p, "0123456789");
    if (pid_digits == 0 || p[pid_digits] != '-') return false;
    p += pid_digits + 1;
    size_t n_digits = strspn(p, "0123456789");
    return n_digits > 0 && p[n_digits] == '\0';
}
