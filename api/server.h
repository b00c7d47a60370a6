/* server.h — the HTTP API of `aflorad serve`: REST + server-sent events on
 * libmicrohttpd, over the SQLite store, talking to the worker pool only
 * through workers.h.
 *
 * api_start() binds the listen address, opens nothing in SQLite until a
 * request needs it (each MHD thread opens its own connection lazily), and
 * serves until api_stop(). Everything the server needs is in api_config;
 * api_config_defaults() fills the documented defaults (the limits below), so a
 * caller sets only what differs. The routes, their errors and their JSON are
 * described by api/openapi.json, served at GET /openapi.json.
 *
 * Authentication: with a token configured, every request that changes state
 * (POST, DELETE) and every adapter download needs "Authorization: Bearer
 * <token>" (compared in constant time), else 401. Read-only JSON (jobs,
 * datasets, models, events, metrics, health, the OpenAPI document) and the web
 * UI's static files stay open, so dashboards and Prometheus need no secret:
 * they reveal job specs and progress, not data or adapters. The default
 * listen address is loopback; exposing the daemon is a deliberate choice. */
#ifndef AFLO_API_SERVER_H
#define AFLO_API_SERVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "workers.h"

/* Loopback by default: exposing the daemon is a deliberate act (issue 4). */
#define API_DEFAULT_LISTEN "127.0.0.1:8080"
/* A job spec is a few KB (spec.h caps it at 256 KiB); 1 MiB leaves room for
 * prediction requests with many texts without letting one request pin much
 * memory. */
#define API_DEFAULT_MAX_JSON_BODY ((size_t)1 << 20)
/* Uploads stream to disk, so this bounds disk, not memory — except that the
 * upload is validated by textdata_load, which reads the whole file: keep it
 * well under TEXTDATA_DEFAULT_MAX_BYTES (512 MiB). */
#define API_DEFAULT_MAX_UPLOAD ((size_t)256 << 20)
/* A valid job spec nests 3 deep; 32 is generous and still refuses the
 * "[[[[..." documents that make recursive parsers run out of stack. */
#define API_DEFAULT_MAX_JSON_DEPTH 32
/* Each connection holds a thread (thread-per-connection, see server.c), and an
 * SSE client holds its connection for as long as it watches a job. */
#define API_DEFAULT_MAX_CONNECTIONS 256u
/* Idle time before MHD closes a connection. SSE streams send a heartbeat
 * every API_SSE_HEARTBEAT_MS, well inside it. */
#define API_DEFAULT_CONNECTION_TIMEOUT_S 30u
#define API_SSE_HEARTBEAT_MS 15000
/* Models kept loaded for POST /jobs/{id}/predict (least recently used out).
 * Each holds its base model's weights — ~440 MB for BERT-base, a few MB for
 * the demo — so two cover a base model and its comparison without letting
 * predictions take the memory the workers train in. */
#define API_DEFAULT_PREDICT_CACHE 2
/* Generation (POST .../generate) runs on a pool of its own: one request at
 * a time by default, so generating takes at most one core's share from
 * training; eight more may wait (a playground asks for two completions at
 * once), the rest get 503. */
#define API_DEFAULT_GENERATE_CONCURRENCY 1
#define API_DEFAULT_GENERATE_QUEUE 8
/* New tokens a request may ask for: the default limit, and the most any
 * configuration allows (a KV cache of 1024 positions stays small, and a
 * request of seconds, not minutes, on a CPU). */
#define API_DEFAULT_GENERATE_MAX_TOKENS 512
#define API_GENERATE_MAX_TOKENS_LIMIT 1024

typedef struct {
    const char *listen;     /* "host:port", "[v6]:port" or ":port"; port 0 =
                                    any free port (see api_port) */
    const char *data_dir;   /* required: datasets/, jobs/<id>/adapter/ live here */
    const char *db_path;    /* NULL: <data_dir>/aflorad.db */
    const char *models_dir; /* NULL: only the built-in demo model */
    const char *web_dir;    /* NULL: no static files (GET / answers 404) */
    const char *token;      /* NULL or "": no authentication (see above) */
    size_t max_json_body;   /* bytes */
    size_t max_upload;      /* bytes */
    int max_json_depth;
    unsigned max_connections;
    unsigned connection_timeout_s;
    int predict_cache;        /* models kept loaded for predictions and generation (>= 1) */
    int generate_concurrency; /* generations at once (>= 1) */
    int generate_queue;       /* generation requests waiting at most (>= 0) */
    int generate_max_tokens;  /* max_new_tokens limit, 1..API_GENERATE_MAX_TOKENS_LIMIT */
    workers *workers;         /* NULL: jobs are stored and stay queued (tests) */
} api_config;

typedef struct api_server api_server;

void api_config_defaults(api_config *c);

/* Start serving. NULL with a message when the address cannot be bound, a
 * directory is missing or cannot be created, or the config is invalid. */
api_server *api_start(const api_config *cfg, char *err, size_t errlen);

/* The port actually bound (the configured one, or the one the OS chose for 0). */
uint16_t api_port(const api_server *s);

/* New events were stored for job_id: wake the SSE streams that follow it.
 * Registered with workers_set_event_callback by api_start; also callable
 * directly (tests, or anything else that writes events). Thread-safe. */
void api_notify_job_events(void *server, const char *job_id);

/* Stop accepting, end every SSE stream, finish in-flight requests, close.
 * Unregisters the workers' event callback first; the caller stops the
 * workers afterwards (or before). NULL is fine. */
void api_stop(api_server *s);

#endif
