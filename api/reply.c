/* reply.c — how a handler answers: the JSON, error and empty replies, the
 * headers every response carries, and the small helpers that build what goes
 * into a reply (exact JSON integers, times, UTF-8-safe echoes, a file's
 * ETag).
 *
 * Every reply goes through reply_response, which owns three rules. One reply
 * per request: a second one is a handler bug, logged and dropped, and the
 * first one stands. Every response carries X-Content-Type-Options: nosniff
 * (and a 401 its WWW-Authenticate challenge). And a reply decided while the
 * body is still arriving (too large, a failed upload write) cannot be queued
 * then — libmicrohttpd 0.9.75 refuses it — so it is kept in the request
 * (api_req.deferred), the rest of the body is dropped, and server.c queues it
 * once the body has ended.
 *
 * Errors are always {"error": {"code", "message", "field"?}}, as
 * api/openapi.json describes them; messages and fields may echo what a client
 * sent, cut at any byte, so both are made valid UTF-8 first
 * (api_utf8_sanitize). Server-side failures (5xx but 501) are logged at
 * error level here. JSON replies are never cached (Cache-Control: no-store);
 * responses of other kinds (downloads, the event stream, metrics text) are
 * built by their handlers and queued through reply_response.
 *
 * This file depends on nothing else in api/: handlers, routes.c and server.c
 * use it, never the other way round. */
#include "reply.h"

#include "base/json.h"
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ERR_MSG_MAX 1024

/* ---- replies ----------------------------------------------------------------- */

enum MHD_Result reply_response(api_req *r, unsigned status, struct MHD_Response *resp) {
    if (!resp) return MHD_NO;
    if (r->responded) {
        /* A handler bug: two replies. Keep the first. */
        log_error("second reply (%u) to one request ignored", status);
        MHD_destroy_response(resp);
        return MHD_YES;
    }
    if (r->deferred) {
        MHD_destroy_response(resp); /* an error was already decided */
        return MHD_YES;
    }
    MHD_add_response_header(resp, "X-Content-Type-Options", "nosniff");
    if (status == MHD_HTTP_UNAUTHORIZED)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"aflorad\"");
    if (r->receiving) {
        /* MHD 0.9.75 refuses a response while the body is arriving: keep it,
         * drop the rest of the body, and queue it when the body has ended. */
        r->deferred = resp;
        r->deferred_status = status;
        r->discard = true;
        return MHD_YES;
    }
    enum MHD_Result ret = MHD_queue_response(r->conn, status, resp);
    MHD_destroy_response(resp);
    if (ret == MHD_YES) {
        r->responded = true;
        r->status = status;
    }
    return ret;
}

static enum MHD_Result reply_text_at(api_req *r, unsigned status, char *text,
                                     const char *location) {
    if (!text) return MHD_NO;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    if (location) MHD_add_response_header(resp, MHD_HTTP_HEADER_LOCATION, location);
    return reply_response(r, status, resp);
}

enum MHD_Result reply_json_text(api_req *r, unsigned status, char *text) {
    return reply_text_at(r, status, text, NULL);
}

enum MHD_Result reply_json_at(api_req *r, unsigned status, cJSON *body, const char *location) {
    if (!body)
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
    char *text = cJSON_PrintUnformatted(body);
    cJSON_Delete(body);
    if (!text) return MHD_NO;
    return reply_text_at(r, status, text, location);
}

enum MHD_Result reply_json(api_req *r, unsigned status, cJSON *body) {
    return reply_json_at(r, status, body, NULL);
}

struct MHD_Response *api_error_response(const char *code, const char *field, const char *msg) {
    /* Messages echo what clients sent (paths, ids, names), cut with %.Ns
     * maybe mid-character: the JSON must stay UTF-8 all the same. */
    char *safe_msg = api_utf8_sanitize(msg);
    char *safe_field = field && *field ? api_utf8_sanitize(field) : NULL;
    cJSON *root = cJSON_CreateObject(), *e = cJSON_AddObjectToObject(root, "error");
    bool ok = e && safe_msg && (!field || !*field || safe_field) &&
              cJSON_AddStringToObject(e, "code", code) &&
              cJSON_AddStringToObject(e, "message", safe_msg) &&
              (!safe_field || cJSON_AddStringToObject(e, "field", safe_field));
    free(safe_msg);
    free(safe_field);
    if (!ok) {
        cJSON_Delete(root);
        return NULL;
    }
    char *text = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!text) return NULL;
    struct MHD_Response *resp =
        MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!resp) {
        free(text);
        return NULL;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "application/json");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    return resp;
}

enum MHD_Result reply_error(api_req *r, unsigned status, const char *code, const char *field,
                            const char *fmt, ...) {
    char msg[ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (status >= 500 && status != MHD_HTTP_NOT_IMPLEMENTED) log_error("%s: %s", code, msg);
    return reply_response(r, status, api_error_response(code, field, msg));
}

enum MHD_Result reply_store_error(api_req *r, store *st, const char *msg) {
    switch (store_last_error(st)) {
    case STORE_E_NOT_FOUND: return reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", NULL, "%s", msg);
    case STORE_E_CONFLICT: return reply_error(r, MHD_HTTP_CONFLICT, "conflict", NULL, "%s", msg);
    case STORE_E_INVALID:
        return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_request", NULL, "%s", msg);
    default:
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "database_error", NULL, "%s", msg);
    }
}

enum MHD_Result reply_empty(api_req *r, unsigned status) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    return reply_response(r, status, resp);
}

/* ---- what goes into a reply ------------------------------------------------- */

char *api_utf8_sanitize(const char *s) {
    static const char replacement[] = "\xef\xbf\xbd"; /* U+FFFD */
    size_t n = strlen(s);
    char *out = malloc(3 * n + 1); /* each bad byte grows to 3 */
    if (!out) return NULL;
    size_t o = 0;
    for (size_t i = 0; i < n;) {
        unsigned char c = (unsigned char)s[i];
        size_t len = c < 0x80 ? 1 : c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : c >= 0xc0 ? 2 : 0;
        if (len && i + len <= n && json_utf8_valid(s + i, len)) {
            memcpy(out + o, s + i, len);
            o += len;
            i += len;
        } else {
            memcpy(out + o, replacement, 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    return out;
}

cJSON *api_add_int(cJSON *obj, const char *key, int64_t v) {
    char buf[24];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    return cJSON_AddRawToObject(obj, key, buf);
}

cJSON *api_add_time(cJSON *obj, const char *key, int64_t ms) {
    return ms == STORE_TIME_NONE ? cJSON_AddNullToObject(obj, key) : api_add_int(obj, key, ms);
}

void api_file_etag(const struct stat *st, char out[64]) {
    /* Size, mtime (ns) and inode change whenever the file is replaced
     * (adapters and archives are written to a temp file and renamed). */
    snprintf(out, 64, "\"%llx-%llx-%llx\"", (unsigned long long)st->st_size,
             (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st->st_mtim.tv_nsec,
             (unsigned long long)st->st_ino);
}
