/* api_internal.h — the state every file of api/ shares: the server's
 * (api_server, one per `aflorad serve`) and a request's (api_req, one per
 * HTTP request, created and freed by server.c), with the few inline helpers
 * that only read that state (clocks, the worker pool).
 *
 * Not for use outside api/. The functions live in headers of their own, so
 * each file includes what it uses: reply.h (answering), request.h (reading
 * query and headers), dbpool.h (the thread's SQLite connection), routes.h
 * (the route table), handlers.h (the handlers and what they share).
 *
 * A handler gets an api_req whose route is matched, whose path parameters
 * are extracted, whose token (when its route needs one) is checked and whose
 * body (JSON routes) is complete; it answers by calling exactly one reply_*
 * function and returning its result. */
#ifndef AFLO_API_INTERNAL_H
#define AFLO_API_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <microhttpd.h>

#include "base/atomicfile.h"
#include "genpool.h"
#include "predict.h"
#include "server.h"
#include "sha256.h"
#include "store.h"

/* SSE readers wait on one condition variable; a notification bumps the
 * generation of the job's bucket (hash of the id), so readers of other jobs
 * wake, see their bucket unchanged and sleep again without touching SQLite. */
#define API_EVENT_BUCKETS 64
/* HTTP status codes 100..599 are counted per route. */
#define API_STATUS_MIN 100
#define API_STATUS_SLOTS 500
#define API_PATH_PARAM_MAX 1024

typedef struct api_req api_req;
typedef struct api_route api_route; /* a row of the route table (routes.h) */

struct api_server {
    char *data_dir, *db_path, *models_dir, *web_dir; /* absolute; models/web may be NULL */
    char *datasets_dir, *jobs_dir;
    uint8_t token_digest[SHA256_DIGEST_LEN]; /* sha256 of the token */
    bool has_token;
    size_t max_json_body, max_upload;
    int max_json_depth;
    unsigned max_connections, connection_timeout_s;
    workers *workers;

    struct MHD_Daemon *mhd;
    int listen_fd; /* ours after MHD_quiesce_daemon */
    uint16_t port;
    int64_t started_ms;
    char *openapi; /* the served document */
    size_t openapi_len;

    /* SQLite connections: one per thread while it runs, kept for reuse
     * (dbpool.c). */
    pthread_key_t store_key;
    bool store_key_ok;
    pthread_mutex_t pool_mu;
    store **pool;
    size_t pool_n, pool_cap;

    /* SSE wake-ups. */
    pthread_mutex_t ev_mu;
    pthread_cond_t ev_cv; /* CLOCK_MONOTONIC */
    uint64_t ev_gen[API_EVENT_BUCKETS];
    bool stopping;
    atomic_int sse_clients;

    /* requests by route (api_route_count = no route matched) and status */
    atomic_uint_fast64_t *http_counts;

    /* loaded models for POST /jobs/{id}/predict and the generation routes,
     * by job id (or "model:<name>") */
    predict_cache *predict;
    /* the generation pool (genpool.h) and its limits */
    gen_pool *gen;
    int generate_concurrency, generate_max_tokens;
};

typedef struct {
    atomic_file file; /* closed once committed or removed */
    sha256_ctx sha;
    uint64_t bytes;
} api_upload;

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const char *method; /* as sent ("HEAD" stays "HEAD") */
    int route_index;    /* -1 until matched */
    const api_route *route;
    char id[STORE_ID_SIZE];         /* {id}, when valid */
    char param[API_PATH_PARAM_MAX]; /* the tail parameter, decoded */
    bool responded;                 /* a response is queued */
    bool receiving;                 /* inside a body chunk */
    bool discard;                   /* reply decided: drop the body */
    struct MHD_Response *deferred;  /* queued once the body ends */
    unsigned deferred_status;
    size_t dropped; /* body bytes dropped */
    unsigned status;
    int64_t start_us;
    char *body; /* BODY_JSON: NUL-terminated */
    size_t body_len, body_cap;
    api_upload up;      /* BODY_UPLOAD */
    void *upload_state; /* handler-owned (datasets.c) */
};

/* ---- clocks and the worker pool ---------------------------------------------
 * Small enough to live here, so a handler that needs the time or wakes the
 * workers depends on the server's state, not on server.c. */

/* Wall-clock unix milliseconds (job times, uptime). */
static inline int64_t api_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_MONOTONIC, the clock of ev_cv's timed waits and of request timing. */
static inline int64_t api_mono_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t api_mono_ms(void) { return api_mono_us() / 1000; }

/* The API calls the pool only through these, and only when one is configured
 * (tests run without: jobs then stay queued). */
static inline void api_workers_notify(api_server *s) {
    if (s->workers) workers_notify(s->workers);
}

static inline void api_workers_cancel(api_server *s, const char *job_id) {
    if (s->workers) workers_cancel(s->workers, job_id);
}

/* The OpenAPI document compiled in (openapi_gen.c, from api/openapi.json). */
extern const char api_openapi_json[];

#endif
