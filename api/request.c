/* request.c — what a handler reads from its request beyond the path: query
 * parameters, headers, strict integers, and whether If-None-Match names a
 * file's ETag.
 *
 * The path itself is routes.c's: by the time a handler runs, its {id} is
 * valid and in api_req.id and a tail parameter is decoded in api_req.param.
 * What is read here comes straight from libmicrohttpd (query values
 * percent-decoded) and is never trusted: integers are parsed strictly — an
 * optional '-' and digits, no '+', no spaces, no overflow — and a query
 * integer out of its range is answered with 400 naming the parameter, so a
 * handler only has to return when api_query_int says -1. */
#include "request.h"

#include "reply.h"

#include <string.h>

const char *api_query(api_req *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, key);
}

const char *api_header(api_req *r, const char *key) {
    return MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, key);
}

/* Strict decimal: digits only (an optional '-' when min < 0), no overflow. */
bool api_parse_int64(const char *s, int64_t *out) {
    bool neg = false;
    if (*s == '-') {
        neg = true;
        s++;
    }
    if (!*s) return false;
    uint64_t v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9') return false;
        if (v > (UINT64_MAX - 9) / 10) return false;
        v = v * 10 + (uint64_t)(*s - '0');
    }
    if (v > (uint64_t)INT64_MAX) return false;
    *out = neg ? -(int64_t)v : (int64_t)v;
    return true;
}

int api_query_int(api_req *r, const char *key, int64_t def, int64_t min, int64_t max,
                  int64_t *out) {
    const char *v = api_query(r, key);
    if (!v) {
        *out = def;
        return 0;
    }
    int64_t x;
    if (!api_parse_int64(v, &x) || x < min || x > max) {
        reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_parameter", key,
                    "%s must be an integer from %lld to %lld", key, (long long)min, (long long)max);
        return -1;
    }
    *out = x;
    return 0;
}

bool api_etag_matches(api_req *r, const char *etag) {
    const char *inm = api_header(r, MHD_HTTP_HEADER_IF_NONE_MATCH);
    if (!inm) return false;
    size_t el = strlen(etag);
    /* A comma-separated list of (possibly weak, W/"...") tags, or "*". */
    const char *p = inm;
    while (*p) {
        while (*p == ' ' || *p == '\t' || *p == ',') p++;
        if (!*p) break;
        const char *end = p;
        while (*end && *end != ',') end++;
        const char *q = end;
        while (q > p && (q[-1] == ' ' || q[-1] == '\t')) q--;
        if (q - p >= 2 && p[0] == 'W' && p[1] == '/') p += 2;
        if ((q - p == 1 && *p == '*') || ((size_t)(q - p) == el && memcmp(p, etag, el) == 0))
            return true;
        p = end;
    }
    return false;
}
