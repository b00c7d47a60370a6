/* files.c — file downloads: a finished job's adapter files (GET
 * /jobs/{id}/adapter/{file}) and the web UI's static files (GET /, GET
 * /{path}).
 *
 * Both are served from an open file descriptor (MHD_create_response_from_fd:
 * MHD sends it with sendfile where it can and closes it), with an ETag from
 * the file's size, mtime and inode and a 304 for a matching If-None-Match.
 *
 * No request path reaches the file system as given. Adapter files are a fixed
 * list of names (ADAPTER_FILES); the request only chooses among them. The
 * PEFT archive (peft.tar) is built from the PEFT folder on its first request
 * as an atomic file (a temporary renamed into place, atomicfile.h), so
 * concurrent first requests each get a whole archive. Static paths are decoded by MHD (percent escapes, with NUL
 * turned into a refused control character, see server.c) and then must be
 * relative, without "." or ".." segments, hidden names, backslashes or
 * control characters; the joined path is resolved with realpath() and must
 * still lie inside web_dir — which also refuses a symlink pointing out of it.
 * Directories are never listed; only "/" maps to index.html. */
#include "api_internal.h"
#include "ustar.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

typedef struct {
    const char *name;          /* as requested, under adapter/ */
    const char *content_type;
    bool archive;              /* built from the peft/ folder on first use */
} adapter_file;

static const adapter_file ADAPTER_FILES[] = {
    {"adapter.safetensors", "application/octet-stream", false},
    {"peft/adapter_config.json", "application/json", false},
    {"peft/adapter_model.safetensors", "application/octet-stream", false},
    {"peft/config.json", "application/json", false},
    {"peft/README.md", "text/markdown; charset=utf-8", false},
    {"peft.tar", "application/x-tar", true},
};
#define N_ADAPTER_FILES ((int)(sizeof ADAPTER_FILES / sizeof ADAPTER_FILES[0]))

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

static const char *mime_for(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *dot = strrchr(slash ? slash : path, '.');
    if (dot)
        for (size_t i = 0; i < sizeof MIME_TYPES / sizeof MIME_TYPES[0]; i++)
            if (strcasecmp(dot + 1, MIME_TYPES[i].ext) == 0)
                return MIME_TYPES[i].type;
    return "application/octet-stream";
}

/* Serve the open file fd (taken) with its type; 304 when the client has it. */
static enum MHD_Result reply_file(api_req *r, int fd, const struct stat *st,
                                  const char *content_type, const char *disposition,
                                  const char *cache_control)
{
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
        if (!resp)
            close(fd);
        status = MHD_HTTP_OK;
    }
    if (!resp)
        return MHD_NO;
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

/* Build adapter/peft.tar from adapter/peft/ unless it exists. 0 or -1 + message. */
static int ensure_archive(const char *adapter_dir, char *err, size_t errlen)
{
    char tar_path[PATH_MAX + 32], peft_dir[PATH_MAX + 32];
    snprintf(tar_path, sizeof tar_path, "%s/peft.tar", adapter_dir);
    snprintf(peft_dir, sizeof peft_dir, "%s/peft", adapter_dir);
    struct stat st;
    if (stat(tar_path, &st) == 0)
        return 0;
    if (stat(peft_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "this job has no PEFT adapter folder (method full writes the whole "
                              "model instead)");
        errno = ENOENT;
        return -1;
    }
    atomic_file af;
    char why[512];
    if (atomic_file_open(&af, tar_path, why, sizeof why) != 0) {
        snprintf(err, errlen, "cannot create the archive: %s", strerror(errno));
        return -1;
    }
    if (ustar_write_dir(af.fd, peft_dir, "peft/", why, sizeof why) != 0) {
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

enum MHD_Result h_job_adapter(api_req *r)
{
    const adapter_file *af = NULL;
    for (int i = 0; i < N_ADAPTER_FILES; i++)
        if (strcmp(r->param, ADAPTER_FILES[i].name) == 0)
            af = &ADAPTER_FILES[i];
    if (!af)
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "file",
                           "no adapter file '%.100s'; the files are adapter.safetensors, "
                           "peft/adapter_config.json, peft/adapter_model.safetensors, "
                           "peft/config.json, peft/README.md and peft.tar",
                           r->param);
    store *st = api_store(r);
    if (!st)
        return MHD_YES;
    store_job j;
    char err[1024];
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    store_job_status status = j.status;
    store_job_clear(&j);
    if (status != STORE_JOB_SUCCEEDED)
        return reply_error(r, MHD_HTTP_CONFLICT, "not_ready", NULL,
                           "job %s is %s: its adapter can be downloaded once it has succeeded",
                           r->id, store_job_status_name(status));

    char adapter_dir[PATH_MAX], path[PATH_MAX + 64];
    snprintf(adapter_dir, sizeof adapter_dir, "%s/%s/adapter", r->srv->jobs_dir, r->id);
    if (af->archive && ensure_archive(adapter_dir, err, sizeof err) != 0)
        return errno == ENOENT
                   ? reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "file", "%s", err)
                   : reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "io_error", NULL, "%s", err);
    snprintf(path, sizeof path, "%s/%s", adapter_dir, af->name);
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;
    if (fd < 0 || fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        if (fd >= 0)
            close(fd);
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "file",
                           "job %s has no %s (method full keeps no PEFT folder)", r->id, af->name);
    }
    const char *base = strrchr(af->name, '/');
    base = base ? base + 1 : af->name;
    char disposition[128];
    snprintf(disposition, sizeof disposition, "attachment; filename=\"aflorad-%s-%s\"", r->id,
             base);
    /* A succeeded job's files never change, but the token guards them:
     * private, so shared caches keep no copy. */
    return reply_file(r, fd, &sb, af->content_type, disposition, "private, max-age=0");
}

/* ---- static files ---------------------------------------------------------------- */

/* A request path that may name a file under web_dir ("" = refused). */
static bool static_path_ok(const char *p)
{
    if (!*p || *p == '/')
        return false;
    const char *seg = p;
    for (const char *c = p;; c++) {
        unsigned char ch = (unsigned char)*c;
        if (ch == '/' || ch == '\0') {
            size_t n = (size_t)(c - seg);
            if (n == 0 && ch == '\0')
                return true;                /* "dir/": found to be no file, 404 */
            if (n == 0 || seg[0] == '.')   /* "a//b", ".", "..", hidden */
                return false;
            if (ch == '\0')
                return true;
            seg = c + 1;
        } else if (ch < 0x20 || ch == 0x7f || ch == '\\') {
            return false;
        }
    }
}

enum MHD_Result h_static(api_req *r)
{
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
