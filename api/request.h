/* request.h — what a handler reads from its request beyond the path
 * (request.c). */
#ifndef AFLO_API_REQUEST_H
#define AFLO_API_REQUEST_H

#include <stdbool.h>
#include <stdint.h>

#include "api_internal.h"

/* ?key= and a request header, NULL when absent. */
const char *api_query(api_req *r, const char *key);
const char *api_header(api_req *r, const char *key);
/* ?key= as an integer in [min, max]; absent -> def. -1 after replying 400. */
int api_query_int(api_req *r, const char *key, int64_t def, int64_t min, int64_t max, int64_t *out);
/* Strict decimal: an optional '-', then digits only, within int64. */
bool api_parse_int64(const char *s, int64_t *out);
/* Whether the request's If-None-Match names etag (or is "*"). */
bool api_etag_matches(api_req *r, const char *etag);

#endif
