/* events.c — a job's event log over HTTP: GET /jobs/{id}/events as
 * server-sent events or as a JSON page, and GET /jobs/{id}/freezing (the
 * paper's Figure 5, built from the freeze and step events).
 *
 * SSE. The store numbers a job's events 1, 2, 3, ... without gaps, and that
 * number is the SSE id, so resuming is exact: a reconnect's Last-Event-ID (or
 * ?after= for the first connection, which EventSource cannot give headers
 * to) is the last seq the client has, and the stream restarts strictly after
 * it — nothing lost, nothing twice. The stream is a MHD callback response;
 * its reader runs in the connection's own thread (server.c), reads pending
 * events from SQLite, and when there are none sleeps on the server's
 * condition variable until a worker reports events for a job in its bucket
 * (api_notify_job_events, defined here beside the readers it wakes), the
 * heartbeat is due (a ": heartbeat" comment every API_SSE_HEARTBEAT_MS keeps
 * proxies and the idle timeout from closing it), or the server stops. It
 * never polls in a loop. The stream ends after the job's terminal status
 * event (the last one: a retried job has earlier ones); a request for a
 * finished job with nothing left to send gets 204, which tells EventSource
 * to stop reconnecting.
 *
 * Event payloads are the JSON the workers (and the store, for "status")
 * wrote; line breaks, which JSON allows only as whitespace, are dropped so a
 * payload is always one data: line.
 *
 * Freezing. The grid's columns are the spec's target_modules (then any
 * module an event names); module_info describes each column from the
 * model's family (engine/model/family.h: its display label and whether it is a
 * feed-forward layer), so a dashboard draws the rows of whatever family the
 * job's model is, with no list of its own. */
#include "api_internal.h"
#include "dbpool.h"
#include "model/family.h"
#include "handlers.h"
#include "log.h"
#include "reply.h"
#include "request.h"
#include "server.h"
#include "spec.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EVENTS_DEFAULT_LIMIT 100
/* Events formatted per store read while streaming. */
#define SSE_BATCH 256
#define SSE_BLOCK 4096
/* Reconnect delay suggested to EventSource clients. */
#define SSE_RETRY_MS 2000
#define FREEZE_PAGE STORE_LIST_LIMIT_MAX
#define MATRIX_COUNT 2 /* A and B */

static bool status_is_final(const char *payload) {
    cJSON *p = cJSON_Parse(payload);
    const char *st = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "status"));
    store_job_status s;
    bool final = st && store_job_status_parse(st, &s) == 0 && s != STORE_JOB_QUEUED &&
                 s != STORE_JOB_RUNNING;
    cJSON_Delete(p);
    return final;
}

static bool job_is_final(store_job_status s) {
    return s == STORE_JOB_SUCCEEDED || s == STORE_JOB_FAILED || s == STORE_JOB_CANCELLED;
}

/* Last-Event-ID (reconnect) or ?after= (first connect); -1 after replying. */
static int start_seq(api_req *r, int64_t *out) {
    const char *h = api_header(r, "Last-Event-ID");
    if (h && *h) {
        char *end;
        errno = 0;
        long long v = strtoll(h, &end, 10);
        if (errno || *end || v < 0 || end == h) {
            reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "Last-Event-ID",
                        "Last-Event-ID must be an event id (a non-negative integer)");
            return -1;
        }
        *out = v;
        return 0;
    }
    return api_query_int(r, "after", 0, 0, INT64_MAX, out);
}

/* ---- SSE -------------------------------------------------------------------- */

typedef struct {
    api_server *srv;
    char job_id[STORE_ID_SIZE];
    unsigned bucket;
    int64_t last_seq;
    int64_t heartbeat_at; /* monotonic ms */
    char *buf;
    size_t len, off, cap;
    bool last_was_final; /* the last event sent is a terminal status */
    bool finished;       /* ... and nothing came after it: end */
} sse_stream;

static unsigned bucket_of(const char *job_id) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (const char *p = job_id; *p; p++) h = (h ^ (unsigned char)*p) * 16777619u;
    return h % API_EVENT_BUCKETS;
}

/* Registered with the workers by api_start; jobs.c calls it too, after a
 * cancel or a retry wrote a status event. */
void api_notify_job_events(void *server, const char *job_id) {
    api_server *s = server;
    pthread_mutex_lock(&s->ev_mu);
    s->ev_gen[bucket_of(job_id)]++;
    pthread_cond_broadcast(&s->ev_cv);
    pthread_mutex_unlock(&s->ev_mu);
}

static int sse_reserve(sse_stream *ss, size_t more) {
    if (ss->len + more + 1 <= ss->cap) return 0;
    size_t cap = ss->cap ? ss->cap : SSE_BLOCK;
    while (cap < ss->len + more + 1) cap *= 2;
    char *nb = realloc(ss->buf, cap);
    if (!nb) return -1;
    ss->buf = nb;
    ss->cap = cap;
    return 0;
}

static int sse_append(sse_stream *ss, const char *s, size_t n) {
    if (sse_reserve(ss, n) != 0) return -1;
    memcpy(ss->buf + ss->len, s, n);
    ss->len += n;
    return 0;
}

static int sse_format(sse_stream *ss, const store_event *e) {
    char head[96];
    int n = snprintf(head, sizeof head, "id: %lld\nevent: %s\ndata: ", (long long)e->seq,
                     store_event_type_name(e->type));
    size_t pl = strlen(e->payload);
    if (sse_append(ss, head, (size_t)n) != 0 || sse_reserve(ss, pl + 2) != 0) return -1;
    for (size_t i = 0; i < pl; i++)
        if (e->payload[i] != '\n' && e->payload[i] != '\r') ss->buf[ss->len++] = e->payload[i];
    return sse_append(ss, "\n\n", 2);
}

/* Read events after last_seq into buf: count, or -1. */
static int sse_fill(sse_stream *ss) {
    char err[512];
    store *st = api_thread_store(ss->srv, err, sizeof err);
    if (!st) {
        log_error("SSE for job %s: %s", ss->job_id, err);
        return -1;
    }
    store_event *ev;
    size_t n;
    if (store_event_list(st, ss->job_id, ss->last_seq, SSE_BATCH, &ev, &n, err, sizeof err) != 0) {
        log_error("SSE for job %s: %s", ss->job_id, err);
        return -1;
    }
    int rc = 0;
    for (size_t i = 0; i < n && !ss->finished; i++) {
        if (sse_format(ss, &ev[i]) != 0) {
            rc = -1;
            break;
        }
        ss->last_seq = ev[i].seq;
        rc++;
        ss->last_was_final = ev[i].type == STORE_EVENT_STATUS && status_is_final(ev[i].payload);
    }
    /* A terminal status ends the stream only as the log's last event: a
     * retried job (POST /jobs/{id}/retry) carries on after its old one. */
    if (n < SSE_BATCH && ss->last_was_final) ss->finished = true;
    store_event_list_free(ev, n);
    return rc;
}

static ssize_t sse_read(void *cls, uint64_t pos, char *out, size_t max) {
    (void)pos;
    sse_stream *ss = cls;
    api_server *s = ss->srv;
    for (;;) {
        if (ss->off < ss->len) {
            size_t n = ss->len - ss->off < max ? ss->len - ss->off : max;
            memcpy(out, ss->buf + ss->off, n);
            ss->off += n;
            return (ssize_t)n;
        }
        ss->off = ss->len = 0;
        if (ss->finished) return MHD_CONTENT_READER_END_OF_STREAM;
        /* Take the bucket's generation before reading, so events written
         * between the read and the wait still wake us. */
        pthread_mutex_lock(&s->ev_mu);
        uint64_t gen = s->ev_gen[ss->bucket];
        bool stopping = s->stopping;
        pthread_mutex_unlock(&s->ev_mu);
        if (stopping) return MHD_CONTENT_READER_END_OF_STREAM; /* the client reconnects later */
        int got = sse_fill(ss);
        if (got < 0) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (got > 0 || ss->finished) continue;
        int64_t now = api_mono_ms();
        if (now >= ss->heartbeat_at) {
            ss->heartbeat_at = now + API_SSE_HEARTBEAT_MS;
            if (sse_append(ss, ": heartbeat\n\n", 13) != 0)
                return MHD_CONTENT_READER_END_WITH_ERROR;
            continue;
        }
        struct timespec until;
        clock_gettime(CLOCK_MONOTONIC, &until);
        int64_t wait_ms = ss->heartbeat_at - now;
        until.tv_sec += wait_ms / 1000;
        until.tv_nsec += (wait_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        pthread_mutex_lock(&s->ev_mu);
        while (s->ev_gen[ss->bucket] == gen && !s->stopping)
            if (pthread_cond_timedwait(&s->ev_cv, &s->ev_mu, &until) == ETIMEDOUT) break;
        pthread_mutex_unlock(&s->ev_mu);
    }
}

static void sse_free(void *cls) {
    sse_stream *ss = cls;
    api_server *s = ss->srv;
    pthread_mutex_lock(&s->ev_mu); /* api_stop may be waiting for the last one */
    atomic_fetch_sub(&s->sse_clients, 1);
    pthread_cond_broadcast(&s->ev_cv);
    pthread_mutex_unlock(&s->ev_mu);
    free(ss->buf);
    free(ss);
}

static enum MHD_Result start_stream(api_req *r, int64_t after) {
    sse_stream *ss = calloc(1, sizeof *ss);
    if (!ss) return MHD_NO;
    ss->srv = r->srv;
    memcpy(ss->job_id, r->id, STORE_ID_SIZE);
    ss->bucket = bucket_of(r->id);
    ss->last_seq = after;
    ss->heartbeat_at = api_mono_ms() + API_SSE_HEARTBEAT_MS;
    char retry[32];
    int n = snprintf(retry, sizeof retry, "retry: %d\n\n", SSE_RETRY_MS);
    if (sse_append(ss, retry, (size_t)n) != 0) {
        free(ss->buf);
        free(ss);
        return MHD_NO;
    }
    atomic_fetch_add(&r->srv->sse_clients, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, sse_read, ss, sse_free);
    if (!resp) {
        sse_free(ss);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return reply_response(r, MHD_HTTP_OK, resp);
}

static bool wants_sse(api_req *r) {
    const char *accept = api_header(r, MHD_HTTP_HEADER_ACCEPT);
    return accept && strstr(accept, "text/event-stream") != NULL;
}

/* ---- JSON page ---------------------------------------------------------------- */

static cJSON *event_json(const store_event *e) {
    cJSON *o = cJSON_CreateObject();
    cJSON *data = cJSON_Parse(e->payload);
    if (!o || !api_add_int(o, "seq", e->seq) ||
        !cJSON_AddStringToObject(o, "type", store_event_type_name(e->type)) ||
        !api_add_time(o, "created_at", e->created_at) ||
        !cJSON_AddItemToObject(o, "data", data ? data : cJSON_CreateNull())) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

enum MHD_Result h_job_events(api_req *r) {
    int64_t after;
    if (start_seq(r, &after) != 0) return MHD_YES;
    store *st = api_store(r);
    if (!st) return MHD_YES;
    char err[1024];
    store_job j;
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0) return reply_store_error(r, st, err);
    store_job_status status = j.status;
    store_job_clear(&j);

    if (wants_sse(r)) {
        if (job_is_final(status)) {
            /* Anything left to send? If not, 204 stops EventSource for good. */
            store_event *ev;
            size_t n;
            if (store_event_list(st, r->id, after, 1, &ev, &n, err, sizeof err) != 0)
                return reply_store_error(r, st, err);
            store_event_list_free(ev, n);
            if (n == 0) return reply_empty(r, MHD_HTTP_NO_CONTENT);
        }
        return start_stream(r, after);
    }

    int64_t limit;
    if (api_query_int(r, "limit", EVENTS_DEFAULT_LIMIT, 1, STORE_LIST_LIMIT_MAX, &limit) != 0)
        return MHD_YES;
    store_event *ev;
    size_t n;
    if (store_event_list(st, r->id, after, limit, &ev, &n, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "events");
    bool ok = arr != NULL;
    for (size_t i = 0; ok && i < n; i++) ok = cJSON_AddItemToArray(arr, event_json(&ev[i]));
    ok = ok && api_add_int(root, "next_after", n ? ev[n - 1].seq : after) &&
         cJSON_AddStringToObject(root, "job_status", store_job_status_name(status));
    store_event_list_free(ev, n);
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    return reply_json(r, MHD_HTTP_OK, root);
}

/* ---- GET /jobs/{id}/freezing ------------------------------------------------------ */

typedef struct {
    int64_t step;
    int layer;
    int module; /* index into the module list */
    int matrix; /* 0 = A, 1 = B */
    double score;
} freeze_point;

typedef struct {
    char **modules;
    int n_modules, cap_modules;
    freeze_point *pts;
    size_t n_pts, cap_pts;
    cJSON *schedule; /* [{step, r}] */
    int64_t last_schedule_step;
    int max_layer;
} freeze_data;

static int module_index(freeze_data *f, const char *name, bool add) {
    for (int i = 0; i < f->n_modules; i++)
        if (strcmp(f->modules[i], name) == 0) return i;
    if (!add) return -1;
    if (f->n_modules == f->cap_modules) {
        int cap = f->cap_modules ? 2 * f->cap_modules : 8;
        char **nm = realloc(f->modules, (size_t)cap * sizeof *nm);
        if (!nm) return -2;
        f->modules = nm;
        f->cap_modules = cap;
    }
    if (!(f->modules[f->n_modules] = strdup(name))) return -2;
    return f->n_modules++;
}

static void freeze_data_free(freeze_data *f) {
    for (int i = 0; i < f->n_modules; i++) free(f->modules[i]);
    free(f->modules);
    free(f->pts);
    cJSON_Delete(f->schedule);
}

static bool json_int(const cJSON *o, const char *key, int64_t *out) {
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    if (!cJSON_IsNumber(v) || v->valuedouble != floor(v->valuedouble) || v->valuedouble < 0)
        return false;
    *out = (int64_t)v->valuedouble;
    return true;
}

/* One event into f: 0, or -1 when out of memory. Malformed payloads are
 * skipped (a worker bug must not break the page). */
static int take_event(freeze_data *f, const store_event *e) {
    cJSON *p = cJSON_Parse(e->payload);
    int rc = 0;
    int64_t step, layer;
    if (e->type == STORE_EVENT_FREEZE) {
        const char *mod = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "module"));
        const char *mat = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(p, "matrix"));
        const cJSON *score = cJSON_GetObjectItemCaseSensitive(p, "score");
        if (mod && mat && json_int(p, "step", &step) && json_int(p, "layer", &layer) &&
            layer < INT32_MAX && (strcmp(mat, "A") == 0 || strcmp(mat, "B") == 0)) {
            int mi = module_index(f, mod, true);
            if (mi == -2) {
                rc = -1;
            } else {
                if (f->n_pts == f->cap_pts) {
                    size_t cap = f->cap_pts ? 2 * f->cap_pts : 64;
                    freeze_point *np = realloc(f->pts, cap * sizeof *np);
                    if (!np) {
                        cJSON_Delete(p);
                        return -1;
                    }
                    f->pts = np;
                    f->cap_pts = cap;
                }
                f->pts[f->n_pts++] =
                    (freeze_point){step, (int)layer, mi, mat[0] == 'A' ? 0 : 1,
                                   cJSON_IsNumber(score) ? score->valuedouble : NAN};
                if ((int)layer > f->max_layer) f->max_layer = (int)layer;
            }
        }
    } else if (e->type == STORE_EVENT_STEP) {
        const cJSON *rf = cJSON_GetObjectItemCaseSensitive(p, "remaining_fraction");
        if (cJSON_IsNumber(rf) && json_int(p, "step", &step) && step != f->last_schedule_step) {
            cJSON *pt = cJSON_CreateObject();
            if (!pt || !api_add_int(pt, "step", step) ||
                !cJSON_AddNumberToObject(pt, "r", rf->valuedouble) ||
                !cJSON_AddItemToArray(f->schedule, pt)) {
                cJSON_Delete(pt);
                rc = -1;
            }
            f->last_schedule_step = step;
        }
    }
    cJSON_Delete(p);
    return rc;
}

/* frozen_at.A / .B: layers x modules of the step (or null). */
static cJSON *grid(const freeze_data *f, int layers, int matrix, bool scores) {
    cJSON *g = cJSON_CreateArray();
    for (int l = 0; g && l < layers; l++) {
        cJSON *row = cJSON_CreateArray();
        if (!row || !cJSON_AddItemToArray(g, row)) {
            cJSON_Delete(row);
            cJSON_Delete(g);
            return NULL;
        }
        for (int m = 0; m < f->n_modules; m++) {
            const freeze_point *hit = NULL;
            for (size_t i = 0; i < f->n_pts; i++)
                if (f->pts[i].layer == l && f->pts[i].module == m && f->pts[i].matrix == matrix &&
                    (!hit || f->pts[i].step < hit->step))
                    hit = &f->pts[i];
            cJSON *v;
            if (!hit)
                v = cJSON_CreateNull();
            else if (scores)
                v = isnan(hit->score) ? cJSON_CreateNull() : cJSON_CreateNumber(hit->score);
            else
                v = cJSON_CreateNumber((double)hit->step);
            if (!v || !cJSON_AddItemToArray(row, v)) {
                cJSON_Delete(v);
                cJSON_Delete(g);
                return NULL;
            }
        }
    }
    return g;
}

/* module_info: per column of the grid, {name, label, ffn} from the family's
 * module table; a name the family lacks (or no family known: the model
 * folder is gone) has label = name and ffn null. */
static cJSON *module_info_json(const freeze_data *f, const aflo_family *fam) {
    cJSON *arr = cJSON_CreateArray();
    for (int i = 0; arr && i < f->n_modules; i++) {
        int k = family_module_index(fam, f->modules[i]);
        const aflo_module_info *mi = k >= 0 ? &fam->modules[k] : NULL;
        cJSON *o = cJSON_CreateObject();
        if (!o || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return NULL;
        }
        if (!cJSON_AddStringToObject(o, "name", f->modules[i]) ||
            !cJSON_AddStringToObject(o, "label", mi ? mi->label : f->modules[i]) ||
            !(mi ? cJSON_AddBoolToObject(o, "ffn", mi->ffn) : cJSON_AddNullToObject(o, "ffn"))) {
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* The job's adapted modules as columns (see h_job_freezing). 0, or -1
 * when out of memory. */
static int add_job_modules(freeze_data *f, const char *spec_text, const aflo_family *fam) {
    aflo_job_spec js;
    aflo_adapter_config ac;
    char err[256];
    if (fam && spec_parse(spec_text, strlen(spec_text), &js, NULL) == 0) {
        int rc = spec_to_adapter_config(&js, fam, &ac, err, sizeof err);
        spec_free(&js);
        if (rc == 0) {
            for (int k = 0; k < fam->n_modules; k++)
                if ((ac.targets & (1u << k)) && module_index(f, fam->modules[k].target, true) == -2)
                    return -1;
            return 0;
        }
    }
    cJSON *spec = cJSON_Parse(spec_text);
    const cJSON *it;
    cJSON_ArrayForEach (it, cJSON_GetObjectItemCaseSensitive(spec, "target_modules")) {
        if (!cJSON_IsString(it) || (fam && family_module_index(fam, it->valuestring) < 0)) continue;
        if (module_index(f, it->valuestring, true) == -2) {
            cJSON_Delete(spec);
            return -1;
        }
    }
    cJSON_Delete(spec);
    return 0;
}

enum MHD_Result h_job_freezing(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    char err[1024];
    store_job j;
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0) return reply_store_error(r, st, err);

    freeze_data f = {.max_layer = -1, .last_schedule_step = -1};
    cJSON *spec = cJSON_Parse(j.spec), *root = NULL;
    enum MHD_Result ret;
    f.schedule = cJSON_CreateArray();
    if (!f.schedule) goto oom;
    const char *model = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "model"));
    api_model_info mi;
    bool known =
        model && api_model_lookup(r->srv, model, false, &mi, err, sizeof err) == 0 && mi.described;
    /* api_model_info.architecture is the config's model_type */
    const aflo_family *fam = known ? family_for_model_type(mi.architecture, NULL) : NULL;
    /* The modules the job adapts, in the family's order: its spec resolved
     * against the family, so a spec left at the default lists the family's
     * default targets (q, k, v, up, down for LLaMA), not every name. With
     * no family known, the names the spec lists. Then any others the events
     * name. */
    if (add_job_modules(&f, j.spec, fam) != 0) goto oom;
    int64_t after = 0;
    for (;;) {
        store_event *ev;
        size_t n;
        if (store_event_list(st, r->id, after, FREEZE_PAGE, &ev, &n, err, sizeof err) != 0) {
            ret = reply_store_error(r, st, err);
            goto out;
        }
        int rc = 0;
        for (size_t i = 0; i < n && rc == 0; i++) rc = take_event(&f, &ev[i]);
        if (n) after = ev[n - 1].seq;
        store_event_list_free(ev, n);
        if (rc != 0) goto oom;
        if (n < FREEZE_PAGE) break;
    }
    int layers = known ? mi.info.layers : 0;
    if (f.max_layer + 1 > layers) layers = f.max_layer + 1;

    root = cJSON_CreateObject();
    cJSON *mods = f.n_modules ? cJSON_CreateStringArray((const char *const *)f.modules, f.n_modules)
                              : cJSON_CreateArray();
    cJSON *frozen = cJSON_CreateObject(), *scores = cJSON_CreateObject();
    cJSON *infos = module_info_json(&f, fam);
    const char *method = cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "method"));
    const char *proj =
        cJSON_GetStringValue(cJSON_GetObjectItemCaseSensitive(spec, "trainable_projections"));
    bool ok = root && cJSON_AddStringToObject(root, "job_id", j.id) &&
              cJSON_AddStringToObject(root, "status", store_job_status_name(j.status)) &&
              cJSON_AddStringToObject(root, "method", method ? method : "") &&
              (proj ? cJSON_AddStringToObject(root, "trainable_projections", proj)
                    : cJSON_AddNullToObject(root, "trainable_projections")) &&
              api_add_int(root, "total_steps", j.progress.total_steps) &&
              cJSON_AddNumberToObject(root, "layers", layers) &&
              (fam ? cJSON_AddStringToObject(root, "family", fam->name)
                   : cJSON_AddNullToObject(root, "family"));
    if (ok && mods && infos && frozen && scores) {
        cJSON_AddItemToObject(root, "modules", mods);
        cJSON_AddItemToObject(root, "module_info", infos);
        cJSON_AddItemToObject(root, "frozen_at", frozen);
        cJSON_AddItemToObject(root, "scores", scores);
        mods = infos = frozen = scores = NULL;
    } else {
        ok = false;
    }
    static const char *const names[MATRIX_COUNT] = {"A", "B"};
    for (int m = 0; ok && m < MATRIX_COUNT; m++)
        ok = cJSON_AddItemToObject(cJSON_GetObjectItem(root, "frozen_at"), names[m],
                                   grid(&f, layers, m, false)) &&
             cJSON_AddItemToObject(cJSON_GetObjectItem(root, "scores"), names[m],
                                   grid(&f, layers, m, true));
    if (ok) {
        cJSON_AddItemToObject(root, "schedule", f.schedule);
        f.schedule = NULL;
    }
    cJSON_Delete(mods);
    cJSON_Delete(infos);
    cJSON_Delete(frozen);
    cJSON_Delete(scores);
    if (!ok) goto oom;
    ret = reply_json(r, MHD_HTTP_OK, root);
    root = NULL;
    goto out;
oom:
    ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
out:
    cJSON_Delete(root);
    cJSON_Delete(spec);
    freeze_data_free(&f);
    store_job_clear(&j);
    return ret;
}
