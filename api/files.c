/* files.c — file downloads: a finished job's adapter files (GET
 * /jobs/{id}/adapter/{file}) and the web UI's static files (GET /, GET
 * /{path}).
 *
 * Both are served from an open file descriptor (MHD_create_response_from_fd:
 * MHD sends it with sendfile where it can and closes it), with an ETag from
 * the file's size, mtime and inode and a 304 for a matching If-None-Match.
 *
 * No request path reaches the file system as given. A job's downloads are
 * adapter.safetensors, the files of its adapter folders (peft/ for an
 * adapter, model/ — a whole Hugging Face model — for method full) as
 * "<folder>/<name>" with a plain name opened inside the folder without
 * following links, and "<folder>.tar", each folder as one archive. An archive
 * is built on its first request (and again when the folder is newer: a
 * retried job) as an atomic file (a temporary renamed into place,
 * atomicfile.h), so concurrent first requests each get a whole archive. Anything else is a 404 that lists the
 * job's files. Static paths are decoded by MHD (percent escapes, with NUL
 * turned into a refused control character, see server.c) and then must be
 * relative, without "." or ".." segments, hidden names, backslashes or
 * control characters; the joined path is resolved with realpath() and must
 * still lie inside web_dir — which also refuses a symlink pointing out of it.
 * Directories are never listed; only "/" maps to index.html. */
#include "api_internal.h"
#include "dbpool.h"
#include "handlers.h"
#include "reply.h"
#include "request.h"
#include "ustar.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A job's adapter folders: their files are served by name, each folder also
 * as <name>.tar. */
static const char *const ADAPTER_FOLDERS[] = {"peft", "model"};
#define N_ADAPTER_FOLDERS ((int)(sizeof ADAPTER_FOLDERS / sizeof ADAPTER_FOLDERS[0]))
#define NATIVE_ADAPTER_FILE "adapter.safetensors"
/* The 404's list of a job's files stops at this length. */
#define FILE_LIST_MAX 2048

typedef struct {
    const char *ext;
    const char *type;
} mime_type;

static const mime_type MIME_TYPES[] = {
    {"html", "text/html; charset=utf-8"},
    {"htm", "text/html; charset=utf-8"},
    {"css", "text/css; charset=utf-8"},
    {"js", "text/javascript; charset=utf-8"},
    {"mjs", "text/javascript; charset=utf-8"},
    {"json", "application/json"},
    {"map", "application/json"},
    {"txt", "text/plain; charset=utf-8"},
    {"md", "text/markdown; charset=utf-8"},
    {"svg", "image/svg+xml"},
    {"png", "image/png"},
    {"jpg", "image/jpeg"},
    {"jpeg", "image/jpeg"},
    {"gif", "image/gif"},
    {"webp", "image/webp"},
    {"ico", "image/vnd.microsoft.icon"},
    {"woff", "font/woff"},
    {"woff2", "font/woff2"},
    {"wasm", "application/wasm"},
};

static const char *mime_for(const char *path) {
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof MIME_TYPES / sizeof MIME_TYPES[0]; i++)
            if (strcasecmp(dot + 1, MIME_TYPES[i].ext) == 0) return MIME_TYPES[i].type;
    return "application/octet-stream";
}

/* Serve the open file fd (taken) with its type; 304 when the client has it. */
static enum MHD_Result reply_file(api_req *r, int fd, const struct stat *st,
                                  const char *content_type, const char *disposition,
                                  const char *cache_control) {
    char etag[64];
    api_file_etag(st, etag);
    struct MHD_Response *resp;
    unsigned status;
    if (api_etag_matches(r, etag)) {
        close(fd);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        status = MHD_HTTP_NOT_MODIFIED;
    } else {
        resp = MHD_create_response_from_fd((uint64_t)st->st_size, fd);
        if (!resp) close(fd);
        status = MHD_HTTP_OK;
    }
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_ETAG, etag);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, cache_control);
    if (status == MHD_HTTP_OK) {
        MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
        if (disposition)
            MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_DISPOSITION, disposition);
    }
    return reply_response(r, status, resp);
}

/* ---- adapters ------------------------------------------------------------------ */

/* Build adapter/<folder>.tar from adapter/<folder>/ unless it exists and is
 * newer than the folder. 0, or -1 + message with errno ENOENT when there is
 * no such folder. */
static int ensure_archive(const char *adapter_dir, const char *folder, char *err, size_t errlen) {
    char tar_path[PATH_MAX + 32], dir[PATH_MAX + 32], prefix[32];
    snprintf(tar_path, sizeof tar_path, "%s/%s.tar", adapter_dir, folder);
    snprintf(dir, sizeof dir, "%s/%s", adapter_dir, folder);
    snprintf(prefix, sizeof prefix, "%s/", folder);
    struct stat st, ds;
    if (stat(dir, &ds) != 0 || !S_ISDIR(ds.st_mode)) {
        snprintf(err, errlen, "this job has no %s/ folder", folder);
        errno = ENOENT;
        return -1;
    }
    if (stat(tar_path, &st) == 0 &&
        (st.st_mtim.tv_sec > ds.st_mtim.tv_sec ||
         (st.st_mtim.tv_sec == ds.st_mtim.tv_sec && st.st_mtim.tv_nsec >= ds.st_mtim.tv_nsec)))
        return 0;
    atomic_file af;
    char why[512];
    if (atomic_file_open(&af, tar_path, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot create the archive: %s", strerror(errno));
        return -1;
    }
    if (ustar_write_dir(af.fd, dir, prefix, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot build the archive: %s", why);
        atomic_file_abort(&af);
        errno = EIO;
        return -1;
    }
    if (atomic_file_commit(&af, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot store the archive: %s", strerror(errno));
        errno = EIO;
        return -1;
    }
    return 0;
}

/* A file name we serve from an adapter folder: one segment, not hidden. */
static bool plain_name(const char *s) {
    if (!*s || *s == '.' || strlen(s) > NAME_MAX) return false;
    for (const unsigned char *c = (const unsigned char *)s; *c; c++)
        if (*c == '/' || *c == '\\' || *c == '"' || *c < 0x20 || *c == 0x7f) return false;
    return true;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* "adapter.safetensors, model.tar, model/config.json, ..." — what this job
 * has to download. */
static void list_job_files(const char *adapter_dir, char *out, size_t cap) {
    out[0] = '\0';
    size_t used = 0;
#define ADD(...)                                                                 \
    do {                                                                         \
        int n_ = used < cap ? snprintf(out + used, cap - used, __VA_ARGS__) : 0; \
        used += n_ > 0 ? (size_t)n_ : 0;                                         \
    } while (0)
    char path[PATH_MAX + 64];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", adapter_dir, NATIVE_ADAPTER_FILE);
    if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) ADD("%s", NATIVE_ADAPTER_FILE);
    for (int f = 0; f < N_ADAPTER_FOLDERS; f++) {
        snprintf(path, sizeof path, "%s/%s", adapter_dir, ADAPTER_FOLDERS[f]);
        DIR *d = opendir(path);
        if (!d) continue;
        ADD("%s%s.tar", used ? ", " : "", ADAPTER_FOLDERS[f]);
        char *names[64];
        int n = 0;
        struct dirent *e;
        struct stat fs;
        while ((e = readdir(d)) != NULL && n < 64)
            if (plain_name(e->d_name) &&
                fstatat(dirfd(d), e->d_name, &fs, AT_SYMLINK_NOFOLLOW) == 0 &&
                S_ISREG(fs.st_mode) && (names[n] = strdup(e->d_name)))
                n++;
        closedir(d);
        qsort(names, (size_t)n, sizeof *names, compare_names);
        for (int i = 0; i < n; i++) {
            ADD(", %s/%s", ADAPTER_FOLDERS[f], names[i]);
            free(names[i]);
        }
    }
#undef ADD
    if (used >= cap && cap > 4) memcpy(out + cap - 4, "...", 4);
    if (!out[0]) snprintf(out, cap, "none (the adapter folder is missing)");
}

/* Open what the request names: adapter.safetensors, <folder>.tar (built on
 * demand) or <folder>/<plain name>. -1 with errno ENOENT when it names
 * nothing this job has, other errno (err set) when building an archive failed. */
static int open_adapter_file(const char *adapter_dir, const char *name, const char **type,
                             char *err, size_t errlen) {
    char path[PATH_MAX + API_PATH_PARAM_MAX];
    *type = "application/octet-stream";
    if (strcmp(name, NATIVE_ADAPTER_FILE) == 0) {
        snprintf(path, sizeof path, "%s/%s", adapter_dir, name);
        return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    }
    for (int f = 0; f < N_ADAPTER_FOLDERS; f++) {
        const char *folder = ADAPTER_FOLDERS[f];
        size_t fl = strlen(folder);
        if (strncmp(name, folder, fl) != 0) continue;
        if (strcmp(name + fl, ".tar") == 0) {
            *type = "application/x-tar";
            if (ensure_archive(adapter_dir, folder, err, errlen) != 0) return -1;
            snprintf(path, sizeof path, "%s/%s", adapter_dir, name);
            return open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        }
        if (name[fl] == '/' && plain_name(name + fl + 1)) {
            snprintf(path, sizeof path, "%s/%s", adapter_dir, folder);
            int dfd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
            if (dfd < 0) return -1;
            int fd = openat(dfd, name + fl + 1, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
            int saved = errno;
            close(dfd);
            errno = saved;
            *type = mime_for(name);
            return fd;
        }
    }
    errno = ENOENT;
    return -1;
}

enum MHD_Result h_job_adapter(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_job j;
    char err[1024];
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0) return reply_store_error(r, st, err);
    store_job_status status = j.status;
    store_job_clear(&j);
    if (status != STORE_JOB_SUCCEEDED)
        return reply_error(r, MHD_HTTP_CONFLICT, "not_ready", NULL,
                           "job %s is %s: its adapter can be downloaded once it has succeeded",
                           r->id, store_job_status_name(status));

    char adapter_dir[PATH_MAX];
    snprintf(adapter_dir, sizeof adapter_dir, "%s/%s/adapter", r->srv->jobs_dir, r->id);
    const char *type;
    err[0] = '\0';
    int fd = open_adapter_file(adapter_dir, r->param, &type, err, sizeof err);
    struct stat sb;
    if (fd >= 0 && (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode))) {
        close(fd);
        fd = -1;
        errno = ENOENT;
    }
    if (fd < 0) {
        if (err[0] && errno != ENOENT)
            return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", NULL, "%s", err);
        char files[FILE_LIST_MAX];
        list_job_files(adapter_dir, files, sizeof files);
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "file",
                           "job %s has no adapter file '%.100s'; its files are: %s", r->id,
                           r->param, files);
    }
    const char *base = strrchr(r->param, '/');
    base = base ? base + 1 : r->param;
    char disposition[400];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"aflorad-%s-%.255s\"", r->id,
             base);
    /* A succeeded job's files never change, but the token guards them:
     * private, so shared caches keep no copy. */
    return reply_file(r, fd, &sb, type, disposition, "private, max-age=0");
}

/* ---- static files ---------------------------------------------------------------- */

/* A request path that may name a file under web_dir ("" = refused). */
static bool static_path_ok(const char *p) {
    if (!*p || *p == '/') return false;
    const char *seg = p;
    for (const char *c = p;; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '/' || ch == '\0') {
            size_t n = (size_t)(c - seg);
            if (n == 0 && ch == '\0') return true; /* "dir/": found to be no file, 404 */
            if (n == 0 || seg[0] == '.')           /* "a//b", ".", "..", hidden */
                return false;
            if (ch == '\0') return true;
            seg = c + 1;
        } else if (ch < 0x20 || ch == 0x7f || ch == '\\') {
            return false;
        }
    }
}

enum MHD_Result h_static(api_req *r) {
    api_server *s = r->srv;
    const char *rel = r->param[0] ? r->param : "index.html";
    if (!static_path_ok(rel))
        return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_path", NULL,
                           "the path must not contain '.' or '..' segments, hidden names, "
                           "backslashes or control characters");
    if (!s->web_dir)
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL,
                           "no such route: GET /%.200s (this server has no web directory)",
                           r->param);
    char joined[PATH_MAX + API_PATH_PARAM_MAX];
    snprintf(joined, sizeof joined, "%s/%s", s->web_dir, rel);
    char *real = realpath(joined, NULL);
    size_t wl = strlen(s->web_dir);
    int fd = -1;
    struct stat st;
    if (real && strncmp(real, s->web_dir, wl) == 0 && real[wl] == '/')
        fd = open(real, O_RDONLY | O_CLOEXEC);
    free(real);
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        fd = -1;
    }
    if (fd < 0)
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such file: /%.200s",
                           r->param);
    /* index.html changes with each release; assets revalidate by ETag too. */
    return reply_file(r, fd, &st, mime_for(rel), NULL, "no-cache");
}
