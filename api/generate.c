/* generate.c — POST /jobs/{id}/generate and POST /models/{name}/generate.
 *
 * The body is {"prompt" | "messages" | "prompt_ids" (exactly one),
 * "max_new_tokens", "temperature", "top_p", "seed"}, every field checked
 * here, before any model is touched, with a 400 naming the field and its
 * limit. The job must have succeeded (else 409) and be a causal_lm job; the
 * model must be of a family that can generate (else 400). The request then
 * goes to the generation pool (genpool.h): refused with 503 and
 * Retry-After when `--generate-queue` requests already wait, or when the
 * server stops.
 *
 * This connection's thread (server.c: one per connection) waits for the
 * pool, waking every POLL_MS to see whether the client has left (the
 * socket reads end-of-file or hangs up: libmicrohttpd does not say while a
 * handler runs), and if so cancels the generation, which frees its slot
 * at the next token. A JSON request waits for the end and replies 200 with
 * the report, or the error (400 for what the request got wrong: a prompt
 * too long, ids outside the vocabulary, no chat template; 500 for the
 * server's failures). A request that accepts text/event-stream waits for
 * its first token (so a refused prompt still gets its 400), then streams:
 * `token` events {"id", "text", "index"} as they come, then `done` with the
 * JSON reply's fields, or `error` {"error"} when generation failed midway.
 * The token texts join to the reply's text; when the end of generation cut
 * a character short, a last token event with id null carries what the
 * decoder made of its bytes. */
#include "generate.h"

#include "api_internal.h"
#include "dbpool.h"
#include "genpool.h"
#include "handlers.h"
#include "log.h"
#include "model/family.h"
#include "reply.h"
#include "request.h"
#include "spec.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "base/json.h"

/* How often a waiting connection checks that its client is still there. */
#define POLL_MS 200
/* Suggested wait before retrying a request refused for a full queue. */
#define RETRY_AFTER_S "2"
/* Prompt ids a request may give (the model's positions bound it anyway). */
#define MAX_PROMPT_IDS 65536
/* Turns in messages. */
#define MAX_MESSAGES 256
/* Temperatures above this are noise: softmax(logits / 100) is nearly flat. */
#define MAX_TEMPERATURE 100.0
/* Seeds are JSON numbers: integers beyond 2^53 are not exact. */
#define MAX_SEED 9007199254740991.0
/* max_new_tokens when the request gives none (the CLI's default). */
#define DEFAULT_NEW_TOKENS 64

/* ---- the body ---------------------------------------------------------------- */

typedef struct {
    lmgen_request req;
    char *messages; /* the conversation as JSON text */
    int32_t *ids;
    const char *prompt_field; /* the field the prompt came in */
} gen_body;

static void gen_body_free(gen_body *b) {
    free(b->messages);
    free(b->ids);
}

static enum MHD_Result bad(api_req *r, const char *code, const char *field, const char *msg) {
    return reply_error(r, MHD_HTTP_BAD_REQUEST, code, field, "%s: %s", field, msg);
}

static bool is_integer(const cJSON *v, double lo, double hi) {
    return cJSON_IsNumber(v) && v->valuedouble == floor(v->valuedouble) && v->valuedouble >= lo &&
           v->valuedouble <= hi;
}

/* Parse and check the body; 0, or -1 after replying 400. */
static int parse_body(api_req *r, gen_body *b, enum MHD_Result *ret) {
    static const char *const known[] = {"prompt",      "messages", "prompt_ids", "max_new_tokens",
                                        "temperature", "top_p",    "seed"};
    char msg[512];
    memset(b, 0, sizeof *b);
    b->req.gp = gen_params_default();
    cJSON *body = cJSON_ParseWithLength(r->body, r->body_len);
    int rc = -1;
    if (!cJSON_IsObject(body)) {
        *ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_json", NULL,
                           "the body must be a JSON object: {\"prompt\": \"...\", "
                           "\"max_new_tokens\": 64, ...}");
        goto out;
    }
    for (const cJSON *k = body->child; k; k = k->next) {
        bool ok = false;
        for (size_t i = 0; i < sizeof known / sizeof *known; i++)
            ok |= !strcmp(k->string, known[i]);
        if (!ok) {
            char field[64];
            snprintf(field, sizeof field, "%.60s", k->string);
            *ret = bad(r, "unknown_field", field,
                       "unknown field (a generation request has prompt, messages or prompt_ids, "
                       "and max_new_tokens, temperature, top_p, seed)");
            goto out;
        }
    }
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(body, "prompt");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(body, "messages");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(body, "prompt_ids");
    int given = !!prompt + !!messages + !!ids;
    if (given != 1) {
        *ret = bad(r, given ? "conflicting_fields" : "missing_field",
                   given ? (ids ? "prompt_ids" : "messages") : "prompt",
                   given ? "give exactly one of prompt, messages and prompt_ids"
                         : "one of prompt (text), messages (a conversation) or prompt_ids is "
                           "required");
        goto out;
    }
    if (prompt) {
        b->prompt_field = "prompt";
        if (!cJSON_IsString(prompt)) {
            *ret = bad(r, "wrong_type", "prompt", "expected a string");
            goto out;
        }
        if (!json_utf8_valid(prompt->valuestring, strlen(prompt->valuestring))) {
            *ret = bad(r, "invalid_value", "prompt", "not valid UTF-8");
            goto out;
        }
        b->req.kind = LMGEN_PROMPT_TEXT;
        b->req.text = prompt->valuestring; /* replaced by a copy below */
    } else if (messages) {
        b->prompt_field = "messages";
        int n = cJSON_IsArray(messages) ? cJSON_GetArraySize(messages) : -1;
        if (n < 1 || n > MAX_MESSAGES) {
            snprintf(msg, sizeof msg,
                     "expected an array of 1 to %d messages {\"role\", \"content\"}, got %s",
                     MAX_MESSAGES,
                     n < 0    ? "another type"
                     : n == 0 ? "none"
                              : "more");
            *ret = bad(r, n < 0 ? "wrong_type" : "out_of_range", "messages", msg);
            goto out;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *m = cJSON_GetArrayItem(messages, i);
            char field[64];
            const char *bad_key =
                !cJSON_IsObject(m)                                                ? ""
                : !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "role"))    ? ".role"
                : !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(m, "content")) ? ".content"
                                                                                  : NULL;
            if (bad_key) {
                snprintf(field, sizeof field, "messages[%d]%s", i, bad_key);
                *ret = bad(r, "wrong_type", field,
                           bad_key[0] ? "expected a string"
                                      : "expected an object {\"role\", \"content\"}");
                goto out;
            }
        }
        if (!(b->messages = cJSON_PrintUnformatted(messages))) {
            *ret =
                reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
            goto out;
        }
        b->req.kind = LMGEN_PROMPT_MESSAGES;
        b->req.text = b->messages;
    } else {
        b->prompt_field = "prompt_ids";
        int n = cJSON_IsArray(ids) ? cJSON_GetArraySize(ids) : -1;
        if (n < 1 || n > MAX_PROMPT_IDS) {
            snprintf(msg, sizeof msg, "expected an array of 1 to %d token ids", MAX_PROMPT_IDS);
            *ret = bad(r, n < 0 ? "wrong_type" : "out_of_range", "prompt_ids", msg);
            goto out;
        }
        if (!(b->ids = malloc((size_t)n * sizeof *b->ids))) {
            *ret =
                reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
            goto out;
        }
        for (int i = 0; i < n; i++) {
            const cJSON *v = cJSON_GetArrayItem(ids, i);
            if (!is_integer(v, 0, INT32_MAX)) {
                char field[32];
                snprintf(field, sizeof field, "prompt_ids[%d]", i);
                snprintf(msg, sizeof msg, "expected a token id, an integer from 0 to %d",
                         INT32_MAX);
                *ret = bad(r, "invalid_value", field, msg);
                goto out;
            }
            b->ids[i] = (int32_t)v->valuedouble;
        }
        b->req.kind = LMGEN_PROMPT_IDS;
        b->req.ids = b->ids;
        b->req.n_ids = n;
    }
    int max = r->srv->generate_max_tokens;
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(body, "max_new_tokens");
    b->req.gp.max_new_tokens = DEFAULT_NEW_TOKENS < max ? DEFAULT_NEW_TOKENS : max;
    if (v && !is_integer(v, 0, max)) {
        snprintf(msg, sizeof msg,
                 "expected an integer from 0 to %d (this server's limit, --generate-max-tokens)",
                 max);
        *ret = bad(r, "out_of_range", "max_new_tokens", msg);
        goto out;
    }
    if (v) b->req.gp.max_new_tokens = (int)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(body, "temperature");
    if (v && !(cJSON_IsNumber(v) && v->valuedouble >= 0 && v->valuedouble <= MAX_TEMPERATURE)) {
        snprintf(msg, sizeof msg, "expected a number from 0 (greedy) to %g", MAX_TEMPERATURE);
        *ret = bad(r, "out_of_range", "temperature", msg);
        goto out;
    }
    if (v) b->req.gp.temperature = (float)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(body, "top_p");
    if (v && !(cJSON_IsNumber(v) && v->valuedouble > 0 && v->valuedouble <= 1)) {
        *ret = bad(r, "out_of_range", "top_p", "expected a number greater than 0, at most 1");
        goto out;
    }
    if (v) b->req.gp.top_p = (float)v->valuedouble;
    v = cJSON_GetObjectItemCaseSensitive(body, "seed");
    if (v && !is_integer(v, 0, MAX_SEED)) {
        snprintf(msg, sizeof msg, "expected an integer from 0 to %.0f", MAX_SEED);
        *ret = bad(r, "out_of_range", "seed", msg);
        goto out;
    }
    if (v) b->req.gp.seed = (uint64_t)v->valuedouble;
    if (b->req.kind == LMGEN_PROMPT_TEXT && !(b->messages = strdup(b->req.text))) {
        *ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
        goto out;
    }
    if (b->req.kind == LMGEN_PROMPT_TEXT) b->req.text = b->messages; /* outlives body */
    rc = 0;
out:
    cJSON_Delete(body);
    if (rc) gen_body_free(b);
    return rc;
}

/* ---- waiting for the pool ------------------------------------------------------ */

/* Whether the client has closed its end: libmicrohttpd does not look while
 * a handler or a stream's reader runs. End-of-file or a hang-up on the
 * socket; bytes (a pipelined request) are not a departure. */
static bool client_gone(struct MHD_Connection *c) {
    const union MHD_ConnectionInfo *ci =
        MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!ci) return false;
    struct pollfd pfd = {.fd = ci->connect_fd, .events = POLLIN | POLLRDHUP};
    if (poll(&pfd, 1, 0) <= 0) return false;
    if (pfd.revents & (POLLHUP | POLLERR | POLLRDHUP)) return true;
    if (!(pfd.revents & POLLIN)) return false;
    char ch;
    ssize_t n = recv(ci->connect_fd, &ch, 1, MSG_PEEK | MSG_DONTWAIT);
    return n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR);
}

/* A streamed generation counts as one of the server's SSE clients, so
 * api_stop lets it send its last events ("done", finish "stopped") before
 * the connections close. */
typedef struct {
    api_server *srv;
    struct MHD_Connection *conn;
    gen_task *t;
    int64_t last_sent_ms;
} gen_stream;

static ssize_t stream_read(void *cls, uint64_t pos, char *buf, size_t max) {
    (void)pos;
    gen_stream *gs = cls;
    for (;;) {
        gen_end e = gen_task_wait(gs->t, POLL_MS);
        size_t n = gen_task_read_sse(gs->t, buf, max);
        if (gen_task_stream_broken(gs->t)) return MHD_CONTENT_READER_END_WITH_ERROR;
        if (n) {
            gs->last_sent_ms = api_mono_ms();
            return (ssize_t)n;
        }
        if (e != GEN_END_NONE) return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(gs->conn)) {
            gen_task_cancel(gs->t);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        if (api_mono_ms() - gs->last_sent_ms >= API_SSE_HEARTBEAT_MS) {
            static const char beat[] = ": generating\n\n";
            size_t k = sizeof beat - 1 < max ? sizeof beat - 1 : max;
            memcpy(buf, beat, k);
            gs->last_sent_ms = api_mono_ms();
            return (ssize_t)k;
        }
    }
}

static void stream_free(void *cls) {
    gen_stream *gs = cls;
    gen_task_cancel(gs->t); /* a no-op once it ended */
    gen_task_release(gs->t);
    api_server *srv = gs->srv;
    free(gs);
    pthread_mutex_lock(&srv->ev_mu); /* api_stop may be waiting for the last one */
    atomic_fetch_sub(&srv->sse_clients, 1);
    pthread_cond_broadcast(&srv->ev_cv);
    pthread_mutex_unlock(&srv->ev_mu);
}

/* The task ended before streaming (or a JSON request ended): its reply. */
static enum MHD_Result reply_end(api_req *r, gen_task *t, gen_end e, const char *field) {
    switch (e) {
    case GEN_END_OK: return reply_json(r, MHD_HTTP_OK, cJSON_Duplicate(gen_task_result(t), true));
    case GEN_END_INPUT:
        return reply_error(r, MHD_HTTP_BAD_REQUEST, "invalid_value", field, "%s: %s", field,
                           gen_task_message(t));
    case GEN_END_STOPPING:
        return reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping", NULL, "%s",
                           gen_task_message(t));
    default:
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "generation: %s",
                           gen_task_message(t));
    }
}

static bool wants_sse(api_req *r) {
    const char *accept = api_header(r, MHD_HTTP_HEADER_ACCEPT);
    return accept && strstr(accept, "text/event-stream") != NULL;
}

/* Queue the request and answer it: JSON once done, or a stream once the
 * first token came. */
static enum MHD_Result run(api_req *r, const gen_body *b, const char *key, const char *model,
                           const char *adapter) {
    bool sse = wants_sse(r);
    gen_task_spec spec = {
        .key = key, .model = model, .adapter = adapter, .req = b->req, .sse = sse};
    gen_task *t;
    gen_submit_status st = gen_pool_submit(r->srv->gen, &spec, &t);
    if (st == GEN_E_QUEUE_FULL) {
        char msg[256];
        snprintf(msg, sizeof msg,
                 "the generation queue is full (%d waiting, the limit of --generate-queue, "
                 "behind %d running): retry later",
                 gen_pool_queue_size(r->srv->gen), r->srv->generate_concurrency);
        struct MHD_Response *resp = api_error_response("queue_full", NULL, msg);
        if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_S);
        return reply_response(r, MHD_HTTP_SERVICE_UNAVAILABLE, resp);
    }
    if (st == GEN_E_STOPPING)
        return reply_error(r, MHD_HTTP_SERVICE_UNAVAILABLE, "stopping", NULL,
                           "the server is stopping: no new generation starts");
    if (st != GEN_SUBMITTED)
        return reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "internal", NULL, "out of memory");
    gen_end e;
    while ((e = gen_task_wait(t, POLL_MS)) == GEN_END_NONE && !(sse && gen_task_started(t)))
        if (client_gone(r->conn)) {
            gen_task_cancel(t);
            gen_task_release(t);
            return MHD_NO; /* nobody to answer: close */
        }
    if (!sse || e == GEN_END_INPUT || e == GEN_END_STOPPING ||
        (e == GEN_END_INTERNAL && !gen_task_started(t))) {
        enum MHD_Result ret = reply_end(r, t, e, b->prompt_field);
        gen_task_release(t);
        return ret;
    }
    gen_stream *gs = calloc(1, sizeof *gs);
    if (!gs) {
        gen_task_cancel(t);
        gen_task_release(t);
        return MHD_NO;
    }
    gs->srv = r->srv;
    gs->conn = r->conn;
    gs->t = t;
    gs->last_sent_ms = api_mono_ms();
    atomic_fetch_add(&r->srv->sse_clients, 1);
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, stream_read, gs, stream_free);
    if (!resp) {
        stream_free(gs);
        return MHD_NO;
    }
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(resp, "X-Accel-Buffering", "no");
    return reply_response(r, MHD_HTTP_OK, resp);
}

/* ---- the routes ------------------------------------------------------------------ */

enum MHD_Result h_job_generate(api_req *r) {
    enum MHD_Result ret = MHD_YES;
    gen_body b;
    if (parse_body(r, &b, &ret) != 0) return ret;
    aflo_job_spec spec;
    memset(&spec, 0, sizeof spec);
    store *st = api_store(r);
    if (!st) goto out;
    if (api_succeeded_job_spec(r, st, "generation needs", &spec, &ret) != 0) goto out;
    if (spec.task != TASK_CAUSAL_LM) {
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "wrong_task", "task",
                          "job %s was trained for task %s: only causal_lm jobs generate text "
                          "(POST /jobs/{id}/predict serves the others)",
                          r->id, spec_task_name(spec.task));
        goto out;
    }
    char adapter[PATH_MAX];
    snprintf(adapter, sizeof adapter, "%s/%s/adapter/adapter.safetensors", r->srv->jobs_dir, r->id);
    if (access(adapter, F_OK) != 0) {
        ret = reply_error(r, MHD_HTTP_INTERNAL_SERVER_ERROR, "adapter_missing", NULL,
                          "job %s has succeeded but its adapter is missing on the server (%s)",
                          r->id, strerror(errno));
        goto out;
    }
    ret = run(r, &b, r->id, spec.model, adapter);
out:
    spec_free(&spec);
    gen_body_free(&b);
    return ret;
}

enum MHD_Result h_model_generate(api_req *r) {
    enum MHD_Result ret = MHD_YES;
    gen_body b;
    if (parse_body(r, &b, &ret) != 0) return ret;
    char err[1024], key[sizeof r->param + 8];
    api_model_info mi;
    if (api_model_lookup(r->srv, r->param, false, &mi, err, sizeof err) != 0) {
        ret = reply_error(r, MHD_HTTP_NOT_FOUND, "not_found", "name", "%s", err);
        goto out;
    }
    const aflo_family *fam = mi.described ? family_for_model_type(mi.architecture, NULL) : NULL;
    if (!fam || !(fam->tasks & (1u << TASK_CAUSAL_LM))) {
        ret = reply_error(r, MHD_HTTP_BAD_REQUEST, "wrong_task", "task",
                          "model %s (%s) does not support task causal_lm: only causal language "
                          "models (the LLaMA family) generate text",
                          mi.name, mi.described ? mi.architecture : "no readable config.json");
        goto out;
    }
    snprintf(key, sizeof key, "model:%s", mi.name);
    ret = run(r, &b, key, mi.name, NULL);
out:
    gen_body_free(&b);
    return ret;
}
