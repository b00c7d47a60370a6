/* api_internal.h — what the API's source files share: the server state, the
 * per-request state and the route table's shape. Replies are reply.h's, what
 * a handler reads from its request request.h's.
 *
 * Not for use outside api/. A handler gets an api_req whose route is matched,
 * whose path parameters are extracted, whose token (when its route needs one)
 * is checked and whose body (JSON routes) is complete; it answers by calling
 * exactly one reply_* function (reply.h) and returning its result. */
#ifndef AFLO_API_INTERNAL_H
#define AFLO_API_INTERNAL_H

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <time.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "atomicfile.h"
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

typedef enum {
    BODY_NONE = 0,     /* a body is refused with 413 body_not_allowed (it would be
                          ignored otherwise); Content-Length: 0 is fine */
    BODY_JSON,         /* buffered up to max_json_body, Content-Type application/json */
    BODY_UPLOAD        /* streamed by the handler's upload hooks (POST /datasets) */
} api_body_kind;

#define ROUTE_AUTH 1u  /* needs the bearer token when one is configured */
#define ROUTE_TAIL 2u  /* the last {param} takes the rest of the path, slashes too */

typedef struct api_req api_req;
typedef enum MHD_Result (*api_handler)(api_req *r);

typedef struct {
    const char *method;            /* "GET", "POST", "DELETE" (GET also answers HEAD) */
    const char *pattern;           /* "/jobs/{id}/events": literal segments and {params} */
    api_handler handler;
    api_body_kind body;
    unsigned flags;
} api_route;

extern const api_route api_routes[];
extern const int api_route_count;

struct api_server {
    char *data_dir, *db_path, *models_dir, *web_dir;   /* absolute; models/web may be NULL */
    char *datasets_dir, *jobs_dir;
    uint8_t token_digest[SHA256_DIGEST_LEN];           /* sha256 of the token */
    bool has_token;
    size_t max_json_body, max_upload;
    int max_json_depth;
    unsigned max_connections, connection_timeout_s;
    workers *workers;

    struct MHD_Daemon *mhd;
    int listen_fd;                                     /* ours after MHD_quiesce_daemon */
    uint16_t port;
    int64_t started_ms;
    char *openapi;                                     /* the served document */
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
    pthread_cond_t ev_cv;                              /* CLOCK_MONOTONIC */
    uint64_t ev_gen[API_EVENT_BUCKETS];
    bool stopping;
    atomic_int sse_clients;

    /* requests by route (api_route_count = no route matched) and status */
    atomic_uint_fast64_t *http_counts;

    /* loaded models for POST /jobs/{id}/predict, by job id */
    predict_cache *predict;
};

typedef struct {
    atomic_file file;                                  /* closed once committed or removed */
    sha256_ctx sha;
    uint64_t bytes;
} api_upload;

struct api_req {
    api_server *srv;
    struct MHD_Connection *conn;
    const char *method;                                /* as sent ("HEAD" stays "HEAD") */
    int route_index;                                   /* -1 until matched */
    const api_route *route;
    char id[STORE_ID_SIZE];                            /* {id}, when valid */
    char param[API_PATH_PARAM_MAX];                    /* the tail parameter, decoded */
    bool responded;                                    /* a response is queued */
    bool receiving;                                    /* inside a body chunk */
    bool discard;                                      /* reply decided: drop the body */
    struct MHD_Response *deferred;                     /* queued once the body ends */
    unsigned deferred_status;
    size_t dropped;                                    /* body bytes dropped */
    unsigned status;
    int64_t start_us;
    char *body;                                        /* BODY_JSON: NUL-terminated */
    size_t body_len, body_cap;
    api_upload up;                                     /* BODY_UPLOAD */
    void *upload_state;                                /* handler-owned (datasets.c) */
};

/* ---- clocks and the worker pool ---------------------------------------------
 * Small enough to live here, so a handler that needs the time or wakes the
 * workers depends on the server's state, not on server.c. */

/* Wall-clock unix milliseconds (job times, uptime). */
static inline int64_t api_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* CLOCK_MONOTONIC, the clock of ev_cv's timed waits and of request timing. */
static inline int64_t api_mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

static inline int64_t api_mono_ms(void)
{
    return api_mono_us() / 1000;
}

/* The API calls the pool only through these, and only when one is configured
 * (tests run without: jobs then stay queued). */
static inline void api_workers_notify(api_server *s)
{
    if (s->workers)
        workers_notify(s->workers);
}

static inline void api_workers_cancel(api_server *s, const char *job_id)
{
    if (s->workers)
        workers_cancel(s->workers, job_id);
}

/* ---- helpers --------------------------------------------------------------- */

bool api_is_id(const char *s);

/* ---- handlers ------------------------------------------------------------ */

enum MHD_Result h_healthz(api_req *r);
enum MHD_Result h_metrics(api_req *r);
enum MHD_Result h_openapi(api_req *r);
enum MHD_Result h_models(api_req *r);
enum MHD_Result h_datasets_create(api_req *r);
enum MHD_Result h_datasets_list(api_req *r);
enum MHD_Result h_dataset_get(api_req *r);
enum MHD_Result h_dataset_delete(api_req *r);
enum MHD_Result h_jobs_create(api_req *r);
enum MHD_Result h_jobs_list(api_req *r);
enum MHD_Result h_job_get(api_req *r);
enum MHD_Result h_job_cancel(api_req *r);
enum MHD_Result h_job_retry(api_req *r);
enum MHD_Result h_job_events(api_req *r);
enum MHD_Result h_job_freezing(api_req *r);
enum MHD_Result h_job_adapter(api_req *r);
enum MHD_Result h_job_predict(api_req *r);
enum MHD_Result h_static(api_req *r);

/* POST /datasets streams its body: begin runs after the headers (may reply
 * early: bad parameters, wrong type, too large), chunk per piece, and the
 * request's cleanup calls upload_abort (removes the temp file unless kept). */
enum MHD_Result datasets_upload_begin(api_req *r);
enum MHD_Result datasets_upload_chunk(api_req *r, const char *data, size_t len);
void datasets_upload_abort(api_req *r);

/* JSON for one job / dataset (the same object GET returns). NULL on OOM. */
cJSON *api_job_json(const store_job *j);
cJSON *api_dataset_json(const store_dataset *d);

/* The built-in "demo" model or a folder of models_dir described for GET
 * /models and checked by POST /jobs. */
typedef struct {
    char name[256];
    bool described;            /* config.json was read: the sizes below are set */
    char architecture[64];     /* model_type: "bert", "roberta" */
    int layers, hidden_size, intermediate_size, attention_heads, vocab_size;
    int64_t parameters;        /* computed from the sizes (BERT encoder + pooler) */
    bool builtin;
    bool usable;               /* the engine can fine-tune it (hfmodel_probe) */
    char reason[512];          /* why not, when !usable */
} api_model_info;
/* 0 when name is "demo" or a folder of models_dir; -1 with a message when
 * it is neither. With check_usable the folder is probed (config, tokenizer,
 * weight headers: hfmodel_probe) and usable/reason say the verdict; without,
 * only config.json is read (describing a job's model costs no more) and
 * usable just means that config was readable. */
int api_model_lookup(api_server *s, const char *name, bool check_usable, api_model_info *out,
                     char *err, size_t errlen);

/* Replace components.schemas.JobSpec of doc by the spec module's schema. */
int api_openapi_add_spec_schema(cJSON *doc);

/* The OpenAPI document compiled in (openapi_gen.c, from api/openapi.json). */
extern const char api_openapi_json[];

#endif
