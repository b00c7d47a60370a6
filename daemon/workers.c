/* workers.c — N threads that claim queued jobs and run them (see workers.h).
 *
 * Each worker owns one SQLite connection. A claimed job is run by job_run()
 * with callbacks that turn engine progress into events: step events are
 * buffered and written in one transaction per second (or per
 * STEP_BATCH_MAX steps), together with the job's progress columns; freeze
 * and eval events are written at once. The progress write also tells the
 * worker whether a cancel was requested, so a cancel from any process is
 * honoured within a second even without workers_cancel().
 *
 * Stopping: workers_stop() sets every running job's cancel flag; job_run()
 * then writes a checkpoint and returns, and the worker puts the job back in
 * the queue (store_job_release) — a clean stop does not count against it —
 * so the next start resumes it from that checkpoint. A kill -9 leaves jobs
 * "running" instead: the next start counts that as a crash
 * (store_requeue_running), requeues them, and they resume from their last
 * checkpoint. */
#include "workers.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "counters.h"
#include "fsutil.h"
#include "model/gemm.h"
#include "job.h"
#include "log.h"
#include "spec.h"
#include "store.h"

#define STEP_BATCH_MAX 64      /* step events per transaction at most */
#define STEP_BATCH_SECONDS 1.0 /* ... and at least one transaction a second */
#define IDLE_POLL_SECONDS 2    /* re-check the queue even without notify */

typedef struct worker worker;

struct workers {
    workers_config cfg;
    char *db_path, *data_dir, *models_dir;
    pthread_mutex_t mu;
    pthread_cond_t wake;
    bool stopping;
    int pending_notifies;
    worker *ws;
    workers_event_cb event_cb;
    void *event_ctx;
};

struct worker {
    workers *pool;
    pthread_t thread;
    bool started;
    store *db;
    /* the running job, guarded by pool->mu for id; flags are atomic */
    char job_id[STORE_ID_SIZE];
    atomic_int cancel; /* stop the engine (user cancel or shutdown) */
    atomic_int user_cancelled;
    /* step event batch */
    store_event_new batch[STEP_BATCH_MAX];
    char *payloads[STEP_BATCH_MAX];
    int nbatch;
    double last_flush;
    store_progress progress;
    bool io_failed;
    char io_err[512];
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Under the pool's lock, so the API cannot unregister and free its side
 * while a worker is inside the callback (the callback only takes its own
 * short lock). */
static void notify_events(worker *w) {
    workers *p = w->pool;
    pthread_mutex_lock(&p->mu);
    if (p->event_cb) p->event_cb(p->event_ctx, w->job_id);
    pthread_mutex_unlock(&p->mu);
}

/* Write the buffered step events and the progress columns in one go. */
static void flush_steps(worker *w) {
    char err[256];
    if (w->nbatch > 0) {
        if (store_event_append_batch(w->db, w->batch, (size_t)w->nbatch, NULL, err, sizeof err)) {
            /* A failed write (full disk) fails the job, not the daemon. */
            w->io_failed = true;
            snprintf(w->io_err, sizeof w->io_err, "writing events: %s", err);
            atomic_store(&w->cancel, 1);
        }
        for (int i = 0; i < w->nbatch; i++) free(w->payloads[i]);
        w->nbatch = 0;
    }
    int rc = store_job_update_progress(w->db, w->job_id, &w->progress, err, sizeof err);
    if (rc == 1) {
        atomic_store(&w->user_cancelled, 1);
        atomic_store(&w->cancel, 1);
    }
    w->last_flush = now_s();
    notify_events(w);
}

static void append_now(worker *w, store_event_type type, cJSON *payload) {
    char *text = cJSON_PrintUnformatted(payload);
    cJSON_Delete(payload);
    if (!text) return;
    flush_steps(w); /* keep the event order */
    char err[256];
    if (store_event_append(w->db, w->job_id, type, text, NULL, err, sizeof err) != 0) {
        w->io_failed = true;
        snprintf(w->io_err, sizeof w->io_err, "writing events: %s", err);
        atomic_store(&w->cancel, 1);
    }
    free(text);
    notify_events(w);
}

static cJSON *flops_json(const aflo_flops *f) {
    cJSON *o = cJSON_CreateObject();
    for (int k = 0; k < FLOP_KINDS; k++)
        cJSON_AddNumberToObject(o, flop_kind_names[k], (double)f->by_kind[k]);
    return o;
}

static void on_step(void *ctx, const aflo_step_info *s) {
    worker *w = ctx;
    counters_add_steps(1);
    counters_add_flops(s->step_flops.by_kind[FLOP_FORWARD],
                       s->step_flops.by_kind[FLOP_BACKWARD_INPUT],
                       s->step_flops.by_kind[FLOP_BACKWARD_WEIGHT]);
    w->progress = (store_progress){
        .step = s->step,
        .total_steps = s->total_steps,
        .epoch = JOB_EPOCH_SHOWN(s->epoch),
        .loss = s->loss,
        .flops_forward = (int64_t)s->total_flops.by_kind[FLOP_FORWARD],
        .flops_backward_input = (int64_t)s->total_flops.by_kind[FLOP_BACKWARD_INPUT],
        .flops_backward_weight = (int64_t)s->total_flops.by_kind[FLOP_BACKWARD_WEIGHT],
        .trainable_now = (int64_t)s->trainable_now,
        .trainable_avg = s->trainable_avg,
        .frozen = s->projections_total - s->projections_trainable,
        .freezable = s->projections_total};
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddNumberToObject(o, "step", (double)s->step);
    cJSON_AddNumberToObject(o, "total_steps", (double)s->total_steps);
    cJSON_AddNumberToObject(o, "epoch", JOB_EPOCH_SHOWN(s->epoch));
    cJSON_AddNumberToObject(o, "loss", isfinite(s->loss) ? s->loss : 0);
    cJSON_AddNumberToObject(o, "lr", s->lr);
    cJSON_AddItemToObject(o, "flops", flops_json(&s->step_flops));
    cJSON_AddItemToObject(o, "flops_total", flops_json(&s->total_flops));
    cJSON_AddNumberToObject(o, "trainable_now", (double)s->trainable_now);
    cJSON_AddNumberToObject(o, "trainable_avg", s->trainable_avg);
    cJSON_AddNumberToObject(o, "projections_trainable", s->projections_trainable);
    cJSON_AddNumberToObject(o, "projections_total", s->projections_total);
    cJSON_AddNumberToObject(o, "remaining_fraction", s->remaining_fraction);
    cJSON_AddNumberToObject(o, "elapsed_s", s->elapsed_s);
    cJSON_AddNumberToObject(o, "memory_bytes", (double)s->memory_bytes);
    if (s->tokens_seen > 0) { /* a causal LM: its target tokens */
        cJSON_AddNumberToObject(o, "tokens", (double)s->tokens);
        cJSON_AddNumberToObject(o, "tokens_seen", (double)s->tokens_seen);
        cJSON_AddNumberToObject(o, "tokens_per_second",
                                s->step_s > 0 ? (double)s->tokens / s->step_s : 0);
    }
    char *text = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!text) return;
    w->payloads[w->nbatch] = text;
    w->batch[w->nbatch] =
        (store_event_new){.job_id = w->job_id, .type = STORE_EVENT_STEP, .payload = text};
    w->nbatch++;
    if (w->nbatch == STEP_BATCH_MAX || now_s() - w->last_flush >= STEP_BATCH_SECONDS ||
        s->step == s->total_steps)
        flush_steps(w);
}

static void on_freeze(void *ctx, const aflo_freeze_event *e) {
    worker *w = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddNumberToObject(o, "step", (double)e->step);
    cJSON_AddNumberToObject(o, "layer", e->layer);
    cJSON_AddStringToObject(o, "module", e->module_name);
    char m[2] = {e->matrix, 0};
    cJSON_AddStringToObject(o, "matrix", m);
    cJSON_AddNumberToObject(o, "score", isfinite(e->score) ? e->score : 0);
    append_now(w, STORE_EVENT_FREEZE, o);
}

static void on_eval(void *ctx, const aflo_eval_info *e) {
    worker *w = ctx;
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddNumberToObject(o, "epoch", JOB_EPOCH_SHOWN(e->epoch));
    cJSON_AddNumberToObject(o, "step", (double)e->step);
    cJSON *mt = cJSON_AddObjectToObject(o, "metrics");
    const aflo_metrics *x = e->metrics;
    if (x->causal_lm) {
        cJSON_AddNumberToObject(mt, "perplexity", isfinite(exp(x->loss)) ? exp(x->loss) : 0);
        if (x->has_exact_match) cJSON_AddNumberToObject(mt, "exact_match", x->exact_match);
    } else if (x->classification) {
        cJSON_AddNumberToObject(mt, "accuracy", x->accuracy);
        cJSON_AddNumberToObject(mt, "f1", x->f1);
        cJSON_AddNumberToObject(mt, "mcc", x->mcc);
    } else {
        cJSON_AddNumberToObject(mt, "pearson", isfinite(x->pearson) ? x->pearson : 0);
        cJSON_AddNumberToObject(mt, "spearman", isfinite(x->spearman) ? x->spearman : 0);
        cJSON_AddNumberToObject(mt, "mse", isfinite(x->mse) ? x->mse : 0);
    }
    cJSON_AddNumberToObject(mt, "loss", x->loss);
    append_now(w, STORE_EVENT_EVAL, o);
}

static void on_log(void *ctx, const char *msg) {
    worker *w = ctx;
    log_info("job %s: %s", w->job_id, msg);
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    cJSON_AddStringToObject(o, "message", msg);
    append_now(w, STORE_EVENT_LOG, o);
}

static void on_resume(void *ctx, long step) {
    worker *w = ctx;
    log_info("job %s: resumed from the checkpoint at step %ld", w->job_id, step);
    cJSON *o = cJSON_CreateObject();
    if (!o) return;
    char msg[96];
    snprintf(msg, sizeof msg, "resumed from the checkpoint at step %ld", step);
    cJSON_AddStringToObject(o, "message", msg);
    cJSON_AddNumberToObject(o, "resumed_from_step", (double)step);
    append_now(w, STORE_EVENT_LOG, o);
}

/* Point dataset ids of the spec at their files and formats. */
static int resolve_datasets(worker *w, aflo_job_spec *spec, char *err, size_t errlen) {
    char **refs[2] = {&spec->dataset.train, &spec->dataset.eval};
    for (int i = 0; i < 2; i++) {
        char *ref = *refs[i];
        if (!ref || !spec_is_dataset_id(ref)) continue;
        store_dataset d;
        if (store_dataset_get(w->db, ref, &d, err, errlen) != 0) return -1;
        char *path = strdup(d.path);
        if (spec->dataset.format == TEXTDATA_AUTO && d.format) {
            /* uploads are stored without an extension; their record names
             * the format ("tsv"), which the extension rule understands */
            char as_name[32];
            snprintf(as_name, sizeof as_name, "upload.%s", d.format);
            spec->dataset.format = textdata_format_from_path(as_name);
        }
        store_dataset_clear(&d);
        if (!path) {
            snprintf(err, errlen, "out of memory");
            return -1;
        }
        free(ref);
        *refs[i] = path;
    }
    return 0;
}

static void run_claimed(worker *w, store_job *job) {
    workers *p = w->pool;
    char err[1024] = "";
    aflo_job_spec spec;
    aflo_spec_error serr;
    pthread_mutex_lock(&p->mu);
    snprintf(w->job_id, sizeof w->job_id, "%s", job->id);
    atomic_store(&w->cancel, p->stopping);
    atomic_store(&w->user_cancelled, 0);
    pthread_mutex_unlock(&p->mu);
    w->nbatch = 0;
    w->io_failed = false;
    w->last_flush = now_s();
    w->progress = job->progress;
    log_info("job %s: started (attempt %d)", job->id, job->attempts);
    if (job->attempts == 1 && job->started_at >= job->created_at)
        counters_observe_queue_wait((double)(job->started_at - job->created_at) / 1000.0);

    job_outcome out = JOB_FAILED;
    job_result r = {0};
    if (spec_parse(job->spec, strlen(job->spec), &spec, &serr) != 0) {
        snprintf(err, sizeof err, "stored spec is invalid: %s", serr.message);
    } else {
        if (p->cfg.threads_per_job > 0 &&
            (spec.threads == 0 || spec.threads > p->cfg.threads_per_job))
            spec.threads = p->cfg.threads_per_job;
        char jobs[4096], work[4096], datasets[4096];
        if (path_join(datasets, sizeof datasets, p->data_dir, "datasets", err, sizeof err) == 0 &&
            path_join(jobs, sizeof jobs, p->data_dir, "jobs", err, sizeof err) == 0 &&
            make_dir(jobs, err, sizeof err) == 0 &&
            path_join(work, sizeof work, jobs, job->id, err, sizeof err) == 0 &&
            resolve_datasets(w, &spec, err, sizeof err) == 0) {
            job_args a = {.spec = &spec,
                          .models_dir = p->models_dir,
                          .datasets_dir = datasets,
                          .jobs_dir = jobs,
                          .work_dir = work,
                          .cancel = &w->cancel,
                          .ev = {.ctx = w,
                                 .on_step = on_step,
                                 .on_freeze = on_freeze,
                                 .on_eval = on_eval,
                                 .on_log = on_log,
                                 .on_resume = on_resume},
                          .mismatch_hint = "remove that file and retry the job "
                                           "(POST /jobs/{id}/retry) to start it over"};
            out = job_run(&a, &r, err, sizeof err);
        }
        spec_free(&spec);
    }
    flush_steps(w);
    if (w->io_failed) {
        out = JOB_FAILED;
        snprintf(err, sizeof err, "%s", w->io_err);
    }
    char serr2[256];
    int rc = 0;
    if (out == JOB_SUCCEEDED) {
        rc = store_job_finish(w->db, job->id, STORE_JOB_SUCCEEDED, r.metrics_json, NULL, serr2,
                              sizeof serr2);
        log_info("job %s: succeeded in %.1f s", job->id, r.summary.elapsed_s);
    } else if (out == JOB_CANCELLED && atomic_load(&w->user_cancelled)) {
        rc = store_job_finish(w->db, job->id, STORE_JOB_CANCELLED, NULL, "cancelled by request",
                              serr2, sizeof serr2);
        log_info("job %s: cancelled", job->id);
    } else if (out == JOB_CANCELLED) {
        /* shutdown: back to the queue, not counted as a crash; it resumes */
        char reason[128];
        snprintf(reason, sizeof reason,
                 "the daemon shut down; the job resumes from its checkpoint at step %ld",
                 r.summary.steps_done);
        rc = store_job_release(w->db, job->id, reason, serr2, sizeof serr2);
        if (rc > 0)
            log_info("job %s: cancelled (requested during shutdown)", job->id);
        else if (rc == 0)
            log_info("job %s: checkpointed at step %ld for shutdown", job->id,
                     r.summary.steps_done);
        rc = rc < 0 ? -1 : 0;
    } else {
        rc = store_job_finish(w->db, job->id, STORE_JOB_FAILED, NULL, err, serr2, sizeof serr2);
        log_warn("job %s: failed: %s", job->id, err);
    }
    if (rc != 0) log_error("job %s: could not record its end: %s", job->id, serr2);
    notify_events(w);
    job_result_free(&r);
    counters_add_job_finished();
    pthread_mutex_lock(&p->mu);
    w->job_id[0] = '\0';
    pthread_mutex_unlock(&p->mu);
}

static void *worker_main(void *arg) {
    worker *w = arg;
    workers *p = w->pool;
    char err[512];
    for (;;) {
        pthread_mutex_lock(&p->mu);
        bool stop = p->stopping;
        pthread_mutex_unlock(&p->mu);
        if (stop) break;
        store_job job;
        int got = store_claim_next_job(w->db, &job, err, sizeof err);
        if (got == 1) {
            run_claimed(w, &job);
            store_job_clear(&job);
            continue;
        }
        if (got < 0) log_error("claiming a job: %s", err);
        pthread_mutex_lock(&p->mu);
        if (!p->stopping && p->pending_notifies == 0) {
            struct timespec until;
            clock_gettime(CLOCK_REALTIME, &until);
            until.tv_sec += IDLE_POLL_SECONDS;
            pthread_cond_timedwait(&p->wake, &p->mu, &until);
        }
        if (p->pending_notifies > 0) p->pending_notifies--;
        pthread_mutex_unlock(&p->mu);
    }
    return NULL;
}

workers *workers_start(const workers_config *cfg, char *err, size_t errlen) {
    workers *p = calloc(1, sizeof *p);
    if (!p) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    p->cfg = *cfg;
    /* OpenBLAS's thread count is process-wide: set once, before any job
     * runs. One worker gets them all; several get one BLAS thread each, so
     * their GEMMs run side by side on their own threads (OpenBLAS would
     * serialise concurrent multi-threaded calls). Each job's `threads`
     * sets its own kernels only (engine_set_threads, per thread). */
    engine_set_blas_threads(cfg->n_workers > 1 ? 1 : cfg->threads_per_job);
    p->db_path = strdup(cfg->db_path);
    p->data_dir = strdup(cfg->data_dir);
    p->models_dir = strdup(cfg->models_dir);
    p->ws = calloc((size_t)(cfg->n_workers > 0 ? cfg->n_workers : 1), sizeof *p->ws);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->wake, NULL);
    if (!p->db_path || !p->data_dir || !p->models_dir || !p->ws) {
        snprintf(err, errlen, "out of memory");
        workers_stop(p);
        return NULL;
    }
    for (int i = 0; i < cfg->n_workers; i++) {
        worker *w = &p->ws[i];
        w->pool = p;
        w->db = store_open(p->db_path, err, errlen);
        if (!w->db || pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            if (w->db && !err[0]) snprintf(err, errlen, "cannot start worker thread");
            workers_stop(p);
            return NULL;
        }
        w->started = true;
    }
    return p;
}

void workers_notify(workers *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->pending_notifies++;
    pthread_cond_signal(&p->wake);
    pthread_mutex_unlock(&p->mu);
}

void workers_cancel(workers *p, const char *job_id) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    for (int i = 0; i < p->cfg.n_workers; i++) {
        worker *w = &p->ws[i];
        if (w->job_id[0] && strcmp(w->job_id, job_id) == 0) {
            atomic_store(&w->user_cancelled, 1);
            atomic_store(&w->cancel, 1);
        }
    }
    pthread_mutex_unlock(&p->mu);
}

void workers_set_event_callback(workers *p, workers_event_cb cb, void *ctx) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->event_cb = cb;
    p->event_ctx = ctx;
    pthread_mutex_unlock(&p->mu);
}

void workers_stop(workers *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mu);
    p->stopping = true;
    if (p->ws)
        for (int i = 0; i < p->cfg.n_workers; i++) atomic_store(&p->ws[i].cancel, 1);
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mu);
    if (p->ws)
        for (int i = 0; i < p->cfg.n_workers; i++) {
            if (p->ws[i].started) pthread_join(p->ws[i].thread, NULL);
            store_close(p->ws[i].db);
        }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->wake);
    free(p->ws);
    free(p->db_path);
    free(p->data_dir);
    free(p->models_dir);
    free(p);
}
