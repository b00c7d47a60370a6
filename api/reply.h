/* reply.h — how a handler answers its request (reply.c).
 *
 * A handler answers by calling exactly one reply_* function and returning its
 * result (MHD_NO only when not even an error can be queued). */
#ifndef AFLO_API_REPLY_H
#define AFLO_API_REPLY_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/stat.h>

#include <cjson/cJSON.h>
#include <microhttpd.h>

#include "api_internal.h"
#include "store.h"

/* ---- replies (each queues the response and returns MHD's verdict) -------- */

enum MHD_Result reply_json(api_req *r, unsigned status, cJSON *body);     /* takes body */
enum MHD_Result reply_json_text(api_req *r, unsigned status, char *text); /* takes text */
/* reply_json with a Location header (NULL: none). */
enum MHD_Result reply_json_at(api_req *r, unsigned status, cJSON *body, const char *location);
enum MHD_Result reply_error(api_req *r, unsigned status, const char *code, const char *field,
                            const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The {"error": {...}} response itself, for replies that need extra headers. */
struct MHD_Response *api_error_response(const char *code, const char *field, const char *msg);
/* A store failure: NOT_FOUND -> 404, CONFLICT -> 409, INVALID -> 400, else 500. */
enum MHD_Result reply_store_error(api_req *r, store *st, const char *msg);
/* Queue resp (takes it) with status; adds the headers every response carries. */
enum MHD_Result reply_response(api_req *r, unsigned status, struct MHD_Response *resp);
/* 204 No Content. */
enum MHD_Result reply_empty(api_req *r, unsigned status);

/* ---- what goes into a reply ---------------------------------------------- */

/* s with every byte that is not part of valid UTF-8 replaced by U+FFFD, for
 * text that goes into JSON (which must be UTF-8) but may echo what a client
 * sent: paths, names, parser messages. malloc'd; NULL when out of memory. */
char *api_utf8_sanitize(const char *s);
/* Add an int64 as an exact JSON number (cJSON numbers are doubles, and FLOP
 * totals pass 2^53). */
cJSON *api_add_int(cJSON *obj, const char *key, int64_t v);
/* A unix-ms time, or null for STORE_TIME_NONE. */
cJSON *api_add_time(cJSON *obj, const char *key, int64_t ms);
/* The ETag of an open file (size, mtime, inode), quoted; request.h's
 * api_etag_matches compares a request's If-None-Match with it. */
void api_file_etag(const struct stat *st, char out[64]);

#endif
