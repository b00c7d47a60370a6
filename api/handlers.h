/* handlers.h — the request handlers of api/, one file per resource, and
 * what they share with each other and with server.c.
 *
 * datasets.c: uploads and the dataset routes; jobs.c: submitting, listing,
 * cancelling, retrying and predicting (and the OpenAPI JobSpec schema);
 * events.c: a job's events (SSE or JSON) and its freezing grid; files.c:
 * adapter downloads and the web UI's static files; info.c: health, metrics,
 * the OpenAPI document and the models. The generation routes have a header
 * of their own (generate.h: generate.c, on genpool.c's threads). Every
 * handler is named by a row of the route table (routes.c) and answers
 * through reply.h. */
#ifndef AFLO_API_HANDLERS_H
#define AFLO_API_HANDLERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "api_internal.h"
#include "modelinfo.h"
#include "spec.h"
#include "store.h"

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
/* The spec of job r->id, which must have succeeded; `use` says what needs
 * it ("generation needs", "predictions need"). 0, or -1 after replying (the
 * store's error, 409 while the job has not succeeded, 500 for a stored spec
 * that does not parse) with *ret set. The caller spec_free()s it. */
int api_succeeded_job_spec(api_req *r, store *st, const char *use, aflo_job_spec *spec,
                           enum MHD_Result *ret);
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
    bool described;        /* config.json was read: info is set */
    char architecture[64]; /* model_type: "bert", "roberta", "llama" */
    model_info info;       /* family, tasks, sizes, tokenizer, memory (modelinfo.h) */
    bool builtin;
    bool usable;      /* the engine can fine-tune it (hfmodel_probe) */
    char reason[512]; /* why not, when !usable */
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

#endif
