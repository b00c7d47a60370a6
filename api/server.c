/* server.c — the HTTP server of `aflorad serve`: start-up (configuration,
 * directories, the listen address, libmicrohttpd), the per-connection
 * request state and its life cycle, and shutdown.
 *
 * The rest of api/ is below it, each file one concept: routes.c the route
 * table and what is decided before a handler runs; reply.c and request.c
 * how a handler answers and what it reads; dbpool.c the SQLite
 * connections; the handlers, one file per resource (handlers.h). server.c
 * uses them all; none of them uses server.c.
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
 * body chunk and once at the end): the first call creates the request's
 * state (api_req) and hands it to routes.c, which matches the route (404 /
 * 405), checks the token (401), the id (400), the declared body size (413)
 * and type (415) and may answer at once — MHD then skips the body and closes
 * the connection. Body chunks go to routes.c too (a bounded buffer for JSON,
 * the upload hooks of datasets.c, streamed to disk), unless the reply is
 * already decided: then they are dropped, up to DISCARD_MAX. The last call
 * queues a reply deferred while the body arrived (reply.c) or dispatches to
 * the handler. on_completed counts the request by route and status, logs it
 * and frees everything, including a half-written upload.
 *
 * Shutdown (api_stop): unregister from the workers, MHD_quiesce_daemon (no
 * new connections), stop the generation pool (queued requests get 503,
 * running ones stop at their next token), wake every SSE reader so its stream ends (clients
 * reconnect with Last-Event-ID to the next server), then MHD_stop_daemon,
 * which joins the connection threads.
 *
 * Logging goes through daemon/log.h: one line per request at debug level
 * (a benchmark must not be measuring stderr), job and dataset changes at
 * info, server-side failures (5xx) at error. */
#include "api_internal.h"
#include "dbpool.h"
#include "handlers.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "routes.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdarg.h>
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

/* libmicrohttpd's own messages, through our log at warn level. */
static void mhd_logger(void *cls, const char *fmt, va_list ap) {
    (void)cls;
    char line[LOG_LINE_MAX];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t n = strlen(line);
    while (n && (line[n - 1] == '\n' || line[n - 1] == '\r')) line[--n] = '\0';
    log_warn("http: %s", line);
}

/* ---- the request life cycle --------------------------------------------------- */

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls) {
    (void)version;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) {
        if (!(r = calloc(1, sizeof *r))) return MHD_NO;
        r->srv = s;
        r->conn = conn;
        r->method = method;
        r->route_index = -1;
        r->start_us = api_mono_us();
        *con_cls = r;
        return api_route_begin(r, url);
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (r->responded || r->discard) {
            r->dropped += n;
            return r->dropped > DISCARD_MAX ? MHD_NO : MHD_YES;
        }
        r->receiving = true;
        enum MHD_Result ret = api_route_body(r, upload_data, n);
        r->receiving = false;
        return ret;
    }
    if (r->deferred) {
        struct MHD_Response *resp = r->deferred;
        r->deferred = NULL;
        return reply_response(r, r->deferred_status, resp);
    }
    if (r->responded) return MHD_YES;
    return api_route_dispatch(r);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
    (void)conn;
    api_server *s = cls;
    api_req *r = *con_cls;
    if (!r) return;
    *con_cls = NULL;
    if (r->status >= API_STATUS_MIN && r->status < API_STATUS_MIN + API_STATUS_SLOTS) {
        int route = r->route_index >= 0 ? r->route_index : api_route_count;
        atomic_fetch_add_explicit(
            &s->http_counts[(size_t)route * API_STATUS_SLOTS + (r->status - API_STATUS_MIN)], 1,
            memory_order_relaxed);
    }
    log_debug("%s %s %u %.1fms%s", r->method, r->route ? r->route->pattern : "(no route)",
              r->status, (double)(api_mono_us() - r->start_us) / 1000.0,
              toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (connection ended early)");
    if (r->deferred) MHD_destroy_response(r->deferred);
    if (r->route && r->route->body == BODY_UPLOAD) datasets_upload_abort(r);
    free(r->body);
    free(r);
}

/* MHD's default unescaper lets "%00" cut the path short, which a handler
 * cannot see. This one decodes %XX except that a NUL becomes 0x01, a control
 * character every path and name check refuses. */
static size_t unescape(void *cls, struct MHD_Connection *c, char *s) {
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

void api_config_defaults(api_config *c) {
    memset(c, 0, sizeof *c);
    c->listen = API_DEFAULT_LISTEN;
    c->max_json_body = API_DEFAULT_MAX_JSON_BODY;
    c->max_upload = API_DEFAULT_MAX_UPLOAD;
    c->max_json_depth = API_DEFAULT_MAX_JSON_DEPTH;
    c->max_connections = API_DEFAULT_MAX_CONNECTIONS;
    c->connection_timeout_s = API_DEFAULT_CONNECTION_TIMEOUT_S;
    c->predict_cache = API_DEFAULT_PREDICT_CACHE;
    c->generate_concurrency = API_DEFAULT_GENERATE_CONCURRENCY;
    c->generate_queue = API_DEFAULT_GENERATE_QUEUE;
    c->generate_max_tokens = API_DEFAULT_GENERATE_MAX_TOKENS;
}

/* "host:port", "[v6]:port" or ":port" into a socket address. */
static int parse_listen(const char *spec, struct sockaddr_storage *ss, socklen_t *len, bool *v6,
                        char *err, size_t errlen) {
    char host[128];
    const char *port;
    memset(ss, 0, sizeof *ss);
    if (spec[0] == '[') {
        const char *close = strchr(spec, ']');
        if (!close || close[1] != ':' || (size_t)(close - spec - 1) >= sizeof host) goto bad;
        memcpy(host, spec + 1, (size_t)(close - spec - 1));
        host[close - spec - 1] = '\0';
        port = close + 2;
    } else {
        const char *colon = strrchr(spec, ':');
        if (!colon || (size_t)(colon - spec) >= sizeof host) goto bad;
        memcpy(host, spec, (size_t)(colon - spec));
        host[colon - spec] = '\0';
        port = colon + 1;
    }
    int64_t p;
    if (!api_parse_int64(port, &p) || p < 0 || p > 65535) goto bad;
    if (!host[0]) strcpy(host, "0.0.0.0");
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
                        char *err, size_t errlen) {
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return 0; /* let MHD try and report */
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (addr->ss_family == AF_INET6) setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    int rc = bind(fd, (const struct sockaddr *)addr, len);
    int e = errno;
    close(fd);
    if (rc == 0) return 0;
    snprintf(err, errlen, "cannot listen on %s: %s%s", spec, strerror(e),
             e == EADDRINUSE      ? " (another aflorad or another program has this port)"
             : e == EADDRNOTAVAIL ? " (not an address of this machine)"
                                  : "");
    return -1;
}

static char *join(const char *a, const char *b) {
    size_t n = strlen(a) + strlen(b) + 2;
    char *p = malloc(n);
    if (p) snprintf(p, n, "%s/%s", a, b);
    return p;
}

static int ensure_dir(const char *path, char *err, size_t errlen) {
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
static char *real_dir(const char *path, const char *what, char *err, size_t errlen) {
    char *p = realpath(path, NULL);
    struct stat st;
    if (!p || stat(p, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen, "%s '%s' is not a readable directory%s%s", what, path, p ? "" : ": ",
                 p ? "" : strerror(errno));
        free(p);
        return NULL;
    }
    return p;
}

/* Temp files of uploads cut short by a crash: only this daemon writes them. */
static void remove_stale_uploads(api_server *s) {
    DIR *d = opendir(s->datasets_dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if ((atomic_file_is_temp(e->d_name) ||
             strncmp(e->d_name, OLD_UPLOAD_TMP_PREFIX, strlen(OLD_UPLOAD_TMP_PREFIX)) == 0) &&
            unlinkat(dirfd(d), e->d_name, 0) == 0)
            log_info("removed an unfinished upload %s", e->d_name);
    closedir(d);
}

static void server_free(api_server *s) {
    if (!s) return;
    api_dbpool_close(s);
    pthread_mutex_destroy(&s->pool_mu);
    pthread_mutex_destroy(&s->ev_mu);
    pthread_cond_destroy(&s->ev_cv);
    free(s->http_counts);
    gen_pool_stop(s->gen); /* joined before the cache it uses goes */
    gen_pool_free(s->gen);
    predict_cache_free(s->predict); /* MHD has stopped: nobody holds an entry */
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
static int load_openapi(api_server *s, char *err, size_t errlen) {
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

api_server *api_start(const api_config *cfg, char *err, size_t errlen) {
    if (!cfg || !cfg->data_dir || !cfg->data_dir[0]) {
        snprintf(err, errlen, "api: no data directory configured");
        return NULL;
    }
    if (cfg->max_json_body == 0 || cfg->max_upload == 0 || cfg->max_json_depth < 1 ||
        cfg->max_connections == 0 || cfg->predict_cache < 1) {
        snprintf(err, errlen,
                 "api: body limits, JSON depth, connection limit and predict cache "
                 "must be > 0");
        return NULL;
    }
    if (cfg->generate_concurrency < 1 || cfg->generate_queue < 0 || cfg->generate_max_tokens < 1 ||
        cfg->generate_max_tokens > API_GENERATE_MAX_TOKENS_LIMIT) {
        snprintf(err, errlen,
                 "api: generate concurrency must be >= 1, the generate queue >= 0 and the "
                 "generate max tokens from 1 to %d",
                 API_GENERATE_MAX_TOKENS_LIMIT);
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
    if (load_openapi(s, err, errlen) != 0) goto fail;

    s->http_counts =
        calloc((size_t)(api_route_count + 1) * API_STATUS_SLOTS, sizeof *s->http_counts);
    s->predict = predict_cache_new(cfg->predict_cache);
    if (!s->http_counts || !s->predict) {
        snprintf(err, errlen, "out of memory");
        goto fail;
    }
    if (api_dbpool_open(s, cfg->max_connections, err, errlen) != 0) goto fail;
    s->generate_concurrency = cfg->generate_concurrency;
    s->generate_max_tokens = cfg->generate_max_tokens;
    if (!(s->gen = gen_pool_new(cfg->generate_concurrency, cfg->generate_queue, s->predict,
                                s->models_dir, err, errlen)))
        goto fail;

    const char *spec = cfg->listen ? cfg->listen : API_DEFAULT_LISTEN;
    if (probe_listen(&addr, addr_len, spec, err, errlen) != 0) goto fail;
    unsigned flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                     MHD_USE_AUTO | MHD_USE_ITC | MHD_USE_ERROR_LOG | (v6 ? MHD_USE_IPv6 : 0);
    s->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
                              mhd_logger, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                              MHD_OPTION_CONNECTION_LIMIT, s->max_connections,
                              MHD_OPTION_CONNECTION_TIMEOUT, s->connection_timeout_s,
                              MHD_OPTION_NOTIFY_COMPLETED, on_completed, s,
                              MHD_OPTION_UNESCAPE_CALLBACK, unescape, NULL, MHD_OPTION_END);
    if (!s->mhd) {
        snprintf(err, errlen, "cannot listen on %s (in use, or not an address of this machine?)",
                 spec);
        goto fail;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(s->mhd, MHD_DAEMON_INFO_BIND_PORT);
    s->port = info ? info->port : 0;
    if (s->workers) workers_set_event_callback(s->workers, api_notify_job_events, s);
    log_info("api: listening on %s (port %u), data in %s%s",
             cfg->listen ? cfg->listen : API_DEFAULT_LISTEN, (unsigned)s->port, s->data_dir,
             s->has_token ? ", token required for changes and downloads" : "");
    return s;
fail:
    server_free(s);
    return NULL;
}

uint16_t api_port(const api_server *s) { return s->port; }

void api_stop(api_server *s) {
    if (!s) return;
    if (s->workers) workers_set_event_callback(s->workers, NULL, NULL);
    s->listen_fd = (int)MHD_quiesce_daemon(s->mhd);
    /* End the streams and give them a moment to send their last chunk, so
     * clients see a clean end (and reconnect) rather than a cut connection. */
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_nsec += STOP_DRAIN_MS * 1000000L;
    until.tv_sec += until.tv_nsec / 1000000000L;
    until.tv_nsec %= 1000000000L;
    /* Queued generations get 503 "stopping", running ones stop at their next
     * token (finish "stopped"): their connections can then answer. */
    gen_pool_stop(s->gen);
    pthread_mutex_lock(&s->ev_mu);
    s->stopping = true;
    pthread_cond_broadcast(&s->ev_cv);
    while (atomic_load(&s->sse_clients) > 0)
        if (pthread_cond_timedwait(&s->ev_cv, &s->ev_mu, &until) == ETIMEDOUT) break;
    pthread_mutex_unlock(&s->ev_mu);
    MHD_stop_daemon(s->mhd);
    if (s->listen_fd >= 0) close(s->listen_fd);
    log_info("api: stopped");
    server_free(s);
}
