/* genpool.h — the generation requests' own small pool of threads, so a
 * generation never runs on an HTTP thread and never competes without bound
 * with training: at most `concurrency` generate at once, at most `queue`
 * more wait, and anything beyond is refused at once (the caller answers
 * 503). Used by generate.c; knows nothing of HTTP.
 *
 * A task is shared by its submitter (an HTTP connection's thread) and the
 * pool, each holding a reference. A pool thread takes the task's model from
 * the predict cache (predict.h: a base model "model:<name>", or a job's
 * adapter on its model), generates, and appends each token — as a
 * server-sent `token` event when the submitter streams — to the task, then
 * its end (the reply JSON, or an error); the submitter waits on the task
 * (gen_task_wait) and reads what has come. gen_task_cancel (the client
 * left) stops a task: dropped if still queued, stopped at its next token if
 * running (finish "stopped"). gen_pool_stop (the server stops) fails every
 * queued task with "stopping", stops the running ones and joins the
 * threads. */
#ifndef AFLO_API_GENPOOL_H
#define AFLO_API_GENPOOL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cjson/cJSON.h>

#include "predict.h"

typedef struct gen_pool gen_pool;
typedef struct gen_task gen_task;

/* NULL with a message (threads that cannot start, out of memory). */
gen_pool *gen_pool_new(int concurrency, int queue, predict_cache *cache, const char *models_dir,
                       char *err, size_t errlen);
/* Fail the queued tasks ("stopping"), stop the running ones, join. */
void gen_pool_stop(gen_pool *p);
/* After gen_pool_stop (or never started). NULL is fine. */
void gen_pool_free(gen_pool *p);
int gen_pool_queue_size(const gen_pool *p);

/* What a task does: generate for req (its texts and ids are copied) with
 * model and the native adapter file (NULL: the base model), the cache entry
 * named key. With sse, each token is kept as an SSE event for the
 * submitter to stream. */
typedef struct {
    const char *key, *model, *adapter;
    lmgen_request req;
    bool sse;
} gen_task_spec;

typedef enum {
    GEN_SUBMITTED = 0,
    GEN_E_QUEUE_FULL, /* `queue` tasks wait already */
    GEN_E_STOPPING,   /* the pool is stopping */
    GEN_E_NOMEM
} gen_submit_status;

/* Queue a task; *out gets the submitter's reference (gen_task_release). */
gen_submit_status gen_pool_submit(gen_pool *p, const gen_task_spec *spec, gen_task **out);

/* How a task ended. */
typedef enum {
    GEN_END_NONE = 0, /* not yet */
    GEN_END_OK,       /* result set */
    GEN_END_INPUT,    /* the request is at fault (message) */
    GEN_END_INTERNAL, /* the server is (message) */
    GEN_END_STOPPING  /* dropped from the queue: the server stops */
} gen_end;

/* Wait up to ms for news: the task ended, or (with streaming) it has
 * unread SSE bytes. Returns the end (GEN_END_NONE while it runs). */
gen_end gen_task_wait(gen_task *t, int ms);
/* Whether a token was generated (the prompt was accepted). */
bool gen_task_started(gen_task *t);
/* Copy up to cap unread SSE bytes into buf; returns how many. */
size_t gen_task_read_sse(gen_task *t, char *buf, size_t cap);
/* Whether an SSE event could not be kept (out of memory): the stream must
 * end in error rather than skip it. */
bool gen_task_stream_broken(gen_task *t);
/* The end's message (GEN_END_INPUT / INTERNAL / STOPPING). */
const char *gen_task_message(gen_task *t);
/* The reply JSON (GEN_END_OK), owned by the task. */
const cJSON *gen_task_result(gen_task *t);
/* The client is gone: stop the task at its next token, or drop it. */
void gen_task_cancel(gen_task *t);
void gen_task_release(gen_task *t);

#endif
