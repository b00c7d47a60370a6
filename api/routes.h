/* routes.h — the route table and the way a request goes through it
 * (routes.c). Used by server.c, which drives requests, and by GET /metrics,
 * which labels its counts with the rows. */
#ifndef AFLO_API_ROUTES_H
#define AFLO_API_ROUTES_H

#include <stdbool.h>
#include <stddef.h>

#include <microhttpd.h>

#include "api_internal.h"

typedef enum {
    BODY_NONE = 0, /* a body is refused with 413 body_not_allowed (it would be
                          ignored otherwise); Content-Length: 0 is fine */
    BODY_JSON,     /* buffered up to max_json_body, Content-Type application/json */
    BODY_UPLOAD    /* streamed by the handler's upload hooks (POST /datasets) */
} api_body_kind;

#define ROUTE_AUTH 1u /* needs the bearer token when one is configured */
#define ROUTE_TAIL 2u /* the last {param} takes the rest of the path, slashes too */

typedef enum MHD_Result (*api_handler)(api_req *r);

struct api_route {
    const char *method;  /* "GET", "POST", "DELETE" (GET also answers HEAD) */
    const char *pattern; /* "/jobs/{id}/events": literal segments and {params} */
    api_handler handler;
    api_body_kind body;
    unsigned flags;
};

extern const api_route api_routes[];
extern const int api_route_count;

/* Whether s is a valid {id}: 16 lowercase hexadecimal characters. */
bool api_is_id(const char *s);

/* The three steps of a request, in the order libmicrohttpd gives them (see
 * routes.c). Each may reply; each returns MHD's verdict. */
enum MHD_Result api_route_begin(api_req *r, const char *url); /* headers in */
enum MHD_Result api_route_body(api_req *r, const char *data, size_t len);
enum MHD_Result api_route_dispatch(api_req *r); /* body ended */

#endif
