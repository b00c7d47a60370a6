/* jobs.c — POST /jobs, GET /jobs, GET /jobs/{id}, POST /jobs/{id}/cancel,
 * POST /jobs/{id}/retry and POST /jobs/{id}/predict.
 *
 * A job spec is parsed and validated by the spec module (spec.h) — the one
 * parser `aflorad run` and the workers use — and stored in its normalised
 * form (every default written out), so what a job ran with is visible in GET
 * /jobs/{id} even if defaults change later. On top of the spec's own checks,
 * the API enforces what only a server can: the model must be "demo" or a
 * folder of the models directory that the engine's probe finds usable (GET
 * /models says which and why not), the datasets must be ids of
 * uploaded datasets that exist, and nothing in a spec may name a server file
 * path (a client must not make the daemon read arbitrary files): an
 * init_adapter is "job:<id>", a succeeded job whose adapter is checked
 * against the spec here. The first rows of each dataset are parsed with the
 * spec's columns, so a wrong column name fails here with the loader's message
 * rather than minutes later in a worker. Every failure names the spec field
 * it is about (for a dataset that does not fit, the column or label field at
 * fault: blame_field).
 *
 * Predictions check the request (and the pair rule, from the stored spec)
 * before touching a model, then take the job's model from the server's
 * predict cache (predict.h), so only the first request loads it. */
#include "api_internal.h"
#include "dbpool.h"
#include "handlers.h"
#include "io/lmdata.h"
#include "job.h"
#include "log.h"
#include "predict.h"
#include "reply.h"
#include "request.h"
#include "spec.h"
#include "io/textdata.h"
#include "model/family.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define JOBS_DEFAULT_LIMIT 50
/* Up-front dataset check: rows parsed with the spec's columns, read from a
 * prefix of the file (the whole file only if the prefix cannot decide). */
#define CHECK_ROWS 50
#define CHECK_PREFIX ((size_t)1 << 20)

static cJSON *parse_or_null(const char *text) {
    cJSON *v = text ? cJSON_Parse(text) : NULL;
    return v ? v : cJSON_CreateNull();
}

cJSON *api_job_json(const store_job *j) {
    const store_progress *p = &j->progress;
    cJSON *o = cJSON_CreateObject();
    if (!o) return NULL;
    cJSON *prog = cJSON_CreateObject(), *fl = cJSON_CreateObject();
    bool ok =
        prog && fl && cJSON_AddStringToObject(o, "id", j->id) &&
        cJSON_AddStringToObject(o, "status", store_job_status_name(j->status)) &&
        api_add_time(o, "created_at", j->created_at) &&
        api_add_time(o, "started_at", j->started_at) &&
        api_add_time(o, "finished_at", j->finished_at) &&
        cJSON_AddBoolToObject(o, "cancel_requested", j->cancel_requested) &&
        cJSON_AddNumberToObject(o, "attempts", j->attempts) &&
        (j->error ? cJSON_AddStringToObject(o, "error", j->error)
                  : cJSON_AddNullToObject(o, "error")) &&
        (j->train_dataset_id[0]
             ? cJSON_AddStringToObject(o, "train_dataset_id", j->train_dataset_id)
             : cJSON_AddNullToObject(o, "train_dataset_id")) &&
        (j->eval_dataset_id[0] ? cJSON_AddStringToObject(o, "eval_dataset_id", j->eval_dataset_id)
                               : cJSON_AddNullToObject(o, "eval_dataset_id"));
    if (ok) {
        ok = api_add_int(prog, "step", p->step) &&
             api_add_int(prog, "total_steps", p->total_steps) &&
             api_add_int(prog, "epoch", p->epoch) &&
             (p->loss == p->loss ? cJSON_AddNumberToObject(prog, "loss", p->loss) != NULL
                                 : cJSON_AddNullToObject(prog, "loss") != NULL) &&
             api_add_int(fl, "forward", p->flops_forward) &&
             api_add_int(fl, "backward_input", p->flops_backward_input) &&
             api_add_int(fl, "backward_weight", p->flops_backward_weight) &&
             api_add_int(fl, "total",
                         p->flops_forward + p->flops_backward_input + p->flops_backward_weight) &&
             api_add_int(prog, "trainable_now", p->trainable_now) &&
             cJSON_AddNumberToObject(prog, "trainable_avg", p->trainable_avg) &&
             api_add_int(prog, "frozen", p->frozen) && api_add_int(prog, "freezable", p->freezable);
    }
    if (ok) {
        cJSON_AddItemToObject(prog, "flops", fl);
        fl = NULL;
        cJSON_AddItemToObject(o, "progress", prog);
        prog = NULL;
        ok = cJSON_AddItemToObject(o, "metrics", parse_or_null(j->metrics)) &&
             cJSON_AddItemToObject(o, "spec", parse_or_null(j->spec));
    }
    cJSON_Delete(fl);
    cJSON_Delete(prog);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

/* The served OpenAPI document describes the job spec with the schema the
 * spec module generates from its field table, so the two cannot drift. */
int api_openapi_add_spec_schema(cJSON *doc) {
    cJSON *schemas = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(doc, "components"), "schemas");
    cJSON *schema = spec_schema_json();
    if (!schemas || !schema) {
        cJSON_Delete(schema);
        return -1;
    }
    cJSON_AddItemToObject(schema, "description",
                          cJSON_CreateString("A job spec (aflorad run SPEC.json and POST /jobs). "
                                             "Over the API, model is \"demo\" or a folder name "
                                             "of the models directory and dataset.train/eval "
                                             "are dataset ids."));
    if (cJSON_GetObjectItemCaseSensitive(schemas, "JobSpec"))
        return cJSON_ReplaceItemInObjectCaseSensitive(schemas, "JobSpec", schema) ? 0 : -1;
    return cJSON_AddItemToObject(schemas, "JobSpec", schema) ? 0 : -1;
}

/* ---- POST /jobs --------------------------------------------------------------- */

static unsigned spec_status(spec_error_code c) {
    switch (c) {
    case SPEC_E_TOO_LARGE: return MHD_HTTP_CONTENT_TOO_LARGE;
    case SPEC_E_NO_MEMORY:
    case SPEC_E_IO: return MHD_HTTP_INTERNAL_SERVER_ERROR;
    default: return MHD_HTTP_BAD_REQUEST;
    }
}

/* Parse the first rows of dataset d as ts says. 0, or -1 with the loader's
 * message. */
static int rows_fit(const textdata_spec *spec_ts, const store_dataset *d, char *err,
                    size_t errlen) {
    textdata_spec ts = *spec_ts;
    if (ts.format == TEXTDATA_AUTO) ts.format = textdata_format_from_path(d->path);
    ts.max_rows = CHECK_ROWS;
    int fd = open(d->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "the file of dataset %s is missing on the server: %s", d->id,
                 strerror(errno));
        return -1;
    }
    char *buf = malloc(CHECK_PREFIX);
    ssize_t n = buf ? pread(fd, buf, CHECK_PREFIX, 0) : -1;
    close(fd);
    if (n < 0) {
        free(buf);
        snprintf(err, errlen, "cannot read dataset %s", d->id);
        return -1;
    }
    textdata td;
    int rc = textdata_load_buffer(buf, (size_t)n, d->name, &ts, &td, err, errlen);
    free(buf);
    if (rc == 0) {
        textdata_free(&td);
        return 0;
    }
    if ((size_t)n < CHECK_PREFIX) return -1; /* the whole file was read: the message stands */
    /* The prefix may have cut a row; decide on the whole file. */
    rc = textdata_load(d->path, &ts, &td, err, errlen);
    if (rc == 0) textdata_free(&td);
    return rc;
}

/* The spec field a failed rows check is about, so the error lands on it (a
 * form shows it beside that field). The loader's message names file and
 * line, not the field, so the check is retried with parts of the spec left
 * out: rows that fit without the label blame the label (the declared labels
 * if they alone are the problem), rows that fit without the second text
 * blame it, rows that fit with the first column for the first text blame
 * that; otherwise it is the file itself (NULL). */
static const char *blame_field(const textdata_spec *full, const store_dataset *d) {
    char scratch[512];
    textdata_spec t = *full;
    t.label = (textdata_field){TEXTDATA_FIELD_NONE, NULL, 0};
    t.labels = NULL;
    t.num_labels = 0;
    if (rows_fit(&t, d, scratch, sizeof scratch) == 0) {
        textdata_spec u = *full;
        u.labels = NULL;
        u.num_labels = 0;
        if (full->labels && rows_fit(&u, d, scratch, sizeof scratch) == 0) return "dataset.labels";
        return "dataset.label_field";
    }
    bool pair = t.text_b.kind != TEXTDATA_FIELD_NONE;
    t.text_b = (textdata_field){TEXTDATA_FIELD_NONE, NULL, 0};
    if (pair && rows_fit(&t, d, scratch, sizeof scratch) == 0) return "dataset.text_fields[1]";
    textdata_format fmt =
        full->format == TEXTDATA_AUTO ? textdata_format_from_path(d->path) : full->format;
    t.text_a = TEXTDATA_BY_INDEX(0);
    if (fmt != TEXTDATA_JSONL && rows_fit(&t, d, scratch, sizeof scratch) == 0)
        return "dataset.text_fields[0]";
    return NULL;
}

/* Parse the first rows of dataset d with the spec's columns. 0, or -1 with
 * the loader's message and *field set to the spec field it is about (NULL:
 * the file as a whole). */
static int check_dataset_rows(const aflo_job_spec *spec, const store_dataset *d, const char **field,
                              char *err, size_t errlen) {
    textdata_spec ts;
    *field = NULL;
    if (spec_to_textdata_spec(spec, &ts) != 0) return 0;
    if (rows_fit(&ts, d, err, errlen) == 0) return 0;
    *field = blame_field(&ts, d);
    return -1;
}

/* The dataset's recorded form against the job's task: causal-LM rows for
 * causal_lm, text-and-label columns for the encoders. Records of an older
 * database have no form: the rows check below stays the judge. false after
 * replying. */
static bool dataset_fits_task(api_req *r, const aflo_job_spec *spec, const store_dataset *d,
                              const char *field) {
    if (!d->form) return true;
    lmdata_form form;
    bool lm = lmdata_form_from_name(d->form, &form) == 0;
    bool causal = spec->task == TASK_CAUSAL_LM;
    if (lm == causal) return true;
    if (causal)
        reply_error(r, MHD_HTTP_BAD_REQUEST, "dataset_task_mismatch", field,
                    "%s: dataset %s holds %s rows for an encoder task, not causal-LM rows: "
                    "upload JSON Lines with ?task=causal_lm (text, prompt/completion, Alpaca, "
                    "chat messages or input_ids rows)",
                    field, d->id, d->form);
    else
        reply_error(r, MHD_HTTP_BAD_REQUEST, "dataset_task_mismatch", field,
                    "%s: dataset %s holds causal-LM rows (form %s), which task %s cannot train "
                    "on: use task \"causal_lm\" or upload text-and-label rows",
                    field, d->id, d->form, spec_task_name(spec->task));
    return false;
}

/* A dataset reference of the spec: an existing uploaded dataset. On failure
 * replies (400 naming the field, or 500) and returns -1. */
static int check_dataset_ref(api_req *r, store *st, const aflo_job_spec *spec, const char *ref,
                             const char *field) {
    if (!spec_is_dataset_id(ref)) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value", field,
                    "%s: must be the id of an uploaded dataset (POST /datasets); file paths are "
                    "not accepted over the API",
                    field);
        return -1;
    }
    store_dataset d;
    char err[1024];
    if (store_dataset_get(st, ref, &d, err, sizeof err) != 0) {
        if (store_last_error(st) == STORE_E_NOT_FOUND)
            reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_dataset", field,
                        "%s: no dataset has the id %s (GET /datasets lists them)", field, ref);
        else
            reply_store_error(r, st, err);
        return -1;
    }
    if (!dataset_fits_task(r, spec, &d, field)) {
        store_dataset_clear(&d);
        return -1;
    }
    /* causal-LM rows: the upload checked them (lmdata_check) and the
     * worker's loader tokenises them; columns are an encoder's matter */
    if (spec->task == TASK_CAUSAL_LM) {
        store_dataset_clear(&d);
        return 0;
    }
    const char *blamed;
    int rc = check_dataset_rows(spec, &d, &blamed, err, sizeof err);
    store_dataset_clear(&d);
    if (rc != 0 && blamed)
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_dataset", blamed,
                    "%s: does not match the data of %s: %s", blamed, field, err);
    else if (rc != 0)
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_dataset", field,
                    "%s: the dataset does not fit the spec: %s", field, err);
    return rc;
}

/* init_adapter "job:<id>": a succeeded job whose adapter fits this spec (what
 * the spec alone tells: method, rank, targets, task, the model's shapes, the
 * declared labels; the worker checks the labels of the data again). 0, or
 * -1 after replying: 400 for a wrong reference or a mismatch, 409 while the
 * job has not succeeded, 500 when its adapter cannot be read. */
static int check_init_adapter(api_req *r, store *st, const aflo_job_spec *spec,
                              enum MHD_Result *ret) {
    const char *id = spec_init_adapter_job(spec);
    store_job j;
    char err[1024];
    if (store_job_get(st, id, &j, err, sizeof err) != 0) {
        *ret = store_last_error(st) == STORE_E_NOT_FOUND
                   ? reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_job", "init_adapter",
                                 "init_adapter: no job has the id %s (GET /jobs lists them)", id)
                   : reply_store_error(r, st, err);
        return -1;
    }
    store_job_status status = j.status;
    store_job_clear(&j);
    if (status != STORE_JOB_SUCCEEDED) {
        *ret = reply_error(r, MHD_HTTP_CONFLICT, "not_ready", "init_adapter",
                           "init_adapter: job %s is %s; its adapter exists once it has succeeded",
                           id, store_job_status_name(status));
        return -1;
    }
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s/adapter/adapter.safetensors", r->srv->jobs_dir, id);
    if (access(path, R_OK) != 0) {
        *ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "adapter_missing", NULL,
                           "init_adapter: job %s has succeeded but its adapter is missing on the "
                           "server (%s)",
                           id, strerror(errno));
        return -1;
    }
    const char *const *labels = (const char *const *)spec->dataset.labels;
    int rc = job_check_init_adapter(r->srv->models_dir, spec, path, labels, spec->num_labels, err,
                                    sizeof err);
    if (rc == -1)
        *ret =
            reply_error(r, MHD_HTTP_BAD_REQUEST, "incompatible_adapter", "init_adapter", "%s", err);
    else if (rc != 0)
        *ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "%s", err);
    return rc;
}

static enum MHD_Result reply_job(api_req *r, store *st, const char *id, unsigned status,
                                 bool location) {
    store_job j;
    char err[1024];
    if (store_job_get(st, id, &j, err, sizeof err) != 0) return reply_store_error(r, st, err);
    cJSON *o = api_job_json(&j);
    store_job_clear(&j);
    char loc[64];
    snprintf(loc, sizeof loc, "/jobs/%s", id);
    return reply_json_at(r, status, o, location ? loc : NULL);
}

/* reply_job for a job this request has just queued: its JSON is read before
 * the workers are woken, so the reply shows the state the request produced
 * ("queued", as documented) rather than what an idle worker made of it a
 * moment later. The workers are woken whatever happens. */
static enum MHD_Result reply_queued_job(api_req *r, store *st, const char *id, unsigned status,
                                        bool location) {
    store_job j;
    char err[1024];
    cJSON *o = NULL;
    int got = store_job_get(st, id, &j, err, sizeof err);
    if (got == 0) {
        o = api_job_json(&j);
        store_job_clear(&j);
    }
    api_workers_notify(r->srv);
    if (got != 0) return reply_store_error(r, st, err);
    char loc[64];
    snprintf(loc, sizeof loc, "/jobs/%s", id);
    return reply_json_at(r, status, o, location ? loc : NULL);
}

enum MHD_Result h_jobs_create(api_req *r) {
    aflo_job_spec spec;
    aflo_spec_error e;
    if (spec_parse(r->body, r->body_len, &spec, &e) != 0) {
        spec_free(&spec);
        return reply_error(r, spec_status(e.code), spec_error_code_name(e.code), e.field, "%s",
                           e.message);
    }
    enum MHD_Result ret = MHD_YES;
    char err[1024];
    char *normal = NULL;
    api_model_info model;
    store *st = NULL;
    if (spec.init_adapter && !spec_init_adapter_job(&spec)) {
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value", "init_adapter",
                          "init_adapter: names a file on the server, which the API does not "
                          "accept; give \"job:<id>\" to start from a succeeded job's adapter");
        goto out;
    }
    if (api_model_lookup(r->srv, spec.model, true, &model, err, sizeof err) != 0) {
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_model", "model", "model: %s", err);
        goto out;
    }
    if (!model.usable) {
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "unusable_model", "model",
                          "model: '%s' cannot be used: %s", spec.model, model.reason);
        goto out;
    }
    /* a usable folder may still lack the head the spec's task needs */
    const aflo_family *fam = model.info.family;
    if (fam && !(model.info.tasks & (1u << spec.task))) {
        char tasks[128];
        modelinfo_tasks_text(&model.info, tasks, sizeof tasks);
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "unsupported_task", "task",
                          "task: model '%s' (a %s) cannot train task %s; its tasks: %s", spec.model,
                          fam->description, spec_task_name(spec.task), tasks);
        goto out;
    }
    if (!(st = api_store(r))) goto out;
    if (spec.init_adapter && check_init_adapter(r, st, &spec, &ret) != 0) goto out;
    if (spec.has_dataset &&
        (check_dataset_ref(r, st, &spec, spec.dataset.train, "dataset.train") != 0 ||
         (spec.dataset.eval &&
          check_dataset_ref(r, st, &spec, spec.dataset.eval, "dataset.eval") != 0)))
        goto out;
    if (!(normal = spec_to_json_string(&spec, false))) {
        ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
        goto out;
    }
    char id[STORE_ID_SIZE];
    if (store_job_create(st, normal, spec.has_dataset ? spec.dataset.train : NULL,
                         spec.has_dataset ? spec.dataset.eval : NULL, id, err, sizeof err) != 0) {
        ret = reply_store_error(r, st, err);
        goto out;
    }
    log_info("job %s queued (model %s)", id, spec.model);
    ret = reply_queued_job(r, st, id, MHD_HTTP_CREATED, true);
out:
    free(normal);
    spec_free(&spec);
    return ret;
}

/* ---- GET /jobs, GET /jobs/{id} -------------------------------------------------- */

enum MHD_Result h_jobs_list(api_req *r) {
    int status = STORE_STATUS_ANY;
    const char *sname = api_query(r, "status");
    if (sname) {
        store_job_status js;
        if (store_job_status_parse(sname, &js) != 0)
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", "status",
                               "status must be queued, running, succeeded, failed or cancelled");
        status = (int)js;
    }
    int64_t limit, offset;
    if (api_query_int(r, "limit", JOBS_DEFAULT_LIMIT, 1, STORE_LIST_LIMIT_MAX, &limit) != 0 ||
        api_query_int(r, "offset", 0, 0, INT64_MAX, &offset) != 0)
        return MHD_YES;
    store *st = api_store(r);
    if (!st) return MHD_YES;
    store_job *jobs;
    size_t n;
    int64_t counts[STORE_JOB_STATUS_COUNT];
    char err[1024];
    if (store_job_list(st, status, limit, offset, &jobs, &n, err, sizeof err) != 0)
        return reply_store_error(r, st, err);
    if (store_job_counts(st, counts, err, sizeof err) != 0) {
        store_job_list_free(jobs, n);
        return reply_store_error(r, st, err);
    }
    int64_t total = 0;
    for (int i = 0; i < STORE_JOB_STATUS_COUNT; i++)
        if (status == STORE_STATUS_ANY || status == i) total += counts[i];
    cJSON *root = cJSON_CreateObject(), *arr = cJSON_AddArrayToObject(root, "jobs");
    bool ok = arr && api_add_int(root, "total", total) && api_add_int(root, "limit", limit) &&
              api_add_int(root, "offset", offset);
    for (size_t i = 0; ok && i < n; i++) ok = cJSON_AddItemToArray(arr, api_job_json(&jobs[i]));
    store_job_list_free(jobs, n);
    if (!ok) {
        cJSON_Delete(root);
        root = NULL;
    }
    return reply_json(r, MHD_HTTP_OK, root);
}

enum MHD_Result h_job_get(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    return reply_job(r, st, r->id, MHD_HTTP_OK, false);
}

/* ---- POST /jobs/{id}/cancel ------------------------------------------------------ */

enum MHD_Result h_job_cancel(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    char err[1024];
    int outcome = store_job_request_cancel(st, r->id, err, sizeof err);
    if (outcome < 0) return reply_store_error(r, st, err);
    if (outcome == STORE_CANCEL_ALREADY_FINISHED) {
        store_job j;
        bool have = store_job_get(st, r->id, &j, err, sizeof err) == 0;
        enum MHD_Result ret =
            reply_error(r, MHD_HTTP_CONFLICT, "conflict", NULL,
                        "job %s has already %s; there is nothing to cancel", r->id,
                        have ? store_job_status_name(j.status) : "finished");
        if (have) store_job_clear(&j);
        return ret;
    }
    if (outcome == STORE_CANCEL_REQUESTED) api_workers_cancel(r->srv, r->id);
    /* A queued job was cancelled by the store, which wrote its status event. */
    api_notify_job_events(r->srv, r->id);
    log_info("job %s: %s", r->id, outcome == STORE_CANCEL_DONE ? "cancelled" : "cancel requested");
    return reply_job(r, st, r->id, outcome == STORE_CANCEL_DONE ? MHD_HTTP_OK : MHD_HTTP_ACCEPTED,
                     false);
}

/* ---- POST /jobs/{id}/retry ------------------------------------------------------- */

/* A failed or cancelled job goes back to the queue and resumes from its
 * checkpoint (the store keeps its progress; the worker finds the file in
 * the job's folder). Its uploaded datasets must still exist: the ids come
 * from its spec, since the job's own columns are cleared when a dataset of
 * a finished job is deleted. */
enum MHD_Result h_job_retry(api_req *r) {
    store *st = api_store(r);
    if (!st) return MHD_YES;
    char err[1024];
    store_job j;
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0) return reply_store_error(r, st, err);
    aflo_job_spec spec;
    aflo_spec_error e;
    int parsed = spec_parse(j.spec, strlen(j.spec), &spec, &e);
    store_job_clear(&j);
    if (parsed != 0) {
        spec_free(&spec);
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                           "job %s: its stored spec no longer parses: %s", r->id, e.message);
    }
    const char *train = NULL, *eval = NULL;
    if (spec.has_dataset) {
        if (spec_is_dataset_id(spec.dataset.train)) train = spec.dataset.train;
        if (spec.dataset.eval && spec_is_dataset_id(spec.dataset.eval)) eval = spec.dataset.eval;
    }
    int rc = store_job_retry(st, r->id, train, eval, err, sizeof err);
    spec_free(&spec);
    if (rc != 0) return reply_store_error(r, st, err);
    log_info("job %s: queued again (retry)", r->id);
    api_notify_job_events(r->srv, r->id);
    return reply_queued_job(r, st, r->id, MHD_HTTP_OK, false);
}

/* ---- POST /jobs/{id}/predict ------------------------------------------------------ */

/* Inputs per request: a prediction runs on this connection's thread, so a
 * request stays short. */
#define PREDICT_MAX_INPUTS 64

/* Check the body's shape: {"inputs": [{"text": "...", "text_pair"?: "..."}]}.
 * Replies 400 naming the field and returns NULL, or returns the inputs. */
static cJSON *predict_inputs(api_req *r, cJSON *body, enum MHD_Result *ret) {
    cJSON *inputs = cJSON_GetObjectItemCaseSensitive(body, "inputs");
    if (!cJSON_IsObject(body) || !cJSON_IsArray(inputs)) {
        *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value", "inputs",
                           "inputs: expected {\"inputs\": [{\"text\": \"...\", "
                           "\"text_pair\": \"...\"}, ...]}");
        return NULL;
    }
    int n = cJSON_GetArraySize(inputs);
    if (n < 1 || n > PREDICT_MAX_INPUTS) {
        *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "out_of_range", "inputs",
                           "inputs: between 1 and %d inputs per request, got %d",
                           PREDICT_MAX_INPUTS, n);
        return NULL;
    }
    char field[64];
    for (int i = 0; i < n; i++) {
        cJSON *in = cJSON_GetArrayItem(inputs, i);
        snprintf(field, sizeof field, "inputs[%d]", i);
        if (!cJSON_IsObject(in)) {
            *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "wrong_type", field,
                               "%s: expected an object {\"text\": ...}", field);
            return NULL;
        }
        for (cJSON *k = in->child; k; k = k->next)
            if (strcmp(k->string, "text") != 0 && strcmp(k->string, "text_pair") != 0) {
                snprintf(field, sizeof field, "inputs[%d].%.32s", i, k->string);
                *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "unknown_field", field,
                                   "%s: unknown field (an input has text and, for pairs, "
                                   "text_pair)",
                                   field);
                return NULL;
            }
        cJSON *t = cJSON_GetObjectItemCaseSensitive(in, "text");
        cJSON *tp = cJSON_GetObjectItemCaseSensitive(in, "text_pair");
        if (!t) {
            snprintf(field, sizeof field, "inputs[%d].text", i);
            *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "missing_field", field, "%s: is required",
                               field);
            return NULL;
        }
        if (!cJSON_IsString(t) || (tp && !cJSON_IsString(tp))) {
            snprintf(field, sizeof field, "inputs[%d].%s", i,
                     cJSON_IsString(t) ? "text_pair" : "text");
            *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "wrong_type", field,
                               "%s: expected a string", field);
            return NULL;
        }
    }
    return inputs;
}

/* The job's text columns, for messages: "\"question1\" and \"question2\"". */
static void describe_text_fields(const aflo_job_spec *spec, char *buf, size_t cap) {
    buf[0] = '\0';
    if (!spec->has_dataset) {
        snprintf(buf, cap, "the demo's sentences");
        return;
    }
    size_t used = 0;
    for (int i = 0; i < spec->dataset.n_text_fields && used < cap; i++) {
        const spec_column *c = &spec->dataset.text_fields[i];
        int k = c->kind == TEXTDATA_FIELD_INDEX
                    ? snprintf(buf + used, cap - used, "%scolumn %d", i ? " and " : "", c->index)
                    : snprintf(buf + used, cap - used, "%s\"%.100s\"", i ? " and " : "", c->name);
        if (k < 0) return;
        used += (size_t)k;
    }
}

/* A pair for a pair-trained job, a single text otherwise: 0, or -1 after
 * replying 400 naming the input. */
static int check_pairs(api_req *r, const aflo_job_spec *spec, cJSON *inputs, enum MHD_Result *ret) {
    bool pairs = spec->has_dataset && spec->dataset.n_text_fields == 2;
    char fields[256], field[64];
    describe_text_fields(spec, fields, sizeof fields);
    for (int i = 0; i < cJSON_GetArraySize(inputs); i++) {
        bool has = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(inputs, i), "text_pair");
        if (has == pairs) continue;
        snprintf(field, sizeof field, "inputs[%d].text_pair", i);
        *ret = pairs ? reply_error(r, MHD_HTTP_BAD_REQUEST, "missing_field", field,
                                   "%s: the job was trained on text pairs (%s): give text_pair "
                                   "too",
                                   field, fields)
                     : reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value", field,
                                   "%s: the job was trained on single texts (%s): text_pair "
                                   "does not apply",
                                   field, fields);
        return -1;
    }
    return 0;
}

int api_succeeded_job_spec(api_req *r, store *st, const char *use, aflo_job_spec *spec,
                           enum MHD_Result *ret) {
    char err[1024];
    store_job j;
    if (store_job_get(st, r->id, &j, err, sizeof err) != 0) {
        *ret = reply_store_error(r, st, err);
        return -1;
    }
    if (j.status != STORE_JOB_SUCCEEDED) {
        *ret = reply_error(r, MHD_HTTP_CONFLICT, "conflict", NULL,
                           "job %s is %s: %s a job that has succeeded", r->id,
                           store_job_status_name(j.status), use);
        store_job_clear(&j);
        return -1;
    }
    aflo_spec_error se;
    int bad_spec = spec_parse(j.spec, strlen(j.spec), spec, &se);
    store_job_clear(&j);
    if (bad_spec) {
        *ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                           "job %s: its stored spec is invalid: %s", r->id, se.message);
        return -1;
    }
    return 0;
}

enum MHD_Result h_job_predict(api_req *r) {
    enum MHD_Result ret = MHD_YES;
    cJSON *body = cJSON_ParseWithLength(r->body, r->body_len);
    cJSON *inputs = predict_inputs(r, body, &ret);
    store *st = NULL;
    aflo_job_spec spec;
    memset(&spec, 0, sizeof spec);
    predictor *p = NULL;
    cJSON *out = NULL;
    if (!inputs || !(st = api_store(r))) goto out;
    if (api_succeeded_job_spec(r, st, "predictions need", &spec, &ret) != 0) goto out;
    if (check_pairs(r, &spec, inputs, &ret) != 0) goto out;

    char adapter[PATH_MAX];
    snprintf(adapter, sizeof adapter, "%s/%s/adapter/adapter.safetensors", r->srv->jobs_dir, r->id);
    if (access(adapter, F_OK) != 0) {
        ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "adapter_missing", NULL,
                          "job %s has succeeded but its adapter is missing on the server (%s)",
                          r->id, strerror(errno));
        goto out;
    }
    char err[1024];
    p = predict_cache_acquire(r->srv->predict, r->id, r->srv->models_dir, spec.model, adapter, err,
                              sizeof err);
    if (!p) {
        ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                          "cannot load the job's model and adapter: %s", err);
        goto out;
    }
    out = cJSON_CreateObject();
    cJSON *preds = cJSON_AddArrayToObject(out, "predictions");
    if (!preds) {
        ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
        goto out;
    }
    for (int i = 0; i < cJSON_GetArraySize(inputs); i++) {
        cJSON *in = cJSON_GetArrayItem(inputs, i);
        cJSON *tp = cJSON_GetObjectItemCaseSensitive(in, "text_pair");
        predict_status ps;
        cJSON *res = predictor_run(p, cJSON_GetObjectItemCaseSensitive(in, "text")->valuestring,
                                   tp ? tp->valuestring : NULL, &ps, err, sizeof err);
        if (!res) {
            char field[32];
            snprintf(field, sizeof field, "inputs[%d]", i);
            ret = ps == PREDICT_E_INPUT ? reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value",
                                                      field, "%s: %s", field, err)
                                        : reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal",
                                                      field, "%s: %s", field, err);
            goto out;
        }
        cJSON_AddItemToArray(preds, res);
    }
    ret = reply_json(r, MHD_HTTP_OK, out);
    out = NULL;
out:
    if (p) predict_cache_release(r->srv->predict, p);
    cJSON_Delete(out);
    spec_free(&spec);
    cJSON_Delete(body);
    return ret;
}
