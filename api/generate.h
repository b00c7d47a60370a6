/* generate.h — POST /jobs/{id}/generate and POST /models/{name}/generate
 * (generate.c): text from a finished causal-LM job's adapter or from a base
 * model, as one JSON reply or as server-sent events token by token, run on
 * the generation pool (genpool.h) that api_start creates and api_stop
 * stops. */
#ifndef AFLO_API_GENERATE_H
#define AFLO_API_GENERATE_H

#include <microhttpd.h>

#include "api_internal.h"

enum MHD_Result h_job_generate(api_req *r);
enum MHD_Result h_model_generate(api_req *r);

#endif
