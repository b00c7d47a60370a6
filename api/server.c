/* server.c — the HTTP front of `aflorad serve`: libmicrohttpd set-up, the
 * route table and the request life cycle (match, authenticate, read the body,
 * dispatch, count). Handlers answer through reply.c and read their request
 * through request.c.
 *
 * Threading: MHD_USE_THREAD_PER_CONNECTION (with its internal listen thread).
 * The alternative, a thread pool, may not block in a handler, so every SSE
 * stream would have to be suspended and resumed — and suspended connections
 * never time out, do not notice the client leaving and must all be resumed
 * before MHD_stop_daemon (platform-facts.md). With a thread per connection
 * a handler may block: SQLite calls, writing an upload to disk and an SSE
 * reader sleeping on a condition variable until a worker reports events or a
 * heartbeat is due are all plain blocking code. The cost is one thread per
 * open connection, bounded by max_connections (256 by default), each idle
 * one closed after connection_timeout_s; SSE streams stay inside that
 * timeout by sending a heartbeat every 15 s.
 *
 * SQLite: one connection per thread, from the pool of dbpool.c, which
 * api_start opens (proving the database usable) and api_stop closes.
 *
 * Request life cycle (MHD calls on_request once after the headers, once per
 * body chunk and once at the end): the first call matches the route (404 /
 * 405), checks the token (401), the id (400), the declared body size (413)
 * and type (415) and may answer at once — MHD then skips the body and closes
 * the connection. Body chunks go to a buffer (JSON, bounded) or to the
 * upload hooks (datasets.c, streamed to disk). The last call dispatches to
 * the handler. on_completed counts the request by route and status, logs it
 * and frees everything, including a half-written upload.
 *
 * Shutdown (api_stop): unregister from the workers, MHD_quiesce_daemon (no
 * new connections), wake every SSE reader so its stream ends (clients
 * reconnect with Last-Event-ID to the next server), then MHD_stop_daemon,
 * which joins the connection threads.
 *
 * Logging goes through daemon/log.h: one line per request at debug level
 * (a benchmark must not be measuring stderr), job and dataset changes at
 * info, server-side failures (5xx) at error. */
#include "api_internal.h"
#include "dbpool.h"
#include "log.h"
#include "reply.h"
#include "request.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DB_FILE "aflorad.db"
/* api_stop: how long open SSE streams get to finish cleanly. */
#define STOP_DRAIN_MS 500
/* Uploads' temporaries before they were atomic files (older versions). */
#define OLD_UPLOAD_TMP_PREFIX ".upload-"
#define LOG_LINE_MAX 1024
/* A request whose reply is already decided (too large, a failed write) is
 * still read to its end, so the client gets the reply — MHD cannot send it
 * mid-body — but beyond this many dropped bytes the connection is closed
 * instead. Bodies with a Content-Length over the limit never get here: they
 * are refused from the headers. */
#define DISCARD_MAX ((size_t)64 << 20)

/* ---- the route table ---------------------------------------------------------
 * One row per method + path. Patterns are matched segment by segment; {id}
 * must be a 16-hex id (checked before any handler runs); ROUTE_TAIL lets the
 * last parameter span several segments. The order matters only for the
 * static catch-all, which is last. tests/test_api.c checks that these rows
 * and the paths of api/openapi.json are the same set. */
const api_route api_routes[] = {
    {"GET", "/healthz", h_healthz, BODY_NONE, 0},
    {"GET", "/metrics", h_metrics, BODY_NONE, 0},
    {"GET", "/openapi.json", h_openapi, BODY_NONE, 0},
    {"GET", "/models", h_models, BODY_NONE, 0},
    {"POST", "/datasets", h_datasets_create, BODY_UPLOAD, ROUTE_AUTH},
    {"GET", "/datasets", h_datasets_list, BODY_NONE, 0},
    {"GET", "/datasets/{id}", h_dataset_get, BODY_NONE, 0},
    {"DELETE", "/datasets/{id}", h_dataset_delete, BODY_NONE, ROUTE_AUTH},
    {"POST", "/jobs", h_jobs_create, BODY_JSON, ROUTE_AUTH},
    {"GET", "/jobs", h_jobs_list, BODY_NONE, 0},
    {"GET", "/jobs/{id}", h_job_get, BODY_NONE, 0},
    {"POST", "/jobs/{id}/cancel", h_job_cancel, BODY_NONE, ROUTE_AUTH},
    {"POST", "/jobs/{id}/retry", h_job_retry, BODY_NONE, ROUTE_AUTH},
    {"GET", "/jobs/{id}/events", h_job_events, BODY_NONE, 0},
    {"GET", "/jobs/{id}/freezing", h_job_freezing, BODY_NONE, 0},
    {"GET", "/jobs/{id}/adapter/{file}", h_job_adapter, BODY_NONE, ROUTE_AUTH | ROUTE_TAIL},
    {"POST", "/jobs/{id}/predict", h_job_predict, BODY_JSON, ROUTE_AUTH},
    {"GET", "/", h_static, BODY_NONE, 0},
    {"GET", "/{path}", h_static, BODY_NONE, ROUTE_TAIL},
};
const int api_route_count = (int)(sizeof api_routes / sizeof api_routes[0]);

/* ---- small helpers ---------------------------------------------------------- */

static void mhd_logger(void *cls, const char *fmt, va_list ap)
{
    (void)cls;
    char line[LOG_LINE_MAX];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r'))
        line[--n] = '\0';
    log_warn("http: %s", line);
}

bool api_is_id(const char *s)
{
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f')))
            return false;
    return n == STORE_ID_LEN;
}

/* ---- routing ---------------------------------------------------------------- */

/* Whether url matches rt's pattern; on a match the {id} text and the other
 * parameter go to id_out / param_out (truncation makes the match fail). */
static bool route_match(const api_route *rt, const char *url, char *id_out, size_t id_cap,
                        char *param_out, size_t param_cap)
{
    const char *p = rt->pattern, *u = url;
    id_out[0] = param_out[0] = '\0';
    if (strcmp(p, "/") == 0)
        return strcmp(u, "/") == 0;
    while (*p) {
        if (*p != '/' || *u != '/')
            return false;
        p++;
        u++;
        const char *pe = strchr(p, '/');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p);
        const char *ue = strchr(u, '/');
        size_t ulen = ue ? (size_t)(ue - u) : strlen(u);
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            bool is_id = plen == 4 && memcmp(p, "{id}", 4) == 0;
            bool tail = !pe && (rt->flags & ROUTE_TAIL);
            if (tail)
                ulen = strlen(u);
            if (ulen == 0)
                return false;
            char *dst = is_id ? id_out : param_out;
            size_t cap = is_id ? id_cap : param_cap;
            if (ulen >= cap)
                ulen = cap - 1;   /* an over-long id still matches; it fails validation */
            memcpy(dst, u, ulen);
            dst[ulen] = '\0';
            if (!is_id && strlen(u) >= param_cap && tail)
                return false;
            u += tail ? strlen(u) : (ue ? (size_t)(ue - u) : strlen(u));
        } else {
            if (plen != ulen || memcmp(p, u, plen) != 0)
                return false;
            u += ulen;
        }
        p += plen;
    }
    return *u == '\0';
}

static bool method_is(const char *method, const char *route_method)
{
    if (strcmp(method, route_method) == 0)
        return true;
    return strcmp(method, MHD_HTTP_METHOD_HEAD) == 0 && strcmp(route_method, "GET") == 0;
}

/* ---- authentication ---------------------------------------------------------- */

/* Compare digests, not the strings: the time taken depends on neither the
 * token's content nor its length. */
static bool token_ok(api_server *s, const char *given, size_t len)
{
    sha256_ctx c;
    uint8_t d[SHA256_DIGEST_LEN];
    sha256_init(&c);
    sha256_update(&c, given, len);
    sha256_final(&c, d);
    volatile uint8_t diff = 0;
    for (int i = 0; i < SHA256_DIGEST_LEN; i++)
        diff |= (uint8_t)(d[i] ^ s->token_digest[i]);
    return diff == 0;
}

static enum MHD_Result check_auth(api_req *r, bool *ok)
{
    *ok = true;
    if (!r->srv->has_token || !(r->route->flags & ROUTE_AUTH))
        return MHD_YES;
    *ok = false;
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h)
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "this server requires an API token for %s %s: send the header "
                           "'Authorization: Bearer <token>'",
                           r->route->method, r->route->pattern);
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "the Authorization header must use the Bearer scheme: "
                           "'Authorization: Bearer <token>'");
    const char *t = h + 7;
    while (*t == ' ')
        t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t'))
        n--;
    if (!token_ok(r->srv, t, n))
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "the bearer token is not valid for this server");
    *ok = true;
    return MHD_YES;
}

/* ---- request bodies ---------------------------------------------------------- */

static bool content_type_is(const char *ct, const char *want)
{
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0)
        return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* Deepest nesting of objects and arrays in a JSON text (strings skipped);
 * cheap enough to run before any parser, so deep documents never recurse. */
static int json_depth(const char *s, size_t len, int stop_at)
{
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max && (max = depth) > stop_at)
                return max;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

static size_t body_limit(const api_req *r)
{
    return r->route->body == BODY_UPLOAD ? r->srv->max_upload : r->srv->max_json_body;
}

static enum MHD_Result reply_too_large(api_req *r)
{
    size_t lim = body_limit(r);
    return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                       "the request body is larger than the limit of %zu bytes%s", lim,
                       r->route->body == BODY_UPLOAD ? " for a dataset upload" : "");
}

/* A route without a body refuses one rather than drop it unread: the client
 * meant something by it (413: its limit is 0 bytes). */
static enum MHD_Result reply_body_not_allowed(api_req *r)
{
    return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body_not_allowed", NULL,
                       "%s %s takes no request body; send it without one", r->route->method,
                       r->route->pattern);
}

/* After the headers: everything that can be refused before the body arrives. */
static enum MHD_Result begin_body(api_req *r)
{
    const char *cl = api_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t declared;
    if (r->route->body == BODY_NONE) {
        /* Content-Length: 0 is no body; chunked ones are caught in body_chunk */
        if (cl && !(api_parse_int64(cl, &declared) && declared == 0))
            return reply_body_not_allowed(r);
        return MHD_YES;
    }
    if (cl && api_parse_int64(cl, &declared) && declared >= 0 && (uint64_t)declared > body_limit(r))
        return reply_too_large(r);
    if (r->route->body == BODY_JSON) {
        const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !content_type_is(ct, "application/json"))
            return reply_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type",
                               NULL,
                               "the body must be JSON sent with 'Content-Type: "
                               "application/json', not '%.100s'",
                               ct);
    }
    if (r->route->body == BODY_UPLOAD)
        return datasets_upload_begin(r);
    return MHD_YES;
}

static enum MHD_Result body_chunk(api_req *r, const char *data, size_t len)
{
    if (r->route->body == BODY_UPLOAD)
        return datasets_upload_chunk(r, data, len);
    if (r->route->body == BODY_NONE)
        return reply_body_not_allowed(r);   /* chunked: known only now */
    size_t lim = body_limit(r);
    if (len > lim - r->body_len)
        return reply_too_large(r);
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1)
            cap *= 2;
        if (cap > lim + 1)
            cap = lim + 1;
        char *nb = realloc(r->body, cap);
        if (!nb)
            return MHD_NO;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

/* ---- the access handler -------------------------------------------------------- */

static enum MHD_Result begin_request(api_req *r, const char *url)
{
    char id[STORE_ID_SIZE + 8];
    char allow[128] = "";
    bool path_known = false;
    for (int i = 0; i < api_route_count; i++) {
        const api_route *rt = &api_routes[i];
        if (!route_match(rt, url, id, sizeof id, r->param, sizeof r->param))
            continue;
        if (method_is(r->method, rt->method)) {
            r->route = rt;
            r->route_index = i;
            break;
        }
        path_known = true;
        if (!strstr(allow, rt->method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof allow - n, "%s%s%s", n ? ", " : "", rt->method,
                     strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    if (!r->route) {
        if (path_known) {
            char msg[384];
            snprintf(msg, sizeof msg, "%.16s is not allowed on %.100s; allowed: %s", r->method,
                     url, allow);
            struct MHD_Response *resp = api_error_response("method_not_allowed", NULL, msg);
            if (resp)
                MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
            return reply_response(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
        }
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such route: %s %.200s",
                           r->method, url);
    }
    bool ok;
    enum MHD_Result ret = check_auth(r, &ok);
    if (!ok)
        return ret;
    if (strstr(r->route->pattern, "{id}")) {
        if (!api_is_id(id))
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_id", "id",
                               "'%.40s' is not a valid id (16 lowercase hexadecimal characters)",
                               id);
        memcpy(r->id, id, STORE_ID_SIZE);
    }
    return begin_body(r);
}

static enum MHD_Result dispatch(api_req *r)
{
    if (r->route->body == BODY_JSON) {
        if (r->body_len == 0)
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json", NULL,
                               "the request needs a JSON body");
        if (json_depth(r->body, r->body_len, r->srv->max_json_depth) > r->srv->max_json_depth)
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json", NULL,
                               "the JSON body nests deeper than %d levels",
                               r->srv->max_json_depth);
    }
    enum MHD_Result ret = r->route->handler(r);
    if (ret == MHD_YES && !r->responded)
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                           "the handler of %s %s did not answer", r->route->method,
                           r->route->pattern);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version,
                                  const char *upload_data, size_t *upload_data_size,
                                  void **con_cls)
{
    (void)version;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r)))
            return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->method = method;
        r->route_index = -1;
        r->start_us = api_mono_us();
        *con_cls = r;
        return begin_request(r, url);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->responded || r->discard) {
            r->dropped += n;
            return r->dropped > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        r->receiving = true;
        enum MHD_Result ret = body_chunk(r, upload_data, n);
        r->receiving = false;
        return ret;
    }
    if (r->deferred) {
        struct MHD_Response *resp = r->deferred;
        r->deferred = NULL;
        return reply_response(r, r->deferred_status, resp);
    }
    if (r->responded)
        return MHD_YES;
    return dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)conn;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r)
        return;
    *con_cls = NULL;
    if (r->status >= API_STATUS_MIN && r->status < API_STATUS_MIN + API_STATUS_SLOTS) {
        int route = r->route_index >= 0 ? r->route_index : api_route_count;
        atomic_fetch_add_explicit(
            &s->http_counts[(size_t)route * API_STATUS_SLOTS + (r->status - API_STATUS_MIN)], 1,
            memory_order_relaxed);
    }
    log_debug("%s %s %u %.1fms%s", r->method,
            r->route ? r->route->pattern : "(no route)", r->status,
            (double)(api_mono_us() - r->start_us) / 1000.0,
            toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    if (r->deferred)
        MHD_destroy_response(r->deferred);
    if (r->route && r->route->body == BODY_UPLOAD)
        datasets_upload_abort(r);
    free(r->body);
    free(r);
}

/* MHD's default unescaper lets "%00" cut the path short, which a handler
 * cannot see. This one decodes %XX except that a NUL becomes 0x01, a control
 * character every path and name check refuses. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s)
{
    (void)cls;
    (void)c;
    char *w = s;
    for (const char *p = s; *p; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], 0};
            char v = (char)strtol(hex, NULL, 16);
            *w++ = v ? v : '\x01';
            p += 2;
        } else {
            *w++ = *p;
        }
    }
    *w = '\0';
    return (size_t)(w - s);
}

/* ---- configuration and start-up --------------------------------------------- */

void api_config_defaults(api_config *c)
{
    memset(c, 0, sizeof *c);
    c->listen = API_DEFAULT_LISTEN;
    c->max_json_body = API_DEFAULT_MAX_JSON_BODY;
    c->max_upload = API_DEFAULT_MAX_UPLOAD;
    c->max_json_depth = API_DEFAULT_MAX_JSON_DEPTH;
    c->max_connections = API_DEFAULT_MAX_CONNECTIONS;
    c->connection_timeout_s = API_DEFAULT_CONNECTION_TIMEOUT_S;
    c->predict_cache = API_DEFAULT_PREDICT_CACHE;
}

/* "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, bool *v6,
                        char *err, size_t errlen)
{
    char host[128];
    const char *port;
    memset(ss, 0, sizeof *ss);
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof host)
            goto bad;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host)
            goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    int64_t p;
    if (!api_parse_int64(port, &p) || p < 0 || p > 65535)
        goto bad;
    if (!host[0])
        strcpy(host, "0.0.0.0");
    struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
    struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;
    if (inet_pton(AF_INET, host, &a4->sin_addr) == 1) {
        a4->sin_family = AF_INET;
        a4->sin_port = htons((uint16_t)p);
        *len = sizeof *a4;
        *v6 = false;
        return 0;
    }
    if (inet_pton(AF_INET6, host, &a6->sin6_addr) == 1) {
        a6->sin6_family = AF_INET6;
        a6->sin6_port = htons((uint16_t)p);
        *len = sizeof *a6;
        *v6 = true;
        return 0;
    }
bad:
    snprintf(err, errlen,
             "listen address '%s' is not host:port with a numeric IPv4 or [IPv6] host and a "
             "port from 0 to 65535",
             spec);
    return -1;
}

/* Bind the address the way MHD will (SO_REUSEADDR, never SO_REUSEPORT) and
 * let go at once, to say exactly why it cannot be had: MHD only logs "Failed
 * to bind to port 0" when given a socket address. Without SO_REUSEPORT a
 * second daemon cannot share the port. */
static int probe_listen(const struct sockaddr_storage *addr, socklen_t len, const char *spec,
                        char *err, size_t errlen)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return 0;   /* let MHD try and report */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->ss_family == AF_INET6)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)addr, len);
    int e = errno;
    close(fd);
    if (rc == 0)
        return 0;
    snprintf(err, errlen, "cannot listen on %s: %s%s", spec, strerror(e),
             e == EADDRINUSE ? " (another aflorad or another program has this port)"
             : e == EADDRNOTAVAIL ? " (not an address of this machine)" : "");
    return -1;
}

static char *join(const char *a, const char *b)
{
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int ensure_dir(const char *path, char *err, size_t errlen)
{
    if (mkdir(path, 0755) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "cannot create %s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s is not a directory", path);
        return -1;
    }
    return 0;
}

/* An existing directory as an absolute path without symlinks (NULL + message). */
static char *real_dir(const char *path, const char *what, char *err, size_t errlen)
{
    char *p = realpath(path, NULL);
    struct stat st;
    if (!p || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' is not a readable directory%s%s", what, path,
                 p ? "" : ": ", p ? "" : strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

/* Temp files of uploads cut short by a crash: only this daemon writes them. */
static void remove_stale_uploads(api_server *s)
{
    DIR *d = opendir(s->datasets_dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if ((atomic_file_is_temp(e->d_name) ||
             strncmp(e->d_name, OLD_UPLOAD_TMP_PREFIX, strlen(OLD_UPLOAD_TMP_PREFIX)) == 0) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            log_info("removed an unfinished upload %s", e->d_name);
    closedir(d);
}

static void server_free(api_server *s)
{
    if (!s)
        return;
    api_dbpool_close(s);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->ev_mu);
    pthread_cond_destroy(&s->ev_cv);
    free(s->http_counts);
    predict_cache_free(s->predict);   /* MHD has stopped: nobody holds an entry */
    free(s->openapi);
    free(s->data_dir);
    free(s->db_path);
    free(s->models_dir);
    free(s->web_dir);
    free(s->datasets_dir);
    free(s->jobs_dir);
    free(s);
}

/* The served OpenAPI document: the compiled-in file with the generated job
 * spec schema, pretty-printed. */
static int load_openapi(api_server *s, char *err, size_t errlen)
{
    cJSON *doc = cJSON_Parse(api_openapi_json);
    if (!doc) {
        snprintf(err, errlen, "the compiled-in OpenAPI document is not valid JSON");
        return -1;
    }
    if (api_openapi_add_spec_schema(doc) != 0) {
        cJSON_Delete(doc);
        snprintf(err, errlen, "cannot add the job spec schema to the OpenAPI document");
        return -1;
    }
    s->openapi = cJSON_Print(doc);
    cJSON_Delete(doc);
    if (!s->openapi) {
        snprintf(err, errlen, "out of memory");
        return -1;
    }
    s->openapi_len = strlen(s->openapi);
    return 0;
}

api_server *api_start(const api_config *cfg, char *err, size_t errlen)
{
    if (!cfg || !cfg->data_dir || !cfg->data_dir[0]) {
        snprintf(err, errlen, "api: no data directory configured");
        return NULL;
    }
    if (cfg->max_json_body == 0 || cfg->max_upload == 0 || cfg->max_json_depth < 1 ||
        cfg->max_connections == 0 || cfg->predict_cache < 1) {
        snprintf(err, errlen, "api: body limits, JSON depth, connection limit and predict cache "
                              "must be > 0");
        return NULL;
    }
    struct sockaddr_storage addr;
    socklen_t addr_len;
    bool v6;
    if (parse_listen(cfg->listen ? cfg->listen : API_DEFAULT_LISTEN, &addr, &addr_len, &v6, err,
                     errlen) != 0)
        return NULL;

    api_server *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&s->pool_mu, NULL);
    pthread_mutex_init(&s->ev_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&s->ev_cv, &ca);
    pthread_condattr_destroy(&ca);
    s->listen_fd = -1;
    s->max_json_body = cfg->max_json_body;
    s->max_upload = cfg->max_upload;
    s->max_json_depth = cfg->max_json_depth;
    s->max_connections = cfg->max_connections;
    s->connection_timeout_s = cfg->connection_timeout_s;
    s->workers = cfg->workers;
    s->started_ms = api_now_ms();
    if (cfg->token && cfg->token[0]) {
        sha256_ctx c;
        sha256_init(&c);
        sha256_update(&c, cfg->token, strlen(cfg->token));
        sha256_final(&c, s->token_digest);
        s->has_token = true;
    }

    if (ensure_dir(cfg->data_dir, err, errlen) != 0 ||
        !(s->data_dir = real_dir(cfg->data_dir, "data directory", err, errlen)))
        goto fail;
    if (!(s->datasets_dir = join(s->data_dir, "datasets")) ||
        !(s->jobs_dir = join(s->data_dir, "jobs")) ||
        !(s->db_path = cfg->db_path ? strdup(cfg->db_path) : join(s->data_dir, DB_FILE))) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (ensure_dir(s->datasets_dir, err, errlen) != 0 || ensure_dir(s->jobs_dir, err, errlen) != 0)
        goto fail;
    if (cfg->models_dir && cfg->models_dir[0] &&
        !(s->models_dir = real_dir(cfg->models_dir, "models directory", err, errlen)))
        goto fail;
    if (cfg->web_dir && cfg->web_dir[0] &&
        !(s->web_dir = real_dir(cfg->web_dir, "web directory", err, errlen)))
        goto fail;
    remove_stale_uploads(s);
    if (load_openapi(s, err, errlen) != 0)
        goto fail;

    s->http_counts = calloc((size_t)(api_route_count + 1) * API_STATUS_SLOTS,
                            sizeof *s->http_counts);
    s->predict = predict_cache_new(cfg->predict_cache);
    if (!s->http_counts || !s->predict) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (api_dbpool_open(s, cfg->max_connections, err, errlen) != 0)
        goto fail;

    const char *spec = cfg->listen ? cfg->listen : API_DEFAULT_LISTEN;
    if (probe_listen(&addr, addr_len, spec, err, errlen) != 0)
        goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->mhd = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER, mhd_logger, NULL,
        MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_CONNECTION_LIMIT, s->max_connections, MHD_OPTION_CONNECTION_TIMEOUT,
        s->connection_timeout_s, MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
        MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this machine?)",
                 spec);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    if (s->workers)
        workers_set_event_callback(s->workers, api_notify_job_events, s);
    log_info("api: listening on %s (port %u), data in %s%s",
            cfg->listen ? cfg->listen : API_DEFAULT_LISTEN, (unsigned)s->port, s->data_dir,
            s->has_token ? ", token required for changes and downloads" : "");
    return s;
fail:
    server_free(s);
    return NULL;
}

uint16_t api_port(const api_server *s)
{
    return s->port;
}

void api_notify_job_events(void *server, const char *job_id)
{
    api_server *s = server;
    unsigned h = 2166136261u;   /* FNV-1a */
    for (const char *p = job_id; *p; p++)
        h = (h ^ (unsigned char)*p) * 16777619u;
    pthread_mutex_lock(&s->ev_mu);
    s->ev_gen[h % API_EVENT_BUCKETS]++;
    pthread_cond_broadcast(&s->ev_cv);
    pthread_mutex_unlock(&s->ev_mu);
}

void api_stop(api_server *s)
{
    if (!s)
        return;
    if (s->workers)
        workers_set_event_callback(s->workers, NULL, NULL);
    s->listen_fd = (int)MHD_quiesce_daemon(s->mhd);
    /* End the streams and give them a moment to send their last chunk, so
     * clients see a clean end (and reconnect) rather than a cut connection. */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += STOP_DRAIN_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    pthread_mutex_lock(&s->ev_mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->ev_cv);
    while (atomic_load(&s->sse_clients) > 0)
        if (pthread_cond_timedwait(&s->ev_cv, &s->ev_mu, &until) == ETIMEDOUT)
            break;
    pthread_mutex_unlock(&s->ev_mu);
    MHD_stop_daemon(s->mhd);
    if (s->listen_fd >= 0)
        close(s->listen_fd);
    log_info("api: stopped");
    server_free(s);
}
