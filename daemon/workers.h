/* workers.h — the pool of worker threads that run queued jobs.
 *
 * Each worker has its own SQLite connection, claims the oldest queued job
 * (store_claim_next_job), runs it through the engine (job.h), writes its
 * events in batches and stores its adapters. The API talks to the pool only
 * through these calls; it never sees the engine. */
#ifndef AFLO_WORKERS_H
#define AFLO_WORKERS_H

#include <stdbool.h>
#include <stddef.h>

typedef struct workers workers;

typedef struct {
    const char *db_path;    /* SQLite file */
    const char *data_dir;   /* datasets/, jobs/<id>/ (checkpoints, adapters) */
    const char *models_dir; /* Hugging Face model folders */
    int n_workers;          /* concurrent jobs */
    int threads_per_job;    /* each job's kernel threads at most; also OpenBLAS's
                                  (process-wide) with one worker, 1 with several */
} workers_config;

workers *workers_start(const workers_config *cfg, char *err, size_t errlen);
/* A job was queued: wake an idle worker. */
void workers_notify(workers *w);
/* Cancel a running job within one training step (the store already holds
 * cancel_requested; this only makes it faster). Unknown ids are ignored. */
void workers_cancel(workers *w, const char *job_id);
/* New events were written for a job: wake SSE readers waiting on it. The
 * API registers this callback; workers call it after each event batch. */
typedef void (*workers_event_cb)(void *ctx, const char *job_id);
void workers_set_event_callback(workers *w, workers_event_cb cb, void *ctx);
/* Graceful stop: running jobs checkpoint and return to the queue. */
void workers_stop(workers *w);

#endif
