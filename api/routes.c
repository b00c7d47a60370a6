/* routes.c — the route table, and everything decided from it before a
 * handler runs: which row a request matches (else 404, or 405 listing the
 * allowed methods), its bearer token (401), its {id} (400), the body rules
 * (413, 415, the JSON nesting bound), and the call into the handler.
 *
 * server.c's access handler drives a request through the three entry points
 * of routes.h: api_route_begin once the headers are in (match, token, id,
 * then what can be refused from the headers alone: a declared body too
 * large, a body on a route that takes none, JSON sent as another type; an
 * upload's begin hook), api_route_body for each chunk of the body (buffered
 * for JSON routes, bounded by max_json_body; handed to the upload hooks of
 * datasets.c for POST /datasets; refused on routes without a body, which is
 * how a chunked body is caught), and api_route_dispatch when it has ended
 * (a JSON body must be there and nest at most max_json_depth deep — counted
 * before any parser sees it, so deep documents never recurse — then the
 * handler runs, and one that returns without replying gets a 500).
 *
 * The token is compared as SHA-256 digests, so the time taken depends on
 * neither its content nor its length.
 *
 * The table names every handler, so this file sits above them: handlers
 * never call into it. The one edge back is data: GET /metrics (info.c) reads
 * the rows to label its per-route counts. */
#include "routes.h"

#include "generate.h"
#include "handlers.h"
#include "reply.h"
#include "request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* ---- the route table ---------------------------------------------------------
 * One row per method + path. Patterns are matched segment by segment; {id}
 * must be a 16-hex id (checked before any handler runs); ROUTE_TAIL lets the
 * last parameter span several segments. The order matters only for the
 * static catch-all, which is last. tests/test_api.c checks that these rows
 * and the paths of api/openapi.json are the same set. */
const api_route api_routes[] = {
    {"GET", "/healthz", h_healthz, BODY_NONE, 0},
    {"GET", "/metrics", h_metrics, BODY_NONE, 0},
    {"GET", "/openapi.json", h_openapi, BODY_NONE, 0},
    {"GET", "/models", h_models, BODY_NONE, 0},
    {"POST", "/models/{name}/generate", h_model_generate, BODY_JSON, ROUTE_AUTH},
    {"POST", "/datasets", h_datasets_create, BODY_UPLOAD, ROUTE_AUTH},
    {"GET", "/datasets", h_datasets_list, BODY_NONE, 0},
    {"GET", "/datasets/{id}", h_dataset_get, BODY_NONE, 0},
    {"DELETE", "/datasets/{id}", h_dataset_delete, BODY_NONE, ROUTE_AUTH},
    {"POST", "/jobs", h_jobs_create, BODY_JSON, ROUTE_AUTH},
    {"GET", "/jobs", h_jobs_list, BODY_NONE, 0},
    {"GET", "/jobs/{id}", h_job_get, BODY_NONE, 0},
    {"POST", "/jobs/{id}/cancel", h_job_cancel, BODY_NONE, ROUTE_AUTH},
    {"POST", "/jobs/{id}/retry", h_job_retry, BODY_NONE, ROUTE_AUTH},
    {"GET", "/jobs/{id}/events", h_job_events, BODY_NONE, 0},
    {"GET", "/jobs/{id}/freezing", h_job_freezing, BODY_NONE, 0},
    {"GET", "/jobs/{id}/adapter/{file}", h_job_adapter, BODY_NONE, ROUTE_AUTH | ROUTE_TAIL},
    {"POST", "/jobs/{id}/predict", h_job_predict, BODY_JSON, ROUTE_AUTH},
    {"POST", "/jobs/{id}/generate", h_job_generate, BODY_JSON, ROUTE_AUTH},
    {"GET", "/", h_static, BODY_NONE, 0},
    {"GET", "/{path}", h_static, BODY_NONE, ROUTE_TAIL},
};
const int api_route_count = (int)(sizeof api_routes / sizeof api_routes[0]);

bool api_is_id(const char *s) {
    size_t n = 0;
    for (; s[n]; n++)
        if (!((s[n] >= '0' && s[n] <= '9') || (s[n] >= 'a' && s[n] <= 'f'))) return false;
    return n == STORE_ID_LEN;
}

/* ---- routing ---------------------------------------------------------------- */

/* Whether url matches rt's pattern; on a match the {id} text and the other
 * parameter go to id_out / param_out (truncation makes the match fail). */
static bool route_match(const api_route *rt, const char *url, char *id_out, size_t id_cap,
                        char *param_out, size_t param_cap) {
    const char *p = rt->pattern, *u = url;
    id_out[0] = param_out[0] = '\0';
    if (strcmp(p, "/") == 0) return strcmp(u, "/") == 0;
    while (*p) {
        if (*p != '/' || *u != '/') return false;
        p++;
        u++;
        const char *pe = strchr(p, '/');
        size_t plen = pe ? (size_t)(pe - p) : strlen(p);
        const char *ue = strchr(u, '/');
        size_t ulen = ue ? (size_t)(ue - u) : strlen(u);
        if (plen >= 2 && p[0] == '{' && p[plen - 1] == '}') {
            bool is_id = plen == 4 && memcmp(p, "{id}", 4) == 0;
            bool tail = !pe && (rt->flags & ROUTE_TAIL);
            if (tail) ulen = strlen(u);
            if (ulen == 0) return false;
            char *dst = is_id ? id_out : param_out;
            size_t cap = is_id ? id_cap : param_cap;
            if (ulen >= cap)
                ulen = cap - 1; /* an over-long id still matches; it fails validation */
            memcpy(dst, u, ulen);
            dst[ulen] = '\0';
            if (!is_id && strlen(u) >= param_cap && tail) return false;
            u += tail ? strlen(u) : (ue ? (size_t)(ue - u) : strlen(u));
        } else {
            if (plen != ulen || memcmp(p, u, plen) != 0) return false;
            u += ulen;
        }
        p += plen;
    }
    return *u == '\0';
}

static bool method_is(const char *method, const char *route_method) {
    if (strcmp(method, route_method) == 0) return true;
    return strcmp(method, MHD_HTTP_METHOD_HEAD) == 0 && strcmp(route_method, "GET") == 0;
}

/* ---- authentication ---------------------------------------------------------- */

/* Compare digests, not the strings: the time taken depends on neither the
 * token's content nor its length. */
static bool token_ok(api_server *s, const char *given, size_t len) {
    sha256_ctx c;
    uint8_t d[SHA256_DIGEST_LEN];
    sha256_init(&c);
    sha256_update(&c, given, len);
    sha256_final(&c, d);
    volatile uint8_t diff = 0;
    for (int i = 0; i < SHA256_DIGEST_LEN; i++) diff |= (uint8_t)(d[i] ^ s->token_digest[i]);
    return diff == 0;
}

static enum MHD_Result check_auth(api_req *r, bool *ok) {
    *ok = true;
    if (!r->srv->has_token || !(r->route->flags & ROUTE_AUTH)) return MHD_YES;
    *ok = false;
    const char *h = api_header(r, MHD_HTTP_HEADER_AUTHORIZATION);
    if (!h)
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "this server requires an API token for %s %s: send the header "
                           "'Authorization: Bearer <token>'",
                           r->route->method, r->route->pattern);
    if (strncasecmp(h, "Bearer ", 7) != 0)
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "the Authorization header must use the Bearer scheme: "
                           "'Authorization: Bearer <token>'");
    const char *t = h + 7;
    while (*t == ' ') t++;
    size_t n = strlen(t);
    while (n && (t[n - 1] == ' ' || t[n - 1] == '\t')) n--;
    if (!token_ok(r->srv, t, n))
        return reply_error(r, MHD_HTTP_UNAUTHORIZED, "unauthorized", NULL,
                           "the bearer token is not valid for this server");
    *ok = true;
    return MHD_YES;
}

/* ---- request bodies ---------------------------------------------------------- */

static bool content_type_is(const char *ct, const char *want) {
    size_t n = strlen(want);
    if (strncasecmp(ct, want, n) != 0) return false;
    return ct[n] == '\0' || ct[n] == ';' || ct[n] == ' ';
}

/* Deepest nesting of objects and arrays in a JSON text (strings skipped);
 * cheap enough to run before any parser, so deep documents never recurse. */
static int json_depth(const char *s, size_t len, int stop_at) {
    int depth = 0, max = 0;
    bool in_str = false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (in_str) {
            if (c == '\\')
                i++;
            else if (c == '"')
                in_str = false;
        } else if (c == '"') {
            in_str = true;
        } else if (c == '{' || c == '[') {
            if (++depth > max && (max = depth) > stop_at) return max;
        } else if (c == '}' || c == ']') {
            depth--;
        }
    }
    return max;
}

static size_t body_limit(const api_req *r) {
    return r->route->body == BODY_UPLOAD ? r->srv->max_upload : r->srv->max_json_body;
}

static enum MHD_Result reply_too_large(api_req *r) {
    size_t lim = body_limit(r);
    return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "too_large", NULL,
                       "the request body is larger than the limit of %zu bytes%s", lim,
                       r->route->body == BODY_UPLOAD ? " for a dataset upload" : "");
}

/* A route without a body refuses one rather than drop it unread: the client
 * meant something by it (413: its limit is 0 bytes). */
static enum MHD_Result reply_body_not_allowed(api_req *r) {
    return reply_error(r, MHD_HTTP_CONTENT_TOO_LARGE, "body_not_allowed", NULL,
                       "%s %s takes no request body; send it without one", r->route->method,
                       r->route->pattern);
}

/* After the headers: everything that can be refused before the body arrives. */
static enum MHD_Result begin_body(api_req *r) {
    const char *cl = api_header(r, MHD_HTTP_HEADER_CONTENT_LENGTH);
    int64_t declared;
    if (r->route->body == BODY_NONE) {
        /* Content-Length: 0 is no body; chunked ones are caught in body_chunk */
        if (cl && !(api_parse_int64(cl, &declared) && declared == 0))
            return reply_body_not_allowed(r);
        return MHD_YES;
    }
    if (cl && api_parse_int64(cl, &declared) && declared >= 0 && (uint64_t)declared > body_limit(r))
        return reply_too_large(r);
    if (r->route->body == BODY_JSON) {
        const char *ct = api_header(r, MHD_HTTP_HEADER_CONTENT_TYPE);
        if (ct && !content_type_is(ct, "application/json"))
            return reply_error(r, MHD_HTTP_UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type", NULL,
                               "the body must be JSON sent with 'Content-Type: "
                               "application/json', not '%.100s'",
                               ct);
    }
    if (r->route->body == BODY_UPLOAD) return datasets_upload_begin(r);
    return MHD_YES;
}

enum MHD_Result api_route_body(api_req *r, const char *data, size_t len) {
    if (r->route->body == BODY_UPLOAD) return datasets_upload_chunk(r, data, len);
    if (r->route->body == BODY_NONE) return reply_body_not_allowed(r); /* chunked: known only now */
    size_t lim = body_limit(r);
    if (len > lim - r->body_len) return reply_too_large(r);
    if (r->body_len + len + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + len + 1) cap *= 2;
        if (cap > lim + 1) cap = lim + 1;
        char *nb = realloc(r->body, cap);
        if (!nb) return MHD_NO;
        r->body = nb;
        r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return MHD_YES;
}

/* ---- matching a request, and calling its handler --------------------------- */

enum MHD_Result api_route_begin(api_req *r, const char *url) {
    char id[STORE_ID_SIZE + 8];
    char allow[128] = "";
    bool path_known = false;
    for (int i = 0; i < api_route_count; i++) {
        const api_route *rt = &api_routes[i];
        if (!route_match(rt, url, id, sizeof id, r->param, sizeof r->param)) continue;
        if (method_is(r->method, rt->method)) {
            r->route = rt;
            r->route_index = i;
            break;
        }
        path_known = true;
        if (!strstr(allow, rt->method)) {
            size_t n = strlen(allow);
            snprintf(allow + n, sizeof allow - n, "%s%s%s", n ? ", " : "", rt->method,
                     strcmp(rt->method, "GET") == 0 ? ", HEAD" : "");
        }
    }
    if (!r->route) {
        if (path_known) {
            char msg[384];
            snprintf(msg, sizeof msg, "%.16s is not allowed on %.100s; allowed: %s", r->method, url,
                     allow);
            struct MHD_Response *resp = api_error_response("method_not_allowed", NULL, msg);
            if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_ALLOW, allow);
            return reply_response(r, MHD_HTTP_METHOD_NOT_ALLOWED, resp);
        }
        return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "no such route: %s %.200s",
                           r->method, url);
    }
    bool ok;
    enum MHD_Result ret = check_auth(r, &ok);
    if (!ok) return ret;
    if (strstr(r->route->pattern, "{id}")) {
        if (!api_is_id(id))
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_id", "id",
                               "'%.40s' is not a valid id (16 lowercase hexadecimal characters)",
                               id);
        memcpy(r->id, id, STORE_ID_SIZE);
    }
    return begin_body(r);
}

enum MHD_Result api_route_dispatch(api_req *r) {
    if (r->route->body == BODY_JSON) {
        if (r->body_len == 0)
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json", NULL,
                               "the request needs a JSON body");
        if (json_depth(r->body, r->body_len, r->srv->max_json_depth) > r->srv->max_json_depth)
            return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json", NULL,
                               "the JSON body nests deeper than %d levels", r->srv->max_json_depth);
    }
    enum MHD_Result ret = r->route->handler(r);
    if (ret == MHD_YES && !r->responded)
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL,
                           "the handler of %s %s did not answer", r->route->method,
                           r->route->pattern);
    return ret;
}
