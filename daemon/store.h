/* store.h — aflorad's persistent state in SQLite: the job queue, each job's
 * event log, and the metadata of uploaded datasets.
 *
 * One `store` is one SQLite connection and must be used by one thread at a
 * time; every thread (worker, HTTP handler) opens its own with store_open(),
 * which is cheap once the file exists and safe to call from many threads at
 * once. The connection runs in WAL mode (readers never block the writer),
 * synchronous=NORMAL (a committed transaction survives a process crash; a
 * power cut may lose the last few), foreign keys on, and waits up to
 * STORE_BUSY_TIMEOUT_MS for another connection's write lock before failing.
 *
 * Jobs move queued -> running -> succeeded | failed | cancelled (a queued job
 * may also be cancelled directly; store_job_release() puts a running job a
 * worker stopped cleanly back in the queue, store_requeue_running() those a
 * crash left running, and store_job_retry() a failed or cancelled one).
 * Every status change appends a "status" event to the job's log in the same
 * transaction — the daemon must not write those itself — so the event log is
 * a complete, gap-free history: events of a job are numbered 1, 2, 3, ...
 * (seq 1 is {"status":"queued"} written at creation). Status event payloads
 * are {"status": "<new status>"} plus, where they apply, "attempt" (on
 * claim), "error" (on failure), "cancel_requested": true (cancel asked of a
 * running job) and "reason" (back in the queue after a shutdown, a crash or
 * a retry).
 *
 * Conventions: functions that can fail return -1 and write a message
 * (including sqlite3_errmsg where SQLite failed) into err[0..errlen) — err may
 * be NULL — and store_last_error() then says what kind of failure it was, so
 * the HTTP layer can answer 400/404/409/500 without parsing messages. Strings
 * in returned structs are malloc'd and released with the matching *_clear or
 * *_free function. Ids are 16 lowercase hex characters. Times are unix ms;
 * STORE_TIME_NONE (0) means "not yet". Statements are reset as soon as their
 * rows are read, so no call leaves a read transaction open (which would stop
 * WAL checkpoints). Nothing here calls exit() or abort(). */
#ifndef AFLO_STORE_H
#define AFLO_STORE_H

#include <stddef.h>
#include <stdint.h>

struct sqlite3;

#define STORE_ID_LEN 16 /* 64 random bits as hex */
#define STORE_ID_SIZE (STORE_ID_LEN + 1)
#define STORE_SHA256_SIZE 65 /* 64 hex characters + NUL */
/* How long a connection waits for another's write lock. Writes are short
 * (the longest is an event batch), so 5 s means something is stuck. */
#define STORE_BUSY_TIMEOUT_MS 5000
/* Largest page any list function returns; callers page with offset/after_seq. */
#define STORE_LIST_LIMIT_MAX 1000
#define STORE_STATUS_ANY (-1) /* store_job_list: no status filter */
#define STORE_TIME_NONE 0
/* A count that was not taken (a nullable INTEGER column). */
#define STORE_COUNT_NONE (-1)

typedef struct store store;

/* What kind of failure the last call that returned -1 was. */
typedef enum {
    STORE_OK = 0,
    STORE_E_DB,        /* SQLite or the OS failed (I/O, locked too long, OOM) */
    STORE_E_INVALID,   /* bad argument: malformed JSON, bad status, limit out of range */
    STORE_E_NOT_FOUND, /* the named job or dataset does not exist */
    STORE_E_CONFLICT   /* its state forbids it: finishing a job that is not running,
                            deleting a dataset a queued/running job uses, duplicate id */
} store_error;

typedef enum {
    STORE_JOB_QUEUED = 0,
    STORE_JOB_RUNNING,
    STORE_JOB_SUCCEEDED,
    STORE_JOB_FAILED,
    STORE_JOB_CANCELLED,
    STORE_JOB_STATUS_COUNT
} store_job_status;

typedef enum {
    STORE_EVENT_STEP = 0,
    STORE_EVENT_FREEZE,
    STORE_EVENT_EVAL,
    STORE_EVENT_STATUS,
    STORE_EVENT_LOG,
    STORE_EVENT_TYPE_COUNT
} store_event_type;

/* "queued", "running", ...; NULL when out of range. */
const char *store_job_status_name(store_job_status s);
/* 0 and *out set when name is a status name, else -1. */
int store_job_status_parse(const char *name, store_job_status *out);
/* "step", "freeze", "eval", "status", "log"; NULL when out of range. */
const char *store_event_type_name(store_event_type t);
int store_event_type_parse(const char *name, store_event_type *out);

/* Training progress as the worker last reported it. Counts are >= 0. */
typedef struct {
    int64_t step, total_steps; /* optimizer steps done / planned */
    int64_t epoch;             /* 0-based */
    double loss;               /* NAN: no step yet (stored as NULL) */
    int64_t flops_forward, flops_backward_input, flops_backward_weight; /* totals */
    int64_t trainable_now;                                              /* trainable elements now */
    double trainable_avg;      /* time average over steps (paper's count) */
    int64_t frozen, freezable; /* adapter matrices frozen / that can freeze */
} store_progress;

typedef struct {
    char id[STORE_ID_SIZE];
    store_job_status status;
    char *spec; /* the job spec, JSON object text */
    int64_t created_at, started_at, finished_at;
    store_progress progress;
    char *metrics;        /* JSON text or NULL */
    char *error;          /* NULL unless it failed (or a message was kept) */
    int cancel_requested; /* 1: a cancel was asked while it ran */
    int attempts;         /* times a worker claimed it */
    int crashes;          /* times the daemon died while it ran (since
                                           its last retry); clean stops do not count */
    char train_dataset_id[STORE_ID_SIZE];
    char eval_dataset_id[STORE_ID_SIZE]; /* "" when none (or deleted later) */
} store_job;

typedef struct {
    char job_id[STORE_ID_SIZE];
    int64_t seq; /* 1, 2, 3, ... within the job */
    store_event_type type;
    char *payload; /* JSON text */
    int64_t created_at;
} store_event;

/* One event to append (strings owned by the caller). */
typedef struct {
    const char *job_id;
    store_event_type type;
    const char *payload; /* valid JSON text */
} store_event_new;

typedef struct {
    char id[STORE_ID_SIZE]; /* on create: "" = generate one */
    char *name;
    char *format; /* e.g. "jsonl", "tsv" (not interpreted here) */
    int64_t rows, bytes;
    char sha256[STORE_SHA256_SIZE]; /* lowercase hex */
    int64_t created_at;             /* set by the store on create */
    char *path;                     /* where the file lives */
    char *task;     /* "classification", "regression", "causal_lm"; NULL: not named */
    char *form;     /* causal_lm: "text", "chat", ...; encoders "columns"; NULL: older */
    int64_t tokens; /* STORE_COUNT_NONE when not counted */
} store_dataset;

/* What store_job_request_cancel() did. */
typedef enum {
    STORE_CANCEL_DONE = 0,        /* it was queued: now cancelled */
    STORE_CANCEL_REQUESTED,       /* it is running: cancel_requested set, the
                                           worker stops it and finishes it cancelled */
    STORE_CANCEL_ALREADY_FINISHED /* succeeded/failed/cancelled: nothing changed */
} store_cancel_outcome;

typedef struct {
    int requeued;  /* running -> queued, progress kept */
    int cancelled; /* running with a cancel request -> cancelled */
    int failed;    /* running with crashes >= max_crashes -> failed */
} store_requeue_result;

/* What store_job_release() did. */
typedef enum {
    STORE_RELEASE_QUEUED = 0, /* back in the queue */
    STORE_RELEASE_CANCELLED   /* a cancel had been requested: cancelled */
} store_release_outcome;

/* ---- connection ---------------------------------------------------------- */

/* Open (creating if needed) the database at path, configure the connection
 * and apply any pending migrations. Refuses a database whose schema is newer
 * than this build knows, naming both versions. NULL + message on failure. */
store *store_open(const char *path, char *err, size_t errlen);
void store_close(store *s); /* NULL is fine */
store_error store_last_error(const store *s);

/* The underlying connection, for tests and diagnostics (read-only use). */
struct sqlite3 *store_sqlite(store *s);

/* PRAGMA integrity_check; 0 when "ok", else -1 with its first complaint. */
int store_check_integrity(store *s, char *err, size_t errlen);
/* Copy the WAL into the database and truncate it (call when idle). */
int store_checkpoint(store *s, char *err, size_t errlen);

/* ---- jobs ---------------------------------------------------------------- */

/* Queue a job. spec_json must be a JSON object; train_dataset_id and
 * eval_dataset_id name existing uploaded datasets or are NULL/"" (the demo
 * model's own data, or files the spec names). The new id goes into id_out.
 * Also writes status event 1. */
int store_job_create(store *s, const char *spec_json, const char *train_dataset_id,
                     const char *eval_dataset_id, char id_out[STORE_ID_SIZE], char *err,
                     size_t errlen);

/* Fill *out (release with store_job_clear). -1 / STORE_E_NOT_FOUND if none. */
int store_job_get(store *s, const char *id, store_job *out, char *err, size_t errlen);
void store_job_clear(store_job *j);

/* Jobs newest first, status = STORE_STATUS_ANY or one store_job_status,
 * limit in 1..STORE_LIST_LIMIT_MAX, offset >= 0. *out (NULL when *n == 0) is
 * released with store_job_list_free. */
int store_job_list(store *s, int status, int64_t limit, int64_t offset, store_job **out, size_t *n,
                   char *err, size_t errlen);
void store_job_list_free(store_job *jobs, size_t n);

/* counts[st] = number of jobs with status st. */
int store_job_counts(store *s, int64_t counts[STORE_JOB_STATUS_COUNT], char *err, size_t errlen);

/* Take the oldest queued job (by created_at, then creation order): set it
 * running, started_at = now, attempts + 1, and return it in *out. Returns 1
 * with a job, 0 when nothing is queued, -1 on error. Runs under BEGIN
 * IMMEDIATE, so concurrent callers never get the same job. */
int store_claim_next_job(store *s, store_job *out, char *err, size_t errlen);

/* Overwrite a running job's progress columns. Returns 1 if a cancel has been
 * requested (the worker should stop), 0 if not, -1 on error (CONFLICT when the
 * job is not running). */
int store_job_update_progress(store *s, const char *id, const store_progress *p, char *err,
                              size_t errlen);

/* running -> final (SUCCEEDED, FAILED or CANCELLED), finished_at = now.
 * metrics_json (JSON text) may be NULL; error is required for FAILED and
 * optional otherwise. CONFLICT when the job is not running. */
int store_job_finish(store *s, const char *id, store_job_status final, const char *metrics_json,
                     const char *error, char *err, size_t errlen);

/* Cancel: a queued job is cancelled at once, a running one gets
 * cancel_requested = 1. Returns a store_cancel_outcome (>= 0) or -1. */
int store_job_request_cancel(store *s, const char *id, char *err, size_t errlen);

/* A worker stopped a running job cleanly (daemon shutdown, checkpoint
 * written): running -> queued, keeping progress, attempts and crashes — a
 * clean stop is not a crash — with a status event giving `reason` (may be
 * NULL). If a cancel had been requested meanwhile the job is cancelled
 * instead. Returns a store_release_outcome (>= 0) or -1 (CONFLICT when the
 * job is not running). */
int store_job_release(store *s, const char *id, const char *reason, char *err, size_t errlen);

/* At start-up, before any worker runs: every job still running is one the
 * daemon died under (clean stops released theirs), so its crash count goes
 * up and it goes back to queued, keeping its progress — unless a cancel had
 * been requested (-> cancelled) or max_crashes > 0 and the daemon has now
 * died under it max_crashes times (-> failed, so a job that kills the daemon
 * cannot do so forever). *out (may be NULL) gets the counts. */
int store_requeue_running(store *s, int max_crashes, store_requeue_result *out, char *err,
                          size_t errlen);

/* Run a failed or cancelled job again: -> queued with finished_at, error
 * and metrics cleared and crashes reset, with a status event (reason "retry
 * requested"). Its progress columns stay, and the worker resumes from the
 * checkpoint in its folder if there is one. train/eval_dataset_id (NULL or
 * "" for none) are the uploaded datasets its spec names: CONFLICT if one has
 * been deleted since, or if the job is queued, running or succeeded;
 * NOT_FOUND if there is no such job. */
int store_job_retry(store *s, const char *id, const char *train_dataset_id,
                    const char *eval_dataset_id, char *err, size_t errlen);

/* ---- events -------------------------------------------------------------- */

/* Append one event; *seq_out (may be NULL) gets its seq. */
int store_event_append(store *s, const char *job_id, store_event_type type,
                       const char *payload_json, int64_t *seq_out, char *err, size_t errlen);

/* Append events[0..n) in one transaction: all or none. seqs_out (may be NULL)
 * receives n seqs. Events may belong to different jobs. */
int store_event_append_batch(store *s, const store_event_new *events, size_t n, int64_t *seqs_out,
                             char *err, size_t errlen);

/* Events of job_id with seq > after_seq in seq order, at most limit
 * (1..STORE_LIST_LIMIT_MAX). NOT_FOUND if the job does not exist. */
int store_event_list(store *s, const char *job_id, int64_t after_seq, int64_t limit,
                     store_event **out, size_t *n, char *err, size_t errlen);
void store_event_list_free(store_event *events, size_t n);

/* ---- datasets ------------------------------------------------------------ */

/* Record a dataset. d->id "" generates an id; d->created_at is ignored. The
 * final id goes into id_out. CONFLICT if the id exists. */
int store_dataset_create(store *s, const store_dataset *d, char id_out[STORE_ID_SIZE], char *err,
                         size_t errlen);
int store_dataset_get(store *s, const char *id, store_dataset *out, char *err, size_t errlen);
void store_dataset_clear(store_dataset *d);
/* Newest first; limit/offset as for store_job_list. */
int store_dataset_list(store *s, int64_t limit, int64_t offset, store_dataset **out, size_t *n,
                       char *err, size_t errlen);
void store_dataset_list_free(store_dataset *d, size_t n);
/* Delete the record (not the file). CONFLICT, naming the job, while a queued
 * or running job uses it; finished jobs that used it keep their spec and get
 * train/eval_dataset_id "". */
int store_dataset_delete(store *s, const char *id, char *err, size_t errlen);

/* 16 random lowercase hex characters (SQLite's CSPRNG) + NUL. */
void store_new_id(char out[STORE_ID_SIZE]);

#endif
