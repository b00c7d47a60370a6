/* genpool.c — the generation pool (see genpool.h).
 *
 * Locks: the pool's mutex guards the queue, the running tasks and the
 * stopping flag; each task's mutex guards its end, its result and its SSE
 * buffer, and its condition variable (CLOCK_MONOTONIC) wakes the submitter
 * when either changes. The pool's lock is never taken while a task's is
 * held. A task's cancel flag is atomic: the generating thread reads it in
 * the token callback without a lock. */
#include "genpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "log.h"

#define MSG_MAX 1024

struct gen_task {
    /* the request, owned copies */
    char *key, *model, *adapter, *text;
    int32_t *ids;
    lmgen_request req;
    bool sse;

    pthread_mutex_t mu;
    pthread_cond_t cv;
    gen_end end;
    bool started; /* a token was generated */
    char msg[MSG_MAX];
    cJSON *result;
    char *buf; /* SSE bytes; [off, len) unread */
    size_t len, off, cap;
    bool oom; /* an SSE event could not be kept: the stream ends in error */

    atomic_bool cancel;
    atomic_int refs;
    gen_task *next; /* queue link */
};

struct gen_pool {
    pthread_mutex_t mu;
    pthread_cond_t work; /* a task was queued, or stopping */
    gen_task *head, *tail;
    int waiting;
    gen_task **running; /* concurrency slots, NULL when idle */
    int concurrency, queue;
    bool stopping;
    pthread_t *threads;
    int n_threads;
    predict_cache *cache;
    char *models_dir;
};

/* ---- tasks ---------------------------------------------------------------------- */

static void task_free(gen_task *t) {
    free(t->key);
    free(t->model);
    free(t->adapter);
    free(t->text);
    free(t->ids);
    free(t->buf);
    cJSON_Delete(t->result);
    pthread_mutex_destroy(&t->mu);
    pthread_cond_destroy(&t->cv);
    free(t);
}

void gen_task_release(gen_task *t) {
    if (t && atomic_fetch_sub(&t->refs, 1) == 1) task_free(t);
}

static char *dup_or_null(const char *s, bool *ok) {
    if (!s) return NULL;
    char *d = strdup(s);
    if (!d) *ok = false;
    return d;
}

static gen_task *task_new(const gen_task_spec *s) {
    gen_task *t = calloc(1, sizeof *t);
    if (!t) return NULL;
    pthread_mutex_init(&t->mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&t->cv, &ca);
    pthread_condattr_destroy(&ca);
    atomic_init(&t->refs, 2); /* the submitter's and the pool's */
    atomic_init(&t->cancel, false);
    bool ok = true;
    t->key = dup_or_null(s->key, &ok);
    t->model = dup_or_null(s->model, &ok);
    t->adapter = dup_or_null(s->adapter, &ok);
    t->text = dup_or_null(s->req.text, &ok);
    t->req = s->req;
    t->req.text = t->text;
    t->sse = s->sse;
    if (s->req.n_ids > 0) {
        t->ids = malloc((size_t)s->req.n_ids * sizeof *t->ids);
        if (t->ids)
            memcpy(t->ids, s->req.ids, (size_t)s->req.n_ids * sizeof *t->ids);
        else
            ok = false;
    }
    t->req.ids = t->ids;
    if (ok) return t;
    task_free(t);
    return NULL;
}

/* Append one SSE event (t->mu held). */
static void sse_event(gen_task *t, const char *event, const char *data) {
    size_t need = strlen(event) + strlen(data) + 18;
    if (t->len + need > t->cap && t->off > 0) {
        /* what was read is gone: move the unread part to the front */
        memmove(t->buf, t->buf + t->off, t->len - t->off);
        t->len -= t->off;
        t->off = 0;
    }
    if (t->len + need > t->cap) {
        size_t cap = t->cap ? t->cap : 4096;
        while (cap < t->len + need) cap *= 2;
        char *nb = realloc(t->buf, cap);
        if (!nb) {
            t->oom = true;
            return;
        }
        t->buf = nb;
        t->cap = cap;
    }
    t->len +=
        (size_t)snprintf(t->buf + t->len, t->cap - t->len, "event: %s\ndata: %s\n\n", event, data);
}

/* End the task (once); with streaming, its last event too. */
static void task_end(gen_task *t, gen_end end, cJSON *result, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void task_end(gen_task *t, gen_end end, cJSON *result, const char *fmt, ...) {
    char msg[MSG_MAX] = "";
    if (fmt) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(msg, sizeof msg, fmt, ap);
        va_end(ap);
    }
    char *data = NULL;
    if (t->sse) {
        if (result) {
            data = cJSON_PrintUnformatted(result);
        } else {
            cJSON *o = cJSON_CreateObject();
            if (o && cJSON_AddStringToObject(o, "error", msg)) data = cJSON_PrintUnformatted(o);
            cJSON_Delete(o);
        }
    }
    pthread_mutex_lock(&t->mu);
    if (t->end == GEN_END_NONE) {
        t->end = end;
        t->result = result;
        result = NULL;
        snprintf(t->msg, sizeof t->msg, "%s", msg);
        if (t->sse && data && !t->oom) sse_event(t, end == GEN_END_OK ? "done" : "error", data);
        if (t->sse && (!data || t->oom)) {
            /* the stream cannot say how it ended: cut it (an error) */
            t->oom = true;
        }
        pthread_cond_broadcast(&t->cv);
    }
    pthread_mutex_unlock(&t->mu);
    cJSON_Delete(result);
    free(data);
}

gen_end gen_task_wait(gen_task *t, int ms) {
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&t->mu);
    while (t->end == GEN_END_NONE && !(t->sse && t->off < t->len))
        if (pthread_cond_timedwait(&t->cv, &t->mu, &until) == ETIMEDOUT) break;
    gen_end e = t->end;
    pthread_mutex_unlock(&t->mu);
    return e;
}

bool gen_task_started(gen_task *t) {
    pthread_mutex_lock(&t->mu);
    bool s = t->started;
    pthread_mutex_unlock(&t->mu);
    return s;
}

size_t gen_task_read_sse(gen_task *t, char *buf, size_t cap) {
    pthread_mutex_lock(&t->mu);
    size_t n = t->len - t->off;
    if (n > cap) n = cap;
    memcpy(buf, t->buf + t->off, n);
    t->off += n;
    pthread_mutex_unlock(&t->mu);
    return n;
}

bool gen_task_stream_broken(gen_task *t) {
    pthread_mutex_lock(&t->mu);
    bool b = t->oom;
    pthread_mutex_unlock(&t->mu);
    return b;
}

const char *gen_task_message(gen_task *t) { return t->msg; } /* set before end is seen */

const cJSON *gen_task_result(gen_task *t) { return t->result; }

void gen_task_cancel(gen_task *t) { atomic_store(&t->cancel, true); }

/* ---- running a task --------------------------------------------------------------- */

static int on_token(void *user, int32_t id, const char *piece, int index) {
    gen_task *t = user;
    if (t->sse) {
        cJSON *o = cJSON_CreateObject();
        char *data = NULL;
        if (o &&
            (id >= 0 ? cJSON_AddNumberToObject(o, "id", id) : cJSON_AddNullToObject(o, "id")) &&
            (piece ? cJSON_AddStringToObject(o, "text", piece)
                   : cJSON_AddNullToObject(o, "text")) &&
            cJSON_AddNumberToObject(o, "index", index))
            data = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
        pthread_mutex_lock(&t->mu);
        if (data && !t->oom)
            sse_event(t, "token", data);
        else
            t->oom = true;
        t->started = true;
        pthread_cond_broadcast(&t->cv);
        pthread_mutex_unlock(&t->mu);
        free(data);
    } else if (index == 0) {
        pthread_mutex_lock(&t->mu);
        t->started = true;
        pthread_mutex_unlock(&t->mu);
    }
    return atomic_load(&t->cancel) ? 1 : 0;
}

static void run_task(gen_pool *p, gen_task *t) {
    if (atomic_load(&t->cancel)) {
        task_end(t, GEN_END_INTERNAL, NULL, "cancelled: the client left");
        return;
    }
    char err[MSG_MAX];
    predictor *pr = predict_cache_acquire_lm(p->cache, t->key, p->models_dir, t->model, t->adapter,
                                             err, sizeof err);
    if (!pr) {
        task_end(t, GEN_END_INTERNAL, NULL, "cannot load the model: %s", err);
        return;
    }
    lmgen_report rep;
    predict_status st;
    int rc = predictor_generate(pr, &t->req, on_token, t, &rep, &st, err, sizeof err);
    predict_cache_release(p->cache, pr);
    if (rc) {
        task_end(t, st == PREDICT_E_INPUT ? GEN_END_INPUT : GEN_END_INTERNAL, NULL, "%s", err);
        return;
    }
    cJSON *result = lmgen_report_json(&rep, false);
    lmgen_report_free(&rep);
    if (!result)
        task_end(t, GEN_END_INTERNAL, NULL, "out of memory");
    else
        task_end(t, GEN_END_OK, result, NULL);
}

static void *worker(void *arg) {
    gen_pool *p = arg;
    pthread_mutex_lock(&p->mu);
    int slot = -1;
    for (;;) {
        while (!p->head && !p->stopping) pthread_cond_wait(&p->work, &p->mu);
        if (!p->head) break; /* stopping, nothing queued */
        gen_task *t = p->head;
        p->head = t->next;
        if (!p->head) p->tail = NULL;
        p->waiting--;
        for (slot = 0; p->running[slot]; slot++) {}
        p->running[slot] = t;
        pthread_mutex_unlock(&p->mu);
        run_task(p, t);
        pthread_mutex_lock(&p->mu);
        p->running[slot] = NULL;
        pthread_mutex_unlock(&p->mu);
        gen_task_release(t);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

/* ---- the pool -------------------------------------------------------------------- */

gen_pool *gen_pool_new(int concurrency, int queue, predict_cache *cache, const char *models_dir,
                       char *err, size_t errlen) {
    if (concurrency < 1 || queue < 0) {
        snprintf(err, errlen, "generation: concurrency must be >= 1 and the queue >= 0");
        return NULL;
    }
    gen_pool *p = calloc(1, sizeof *p);
    if (!p || !(p->running = calloc((size_t)concurrency, sizeof *p->running)) ||
        !(p->threads = calloc((size_t)concurrency, sizeof *p->threads)) ||
        (models_dir && !(p->models_dir = strdup(models_dir)))) {
        if (p) {
            free(p->running);
            free(p->threads);
        }
        free(p);
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->work, NULL);
    p->concurrency = concurrency;
    p->queue = queue;
    p->cache = cache;
    for (; p->n_threads < concurrency; p->n_threads++) {
        int rc = pthread_create(&p->threads[p->n_threads], NULL, worker, p);
        if (rc) {
            snprintf(err, errlen, "generation: cannot start a thread: %s", strerror(rc));
            gen_pool_stop(p);
            gen_pool_free(p);
            return NULL;
        }
    }
    return p;
}

int gen_pool_queue_size(const gen_pool *p) { return p->queue; }

gen_submit_status gen_pool_submit(gen_pool *p, const gen_task_spec *spec, gen_task **out) {
    *out = NULL;
    pthread_mutex_lock(&p->mu);
    int busy = 0;
    for (int i = 0; i < p->concurrency; i++) busy += p->running[i] != NULL;
    gen_submit_status st = p->stopping                                      ? GEN_E_STOPPING
                           : p->waiting + busy >= p->concurrency + p->queue ? GEN_E_QUEUE_FULL
                                                                            : GEN_SUBMITTED;
    pthread_mutex_unlock(&p->mu);
    if (st != GEN_SUBMITTED) return st;
    gen_task *t = task_new(spec); /* outside the lock: copies */
    if (!t) return GEN_E_NOMEM;
    pthread_mutex_lock(&p->mu);
    /* checked again: the pool may have filled or begun stopping meanwhile */
    busy = 0;
    for (int i = 0; i < p->concurrency; i++) busy += p->running[i] != NULL;
    st = p->stopping                                      ? GEN_E_STOPPING
         : p->waiting + busy >= p->concurrency + p->queue ? GEN_E_QUEUE_FULL
                                                          : GEN_SUBMITTED;
    if (st == GEN_SUBMITTED) {
        if (p->tail)
            p->tail->next = t;
        else
            p->head = t;
        p->tail = t;
        p->waiting++;
        pthread_cond_signal(&p->work);
    }
    pthread_mutex_unlock(&p->mu);
    if (st != GEN_SUBMITTED) {
        task_free(t);
        return st;
    }
    *out = t;
    return GEN_SUBMITTED;
}

void gen_pool_stop(gen_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    gen_task *queued = p->head;
    p->head = p->tail = NULL;
    p->waiting = 0;
    for (int i = 0; i < p->concurrency; i++)
        if (p->running[i]) atomic_store(&p->running[i]->cancel, true);
    pthread_cond_broadcast(&p->work);
    pthread_mutex_unlock(&p->mu);
    while (queued) {
        gen_task *next = queued->next;
        task_end(queued, GEN_END_STOPPING, NULL,
                 "the server is stopping: the generation was not started");
        gen_task_release(queued);
        queued = next;
    }
    for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
    p->n_threads = 0;
}

void gen_pool_free(gen_pool *p) {
    if (!p) return;
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->work);
    free(p->running);
    free(p->threads);
    free(p->models_dir);
    free(p);
}
