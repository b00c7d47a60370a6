/* ustar.c — the ustar writer (POSIX.1-2001 "ustar Interchange Format").
 *
 * A member is a 512-byte header block (ASCII octal numbers, a checksum that
 * is the byte sum of the header with the checksum field read as spaces) and
 * the file's bytes padded to a whole block. Files are copied with read/write
 * in CHUNK-sized pieces; a file that changes size while it is copied is an
 * error rather than a corrupt archive. */
#include "ustar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define CHUNK ((size_t)64 << 10)
/* Refuse absurd folders instead of growing the name list without bound. */
#define MAX_MEMBERS 4096

static void octal(char *field, size_t width, uint64_t v) {
    /* width - 1 digits, zero-padded, then NUL. */
    field[width - 1] = '\0';
    for (size_t i = width - 1; i-- > 0;) {
        field[i] = (char)('0' + (v & 7));
        v >>= 3;
    }
}

int ustar_header(uint8_t hdr[USTAR_BLOCK], const char *name, char type, uint32_t mode,
                 uint64_t size, int64_t mtime, char *err, size_t errlen) {
    size_t len = strlen(name);
    if (len == 0 || len > USTAR_NAME_MAX) {
        snprintf(err, errlen, "tar member name '%.40s' is empty or longer than %d bytes", name,
                 USTAR_NAME_MAX);
        return -1;
    }
    if (size > USTAR_SIZE_MAX) {
        snprintf(err, errlen, "tar member '%s' is too large for ustar", name);
        return -1;
    }
    if (mtime < 0) mtime = 0;
    char *h = (char *)hdr;
    memset(h, 0, USTAR_BLOCK);
    memcpy(h, name, len);            /* name[100] */
    octal(h + 100, 8, mode & 07777); /* mode */
    octal(h + 108, 8, 0);            /* uid */
    octal(h + 116, 8, 0);            /* gid */
    octal(h + 124, 12, size);        /* size */
    octal(h + 136, 12, (uint64_t)mtime & 077777777777ull);
    h[156] = type;               /* typeflag */
    memcpy(h + 257, "ustar", 6); /* magic "ustar\0" */
    memcpy(h + 263, "00", 2);    /* version */
    memcpy(h + 265, "root", 4);  /* uname */
    memcpy(h + 297, "root", 4);  /* gname */
    /* Checksum: sum of all bytes with the field itself as 8 spaces, written
     * as 6 octal digits, NUL, space. */
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < USTAR_BLOCK; i++) sum += hdr[i];
    octal(h + 148, 7, sum);
    h[155] = ' ';
    return 0;
}

static int write_all(int fd, const void *buf, size_t len, char *err, size_t errlen) {
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR) continue;
            snprintf(err, errlen, "writing the archive: %s", strerror(errno));
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

static int cmp_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* One regular file dir/name as member prefix+name. */
static int write_member(int out_fd, int dir_fd, const char *name, const char *prefix, char *buf,
                        char *err, size_t errlen) {
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open '%s': %s", name, strerror(errno));
        return -1;
    }
    struct stat st;
    int rc = -1;
    if (fstat(fd, &st) != 0) {
        snprintf(err, errlen, "cannot stat '%s': %s", name, strerror(errno));
        goto out;
    }
    char member[USTAR_NAME_MAX + 2];
    if (snprintf(member, sizeof member, "%s%s", prefix, name) > USTAR_NAME_MAX) {
        snprintf(err, errlen, "file name '%.40s' is too long for the archive", name);
        goto out;
    }
    uint8_t hdr[USTAR_BLOCK];
    if (ustar_header(hdr, member, '0', 0644, (uint64_t)st.st_size, (int64_t)st.st_mtime, err,
                     errlen) != 0 ||
        write_all(out_fd, hdr, sizeof hdr, err, errlen) != 0)
        goto out;
    uint64_t left = (uint64_t)st.st_size;
    while (left) {
        size_t want = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t r = read(fd, buf, want);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            snprintf(err, errlen, "reading '%s': %s", name,
                     r < 0 ? strerror(errno) : "file shrank");
            goto out;
        }
        if (write_all(out_fd, buf, (size_t)r, err, errlen) != 0) goto out;
        left -= (uint64_t)r;
    }
    size_t pad = (size_t)((USTAR_BLOCK - st.st_size % USTAR_BLOCK) % USTAR_BLOCK);
    memset(buf, 0, pad);
    rc = write_all(out_fd, buf, pad, err, errlen);
out:
    close(fd);
    return rc;
}

int ustar_write_dir(int out_fd, const char *dir, const char *prefix, char *err, size_t errlen) {
    DIR *d = opendir(dir);
    if (!d) {
        snprintf(err, errlen, "cannot open the folder: %s", strerror(errno));
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    char *buf = NULL;
    int rc = -1;
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        struct stat st;
        if (e->d_name[0] == '.' || fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
            !S_ISREG(st.st_mode))
            continue;
        if (n == MAX_MEMBERS) {
            snprintf(err, errlen, "the folder has more than %d files", MAX_MEMBERS);
            goto out;
        }
        if (n == cap) {
            size_t ncap = cap ? 2 * cap : 8;
            char **nn = realloc(names, ncap * sizeof *nn);
            if (!nn) goto oom;
            names = nn;
            cap = ncap;
        }
        if (!(names[n] = strdup(e->d_name))) goto oom;
        n++;
    }
    qsort(names, n, sizeof *names, cmp_names);
    if (!(buf = malloc(CHUNK))) goto oom;
    uint8_t hdr[USTAR_BLOCK];
    if (prefix[0] && (ustar_header(hdr, prefix, '5', 0755, 0, 0, err, errlen) != 0 ||
                      write_all(out_fd, hdr, sizeof hdr, err, errlen) != 0))
        goto out;
    for (size_t i = 0; i < n; i++)
        if (write_member(out_fd, dirfd(d), names[i], prefix, buf, err, errlen) != 0) goto out;
    memset(buf, 0, 2 * USTAR_BLOCK); /* end of archive */
    rc = write_all(out_fd, buf, 2 * USTAR_BLOCK, err, errlen);
    goto out;
oom:
    snprintf(err, errlen, "out of memory listing the folder");
out:
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    free(buf);
    closedir(d);
    return rc;
}
