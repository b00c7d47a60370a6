/* info.c — the read-only service endpoints: GET /healthz, GET /metrics
 * (Prometheus text), GET /openapi.json and GET /models.
 *
 * Models are the built-in "demo" plus every subfolder of models_dir holding a
 * config.json. Each is checked by the engine's probe (hfmodel_probe: the
 * config's architecture and sizes, the tokenizer files, the weight files'
 * headers — no tensor data, no math), so a folder listed as usable is one a
 * job can train on, and POST /jobs refuses the others with the same reason.
 * The parameter count is worked out from the config's sizes (a BERT encoder
 * with its pooler for the demo; the weight files' element count otherwise),
 * and the rest of a model's description (family, tasks, tokenizer, chat
 * template, memory estimate) is modelinfo.h's, cached per folder. */
#include "api_internal.h"
#include "model/config.h"
#include "counters.h"
#include "dbpool.h"
#include "handlers.h"
#include "io/hfmodel.h"
#include "reply.h"
#include "routes.h"
#include "synth.h"
#include "version.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define DEMO_MODEL "demo"
#define MODELS_MAX 1000

/* A model's architecture and description from its config (modelinfo.h;
 * dir NULL: the built-in demo, which has no files). */
static void describe(api_model_info *m, const char *dir, const aflo_config *c) {
    m->described = true;
    snprintf(m->architecture, sizeof m->architecture, "%s", c->model_type);
    modelinfo_describe(dir, c, &m->info);
}

/* The built-in demo, described from the engine's demo config (synth.h). */
static void demo_info(api_model_info *m) {
    memset(m, 0, sizeof *m);
    strcpy(m->name, DEMO_MODEL);
    aflo_config c;
    synth_demo_config(&c);
    describe(m, NULL, &c);
    m->builtin = true;
    m->usable = true;
}

/* A model name is one path component we can show and join safely. */
static bool model_name_ok(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof((api_model_info *)0)->name || name[0] == '.') return false;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];
        if (!(c >= 'a' && c <= 'z') && !(c >= 'A' && c <= 'Z') && !(c >= '0' && c <= '9') &&
            c != '-' && c != '_' && c != '.')
            return false;
    }
    return true;
}

/* Every occurrence of the folder's server path in an engine message becomes
 * the model's name: clients see names, not the daemon's file system. */
static void hide_path(char *msg, size_t cap, const char *path, const char *name) {
    size_t pl = strlen(path), nl = strlen(name);
    char *at;
    while (pl && (at = strstr(msg, path)) != NULL) {
        size_t tail = strlen(at + pl);
        if ((size_t)(at - msg) + nl + tail >= cap) break;
        memmove(at + nl, at + pl, tail + 1);
        memcpy(at, name, nl);
    }
}

int api_model_lookup(api_server *s, const char *name, bool check_usable, api_model_info *out,
                     char *err, size_t errlen) {
    if (strcmp(name, DEMO_MODEL) == 0) {
        demo_info(out);
        return 0;
    }
    if (!model_name_ok(name)) {
        snprintf(err, errlen,
                 "model '%.80s' is not a model name: use \"demo\" or the name of a folder of the "
                 "models directory (letters, digits, '-', '_', '.')",
                 name);
        return -1;
    }
    if (!s->models_dir) {
        snprintf(err, errlen,
                 "model '%s' is unknown: no models directory is configured, so only "
                 "\"demo\" is available",
                 name);
        return -1;
    }
    char path[4096];
    struct stat st;
    snprintf(path, sizeof path, "%s/%s", s->models_dir, name);
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) {
        snprintf(err, errlen,
                 "model '%s' is unknown: there is no such folder in the models "
                 "directory (GET /models lists them)",
                 name);
        return -1;
    }
    memset(out, 0, sizeof *out);
    snprintf(out->name, sizeof out->name, "%s", name);
    aflo_config c;
    bool read;
    /* room for the path and the whole reason (an unsupported architecture's
     * lists what is supported) before the path becomes the name */
    char why[sizeof path + 1024] = "";
    if (check_usable) {
        out->usable = hfmodel_probe(path, &c, &read, why, sizeof why) == 0;
    } else {
        read = hfmodel_read_config(path, &c, why, sizeof why) == 0;
        out->usable = read;
    }
    if (!out->usable) {
        hide_path(why, sizeof why, path, name);
        /* a longer reason is cut to the field (the common ones fit) */
        size_t n = strnlen(why, sizeof out->reason - 1);
        memcpy(out->reason, why, n);
        out->reason[n] = '\0';
    }
    if (read) describe(out, path, &c);
    return 0;
}

static bool add_string_or_null(cJSON *o, const char *key, const char *v) {
    return v && v[0] ? cJSON_AddStringToObject(o, key, v) != NULL
                     : cJSON_AddNullToObject(o, key) != NULL;
}

/* The family's target_modules names, and those a job adapts by default. */
static bool add_targets(cJSON *o, const aflo_family *f) {
    cJSON *all = cJSON_AddArrayToObject(o, "target_modules");
    cJSON *def = cJSON_AddArrayToObject(o, "default_target_modules");
    if (!all || !def) return false;
    for (int i = 0; f && i < f->n_modules; i++) {
        const char *name = f->modules[i].target;
        if (!cJSON_AddItemToArray(all, cJSON_CreateString(name))) return false;
        if ((!f->default_targets || (f->default_targets & (1u << i))) &&
            !cJSON_AddItemToArray(def, cJSON_CreateString(name)))
            return false;
    }
    return true;
}

static bool add_description(cJSON *o, const api_model_info *m) {
    const model_info *i = &m->info;
    const char *tasks[TASK_COUNT];
    int nt = modelinfo_task_names(i, tasks, TASK_COUNT);
    cJSON *ta = cJSON_AddArrayToObject(o, "tasks");
    if (!ta) return false;
    for (int k = 0; k < nt; k++)
        if (!cJSON_AddItemToArray(ta, cJSON_CreateString(tasks[k]))) return false;
    bool ok = cJSON_AddStringToObject(o, "architecture", m->architecture) &&
              add_string_or_null(o, "family", i->family ? i->family->name : NULL) &&
              cJSON_AddNumberToObject(o, "layers", i->layers) &&
              cJSON_AddNumberToObject(o, "hidden_size", i->hidden_size) &&
              cJSON_AddNumberToObject(o, "intermediate_size", i->intermediate_size) &&
              cJSON_AddNumberToObject(o, "attention_heads", i->attention_heads) &&
              cJSON_AddNumberToObject(o, "vocab_size", i->vocab_size) &&
              cJSON_AddNumberToObject(o, "context_length", i->context_length) &&
              api_add_int(o, "parameters", i->parameters) &&
              add_string_or_null(o, "dtype", i->dtype) &&
              cJSON_AddBoolToObject(o, "tokenizer", i->tokenizer) &&
              add_string_or_null(o, "tokenizer_kind", i->tokenizer_kind) &&
              add_string_or_null(o, "chat_template", i->chat_template) &&
              (!i->chat_template_error[0] ||
               cJSON_AddStringToObject(o, "chat_template_error", i->chat_template_error)) &&
              add_targets(o, i->family) &&
              (i->train_memory_bytes >= 0
                   ? api_add_int(o, "train_memory_bytes", i->train_memory_bytes) != NULL
                   : cJSON_AddNullToObject(o, "train_memory_bytes") != NULL) &&
              cJSON_AddStringToObject(o, "train_memory_note", i->train_memory_note);
    return ok;
}

static cJSON *model_json(const api_model_info *m) {
    cJSON *o = cJSON_CreateObject();
    bool ok = o && cJSON_AddStringToObject(o, "name", m->name) &&
              cJSON_AddBoolToObject(o, "usable", m->usable) &&
              (m->usable || cJSON_AddStringToObject(o, "reason", m->reason)) &&
              cJSON_AddBoolToObject(o, "builtin", m->builtin);
    if (ok && m->described) ok = add_description(o, m);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

enum MHD_Result h_models(api_req *r) {
    api_server *s = r->srv;
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "models");
    api_model_info m;
    char err[512];
    demo_info(&m);
    if (!arr || !cJSON_AddItemToArray(arr, model_json(&m))) goto oom;
    if (s->models_dir) {
        DIR *d = opendir(s->models_dir);
        char *names[MODELS_MAX];
        int n = 0;
        struct dirent *e;
        while (d && n < MODELS_MAX && (e = readdir(d)) != NULL) {
            struct stat st;
            char cfg[4096];
            if (e->d_name[0] == '.' || strcmp(e->d_name, DEMO_MODEL) == 0) continue;
            snprintf(cfg, sizeof cfg, "%s/%s/config.json", s->models_dir, e->d_name);
            if (stat(cfg, &st) != 0 || !S_ISREG(st.st_mode)) continue;
            if (!(names[n] = strdup(e->d_name))) break;
            n++;
        }
        if (d) closedir(d);
        qsort(names, (size_t)n, sizeof *names, cmp_str);
        bool ok = true;
        for (int i = 0; i < n; i++) {
            if (ok && api_model_lookup(s, names[i], true, &m, err, sizeof err) != 0) {
                /* gone since the directory was read: listed with the reason */
                memset(&m, 0, sizeof m);
                snprintf(m.name, sizeof m.name, "%s", names[i]);
                snprintf(m.reason, sizeof m.reason, "%s", err);
            }
            cJSON *o = ok ? model_json(&m) : NULL;
            if (!o || !cJSON_AddItemToArray(arr, o)) {
                cJSON_Delete(o);
                ok = false;
            }
            free(names[i]);
        }
        if (!ok) goto oom;
    }
    return reply_json(r, MHD_HTTP_OK, root);
oom:
    cJSON_Delete(root);
    return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
}

enum MHD_Result h_healthz(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    int64_t counts[STORE_JOB_STATUS_COUNT];
    char err[512];
    bool db_ok = store_job_counts(st, counts, err, sizeof err) == 0;
    cJSON *root = cJSON_CreateObject();
    if (!root || !cJSON_AddStringToObject(root, "status", db_ok ? "ok" : "unavailable") ||
        !cJSON_AddStringToObject(root, "database", db_ok ? "ok" : err) ||
        !cJSON_AddStringToObject(root, "version", AFLORAD_VERSION) ||
        !cJSON_AddBoolToObject(root, "workers", r->srv->workers != NULL) ||
        !api_add_int(root, "uptime_s", (api_now_ms() - r->srv->started_ms) / 1000)) {
        cJSON_Delete(root);
        root = NULL;
    }
    return reply_json(r, db_ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, root);
}

enum MHD_Result h_openapi(api_req *r) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(
        r->srv->openapi_len, r->srv->openapi, MHD_RESPMEM_PERSISTENT);
    if (!resp) return MHD_NO;
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    return reply_response(r, MHD_HTTP_OK, resp);
}

/* ---- /metrics ----------------------------------------------------------------- */

typedef struct {
    char *buf;
    size_t len, cap;
    bool oom;
} strbuf;

static void sb_printf(strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void sb_printf(strbuf *b, const char *fmt, ...) {
    if (b->oom) return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->buf + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->oom = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2 + (size_t)n + 1;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = true;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
}

enum MHD_Result h_metrics(api_req *r) {
    api_server *s = r->srv;
    store *st = api_store(r);
    if (!st) return MHD_YES;
    int64_t counts[STORE_JOB_STATUS_COUNT];
    char err[512];
    if (store_job_counts(st, counts, err, sizeof err) != 0) return reply_store_error(r, st, err);
    strbuf b = {.cap = 4096};
    if (!(b.buf = malloc(b.cap))) return MHD_NO;
    b.buf[0] = '\0';
    sb_printf(&b, "# HELP aflorad_jobs Jobs in the store by state.\n# TYPE aflorad_jobs gauge\n");
    for (int i = 0; i < STORE_JOB_STATUS_COUNT; i++)
        sb_printf(&b, "aflorad_jobs{state=\"%s\"} %lld\n",
                  store_job_status_name((store_job_status)i), (long long)counts[i]);

    counters_snapshot c;
    counters_read(&c);
    sb_printf(&b,
              "# HELP aflorad_steps_total Optimizer steps processed by the workers.\n"
              "# TYPE aflorad_steps_total counter\naflorad_steps_total %llu\n",
              (unsigned long long)c.steps);
    sb_printf(&b,
              "# HELP aflorad_flops_total Training FLOPs executed, by kind.\n"
              "# TYPE aflorad_flops_total counter\n"
              "aflorad_flops_total{kind=\"forward\"} %llu\n"
              "aflorad_flops_total{kind=\"backward_input\"} %llu\n"
              "aflorad_flops_total{kind=\"backward_weight\"} %llu\n",
              (unsigned long long)c.flops_forward, (unsigned long long)c.flops_backward_input,
              (unsigned long long)c.flops_backward_weight);
    sb_printf(&b,
              "# HELP aflorad_queue_wait_seconds Time jobs waited in the queue before a worker "
              "claimed them.\n# TYPE aflorad_queue_wait_seconds summary\n"
              "aflorad_queue_wait_seconds_sum %.6f\naflorad_queue_wait_seconds_count %llu\n",
              c.queue_wait_seconds_sum, (unsigned long long)c.queue_wait_count);
    sb_printf(&b,
              "# HELP aflorad_jobs_finished_total Jobs the workers ran to a final state.\n"
              "# TYPE aflorad_jobs_finished_total counter\naflorad_jobs_finished_total %llu\n",
              (unsigned long long)c.jobs_finished);
    sb_printf(&b,
              "# HELP aflorad_sse_clients Open server-sent event streams.\n"
              "# TYPE aflorad_sse_clients gauge\naflorad_sse_clients %d\n",
              atomic_load(&s->sse_clients));
    predict_cache_stats pc;
    predict_cache_stats_read(s->predict, &pc);
    sb_printf(&b,
              "# HELP aflorad_predict_model_loads_total Models loaded for predictions "
              "(a first request, or a reload after eviction or a new adapter).\n"
              "# TYPE aflorad_predict_model_loads_total counter\n"
              "aflorad_predict_model_loads_total %llu\n"
              "# HELP aflorad_predict_cache_hits_total Prediction requests served by a loaded "
              "model.\n# TYPE aflorad_predict_cache_hits_total counter\n"
              "aflorad_predict_cache_hits_total %llu\n"
              "# HELP aflorad_predict_models Models held for predictions now (at most "
              "--predict-cache).\n# TYPE aflorad_predict_models gauge\n"
              "aflorad_predict_models %d\n",
              (unsigned long long)pc.loads, (unsigned long long)pc.hits, pc.entries);
    sb_printf(&b,
              "# HELP aflorad_uptime_seconds Seconds since the API started.\n"
              "# TYPE aflorad_uptime_seconds gauge\naflorad_uptime_seconds %lld\n",
              (long long)((api_now_ms() - s->started_ms) / 1000));

    sb_printf(&b, "# HELP aflorad_http_requests_total HTTP requests answered, by route and "
                  "status.\n# TYPE aflorad_http_requests_total counter\n");
    for (int rt = 0; rt <= api_route_count; rt++)
        for (int k = 0; k < API_STATUS_SLOTS; k++) {
            uint64_t v = atomic_load_explicit(&s->http_counts[(size_t)rt * API_STATUS_SLOTS + k],
                                              memory_order_relaxed);
            if (!v) continue;
            const char *method = rt < api_route_count ? api_routes[rt].method : "";
            const char *route = rt < api_route_count ? api_routes[rt].pattern : "unmatched";
            sb_printf(&b,
                      "aflorad_http_requests_total{method=\"%s\",route=\"%s\",status=\"%d\"} "
                      "%llu\n",
                      method, route, k + API_STATUS_MIN, (unsigned long long)v);
        }
    if (b.oom) {
        free(b.buf);
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
    }
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(b.len, b.buf, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(b.buf);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8");
    return reply_response(r, MHD_HTTP_OK, resp);
}
