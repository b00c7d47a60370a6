/* store.c — the job queue, event log and dataset records in SQLite.
 *
 * A `store` owns one connection and a cache of its prepared statements, each
 * prepared on first use (SQLITE_PREPARE_PERSISTENT) and reset right after its
 * rows are read, so repeated calls cost one bind + step and no call leaves a
 * read transaction open. The SQL lives in one table (STMT_SQL) beside the enum
 * that names it; the schema is migrations/0001_init.sql.
 *
 * The cached statements run through one of three functions: run_stmt() (no
 * rows), query_row() (at most one) or query_rows() (all, into an array).
 * They step, report a failure as "<what>: <SQLite's message>" and reset, and
 * turn rows into structs through the column tables below, one per struct; so
 * a new query is its SQL, its bindings and, for a new kind of row, a table.
 * (insert_with_id() is run_stmt() plus a retry on a colliding random id;
 * ROLLBACK steps by itself so as not to overwrite the error it follows.)
 *
 * Anything that reads and then writes (claim, finish, cancel, requeue, event
 * batches, dataset delete) runs inside BEGIN IMMEDIATE: the write lock is
 * taken up front, waiting on the busy timeout, instead of upgrading a read
 * transaction later, which in WAL mode can fail with SQLITE_BUSY without
 * waiting. Single-statement writes rely on the statement's own transaction.
 * Status changes and the "status" event that records them commit together.
 *
 * Event seqs are max(seq) + 1 for the job, computed by the INSERT itself
 * under the write lock, so they are gap-free per job without a counter
 * column to keep in step. */
#include "store.h"
#include "migrate.h"

#include <assert.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sqlite3.h>

/* Random ids collide with probability ~n^2/2^65; retrying a few times makes a
 * failure from that alone impossible in practice while still bounding the loop. */
#define ID_ATTEMPTS 4
/* Longest piece of a caller-supplied id echoed back in a message. */
#define MSG_ID_MAX 40

/* ---- column tables --------------------------------------------------------
 *
 * Rows are read into structs by one function, read_row(), driven by a table
 * per struct: for each column of the SELECT, in order, the member it fills
 * and how. The SQL column lists (JOB_COLUMNS, ...) stay plain strings beside
 * their tables; every query checks (assert) that the statement's columns are
 * the table's, by name and number, so the two cannot drift apart. */

typedef enum {
    COL_INT,           /* int */
    COL_INT64,         /* int64_t */
    COL_TIME,          /* int64_t unix ms; NULL reads STORE_TIME_NONE */
    COL_COUNT,         /* int64_t; NULL reads STORE_COUNT_NONE */
    COL_DOUBLE,        /* double */
    COL_DOUBLE_OR_NAN, /* double; NULL reads NAN (SQLite stores no NaN) */
    COL_TEXT,          /* char *, a malloc'd copy; NULL reads NULL */
    COL_CHARS,         /* char[size] (ids, sha256); NULL reads "" */
    COL_JOB_STATUS,    /* store_job_status, from its name */
    COL_EVENT_TYPE     /* store_event_type, from its name */
} column_type;

typedef struct {
    const char *name; /* the column's name in the statement */
    column_type type;
    size_t offset, size; /* the member it fills: MEMBER(struct, member) */
} column;

#define MEMBER(type, member) offsetof(type, member), sizeof(((type *)0)->member)

/* A row struct: its columns in SELECT order, and its size. */
typedef struct {
    const column *cols;
    int ncols;
    size_t size;
} row_layout;

#define ROW_LAYOUT(cols, type) \
    { cols, (int)(sizeof(cols) / sizeof(cols)[0]), sizeof(type) }

#define JOB_COLUMNS                                                              \
    "id, status, spec, created_at, started_at, finished_at, step, total_steps, " \
    "epoch, loss, flops_forward, flops_backward_input, flops_backward_weight, "  \
    "trainable_now, trainable_avg, frozen, freezable, metrics, error, "          \
    "cancel_requested, attempts, train_dataset_id, eval_dataset_id, crashes"
static const column JOB_COLS[] = {
    {"id", COL_CHARS, MEMBER(store_job, id)},
    {"status", COL_JOB_STATUS, MEMBER(store_job, status)},
    {"spec", COL_TEXT, MEMBER(store_job, spec)},
    {"created_at", COL_TIME, MEMBER(store_job, created_at)},
    {"started_at", COL_TIME, MEMBER(store_job, started_at)},
    {"finished_at", COL_TIME, MEMBER(store_job, finished_at)},
    {"step", COL_INT64, MEMBER(store_job, progress.step)},
    {"total_steps", COL_INT64, MEMBER(store_job, progress.total_steps)},
    {"epoch", COL_INT64, MEMBER(store_job, progress.epoch)},
    {"loss", COL_DOUBLE_OR_NAN, MEMBER(store_job, progress.loss)},
    {"flops_forward", COL_INT64, MEMBER(store_job, progress.flops_forward)},
    {"flops_backward_input", COL_INT64, MEMBER(store_job, progress.flops_backward_input)},
    {"flops_backward_weight", COL_INT64, MEMBER(store_job, progress.flops_backward_weight)},
    {"trainable_now", COL_INT64, MEMBER(store_job, progress.trainable_now)},
    {"trainable_avg", COL_DOUBLE, MEMBER(store_job, progress.trainable_avg)},
    {"frozen", COL_INT64, MEMBER(store_job, progress.frozen)},
    {"freezable", COL_INT64, MEMBER(store_job, progress.freezable)},
    {"metrics", COL_TEXT, MEMBER(store_job, metrics)},
    {"error", COL_TEXT, MEMBER(store_job, error)},
    {"cancel_requested", COL_INT, MEMBER(store_job, cancel_requested)},
    {"attempts", COL_INT, MEMBER(store_job, attempts)},
    {"train_dataset_id", COL_CHARS, MEMBER(store_job, train_dataset_id)},
    {"eval_dataset_id", COL_CHARS, MEMBER(store_job, eval_dataset_id)},
    {"crashes", COL_INT, MEMBER(store_job, crashes)},
};
static const row_layout JOB_ROW = ROW_LAYOUT(JOB_COLS, store_job);

#define DATASET_COLUMNS \
    "id, name, format, rows, bytes, sha256, created_at, path, task, form, tokens"
static const column DATASET_COLS[] = {
    {"id", COL_CHARS, MEMBER(store_dataset, id)},
    {"name", COL_TEXT, MEMBER(store_dataset, name)},
    {"format", COL_TEXT, MEMBER(store_dataset, format)},
    {"rows", COL_INT64, MEMBER(store_dataset, rows)},
    {"bytes", COL_INT64, MEMBER(store_dataset, bytes)},
    {"sha256", COL_CHARS, MEMBER(store_dataset, sha256)},
    {"created_at", COL_TIME, MEMBER(store_dataset, created_at)},
    {"path", COL_TEXT, MEMBER(store_dataset, path)},
    {"task", COL_TEXT, MEMBER(store_dataset, task)},
    {"form", COL_TEXT, MEMBER(store_dataset, form)},
    {"tokens", COL_COUNT, MEMBER(store_dataset, tokens)},
};
static const row_layout DATASET_ROW = ROW_LAYOUT(DATASET_COLS, store_dataset);

#define EVENT_COLUMNS "job_id, seq, type, payload, created_at"
static const column EVENT_COLS[] = {
    {"job_id", COL_CHARS, MEMBER(store_event, job_id)},
    {"seq", COL_INT64, MEMBER(store_event, seq)},
    {"type", COL_EVENT_TYPE, MEMBER(store_event, type)},
    {"payload", COL_TEXT, MEMBER(store_event, payload)},
    {"created_at", COL_TIME, MEMBER(store_event, created_at)},
};
static const row_layout EVENT_ROW = ROW_LAYOUT(EVENT_COLS, store_event);

/* A job store_requeue_running() found running (STMT_JOB_LIST_RUNNING). */
typedef struct {
    char id[STORE_ID_SIZE];
    int crashes, cancel_requested;
} running_job;
static const column RUNNING_JOB_COLS[] = {
    {"id", COL_CHARS, MEMBER(running_job, id)},
    {"crashes", COL_INT, MEMBER(running_job, crashes)},
    {"cancel_requested", COL_INT, MEMBER(running_job, cancel_requested)},
};
static const row_layout RUNNING_JOB_ROW = ROW_LAYOUT(RUNNING_JOB_COLS, running_job);

/* One row of STMT_JOB_COUNTS. */
typedef struct {
    store_job_status status;
    int64_t count;
} status_count;
static const column STATUS_COUNT_COLS[] = {
    {"status", COL_JOB_STATUS, MEMBER(status_count, status)},
    {"n", COL_INT64, MEMBER(status_count, count)},
};
static const row_layout STATUS_COUNT_ROW = ROW_LAYOUT(STATUS_COUNT_COLS, status_count);

/* A job's state (STMT_JOB_STATE, and what STMT_JOB_PROGRESS returns). */
typedef struct {
    store_job_status status;
    int cancel_requested;
} job_state_row;
static const column JOB_STATE_COLS[] = {
    {"status", COL_JOB_STATUS, MEMBER(job_state_row, status)},
    {"cancel_requested", COL_INT, MEMBER(job_state_row, cancel_requested)},
};
static const row_layout JOB_STATE_ROW = ROW_LAYOUT(JOB_STATE_COLS, job_state_row);

/* A queued or running job that uses a dataset (STMT_DATASET_USER). */
typedef struct {
    char id[STORE_ID_SIZE];
    store_job_status status;
} job_ref;
static const column JOB_REF_COLS[] = {
    {"id", COL_CHARS, MEMBER(job_ref, id)},
    {"status", COL_JOB_STATUS, MEMBER(job_ref, status)},
};
static const row_layout JOB_REF_ROW = ROW_LAYOUT(JOB_REF_COLS, job_ref);

/* The seq an appended event got (STMT_EVENT_INSERT). */
typedef struct {
    int64_t seq;
} event_seq;
static const column EVENT_SEQ_COLS[] = {
    {"seq", COL_INT64, MEMBER(event_seq, seq)},
};
static const row_layout EVENT_SEQ_ROW = ROW_LAYOUT(EVENT_SEQ_COLS, event_seq);

/* ---- statements ----------------------------------------------------------- */

enum stmt_id {
    STMT_BEGIN,
    STMT_COMMIT,
    STMT_ROLLBACK,
    STMT_DATASET_EXISTS,
    STMT_JOB_INSERT,
    STMT_JOB_GET,
    STMT_JOB_LIST_ALL,
    STMT_JOB_LIST_STATUS,
    STMT_JOB_COUNTS,
    STMT_JOB_ANY_QUEUED,
    STMT_JOB_CLAIM,
    STMT_JOB_PROGRESS,
    STMT_JOB_STATE,
    STMT_JOB_FINISH,
    STMT_JOB_SET_CANCEL,
    STMT_JOB_REQUEUE,
    STMT_JOB_COUNT_CRASHES,
    STMT_JOB_LIST_RUNNING,
    STMT_JOB_RETRY,
    STMT_JOB_EXISTS,
    STMT_EVENT_INSERT,
    STMT_EVENT_INSERT_STATUS,
    STMT_EVENT_LIST,
    STMT_DATASET_INSERT,
    STMT_DATASET_GET,
    STMT_DATASET_LIST,
    STMT_DATASET_USER,
    STMT_DATASET_DELETE,
    STMT_COUNT
};

/* Appends an event numbered after the job's last one; one row even when the
 * job has no events yet (max() of nothing is NULL). */
#define EVENT_NEXT_SEQ "coalesce(max(seq), 0) + 1"

static const char *const STMT_SQL[STMT_COUNT] = {
    [STMT_BEGIN] = "BEGIN IMMEDIATE",
    [STMT_COMMIT] = "COMMIT",
    [STMT_ROLLBACK] = "ROLLBACK",
    [STMT_DATASET_EXISTS] = "SELECT 1 FROM datasets WHERE id = ?1",
    [STMT_JOB_INSERT] =
        "INSERT INTO jobs (id, spec, status, created_at, train_dataset_id, eval_dataset_id) "
        "VALUES (?1, ?2, 'queued', ?3, ?4, ?5)",
    [STMT_JOB_GET] = "SELECT " JOB_COLUMNS " FROM jobs WHERE id = ?1",
    /* rowid breaks created_at ties in creation order (see the schema). */
    [STMT_JOB_LIST_ALL] = "SELECT " JOB_COLUMNS " FROM jobs ORDER BY created_at DESC, rowid DESC "
                          "LIMIT ?1 OFFSET ?2",
    [STMT_JOB_LIST_STATUS] = "SELECT " JOB_COLUMNS " FROM jobs WHERE status = ?3 "
                             "ORDER BY created_at DESC, rowid DESC LIMIT ?1 OFFSET ?2",
    [STMT_JOB_COUNTS] = "SELECT status, count(*) AS n FROM jobs GROUP BY status",
    [STMT_JOB_ANY_QUEUED] = "SELECT 1 FROM jobs WHERE status = 'queued' LIMIT 1",
    [STMT_JOB_CLAIM] =
        "UPDATE jobs SET status = 'running', started_at = ?1, attempts = attempts + 1 "
        "WHERE rowid = (SELECT rowid FROM jobs WHERE status = 'queued' "
        "               ORDER BY created_at, rowid LIMIT 1) "
        "RETURNING " JOB_COLUMNS,
    [STMT_JOB_PROGRESS] =
        "UPDATE jobs SET step = ?2, total_steps = ?3, epoch = ?4, loss = ?5, "
        "flops_forward = ?6, flops_backward_input = ?7, flops_backward_weight = ?8, "
        "trainable_now = ?9, trainable_avg = ?10, frozen = ?11, freezable = ?12 "
        "WHERE id = ?1 AND status = 'running' RETURNING status, cancel_requested",
    [STMT_JOB_STATE] = "SELECT status, cancel_requested FROM jobs WHERE id = ?1",
    [STMT_JOB_FINISH] = "UPDATE jobs SET status = ?3, finished_at = ?4, metrics = ?5, error = ?6 "
                        "WHERE id = ?1 AND status = ?2",
    [STMT_JOB_SET_CANCEL] =
        "UPDATE jobs SET cancel_requested = 1 WHERE id = ?1 AND status = 'running'",
    [STMT_JOB_REQUEUE] = "UPDATE jobs SET status = 'queued', cancel_requested = 0 "
                         "WHERE id = ?1 AND status = 'running'",
    /* At start-up every job still running is one the daemon died under. */
    [STMT_JOB_COUNT_CRASHES] = "UPDATE jobs SET crashes = crashes + 1 WHERE status = 'running'",
    [STMT_JOB_LIST_RUNNING] =
        "SELECT id, crashes, cancel_requested FROM jobs WHERE status = 'running' "
        "ORDER BY created_at, rowid",
    /* finished_at goes (CHECK job_finished_at_iff_finished); the checkpoint
     * on disk and the progress columns stay, so the job resumes. */
    [STMT_JOB_RETRY] =
        "UPDATE jobs SET status = 'queued', finished_at = NULL, error = NULL, metrics = NULL, "
        "cancel_requested = 0, crashes = 0, train_dataset_id = ?2, eval_dataset_id = ?3 "
        "WHERE id = ?1 AND status IN ('failed', 'cancelled')",
    [STMT_JOB_EXISTS] = "SELECT 1 FROM jobs WHERE id = ?1",
    [STMT_EVENT_INSERT] = "INSERT INTO events (" EVENT_COLUMNS ") "
                          "SELECT ?1, " EVENT_NEXT_SEQ ", ?2, ?3, ?4 FROM events WHERE job_id = ?1 "
                          "RETURNING seq",
    /* json_patch drops the members whose value is NULL (RFC 7396), so one
     * statement writes each kind of status payload without null clutter. */
    [STMT_EVENT_INSERT_STATUS] =
        "INSERT INTO events (" EVENT_COLUMNS ") "
        "SELECT ?1, " EVENT_NEXT_SEQ ", 'status', "
        "       json_patch(json_object('status', ?2), "
        "                  json_object('attempt', ?3, 'error', ?4, "
        "                              'cancel_requested', json(?5), 'reason', ?6)), ?7 "
        "FROM events WHERE job_id = ?1",
    [STMT_EVENT_LIST] = "SELECT " EVENT_COLUMNS " FROM events WHERE job_id = ?1 AND seq > ?2 "
                        "ORDER BY seq LIMIT ?3",
    [STMT_DATASET_INSERT] = "INSERT INTO datasets (" DATASET_COLUMNS
                            ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    [STMT_DATASET_GET] = "SELECT " DATASET_COLUMNS " FROM datasets WHERE id = ?1",
    [STMT_DATASET_LIST] =
        "SELECT " DATASET_COLUMNS " FROM datasets ORDER BY created_at DESC, rowid DESC "
        "LIMIT ?1 OFFSET ?2",
    [STMT_DATASET_USER] =
        "SELECT id, status FROM jobs WHERE status IN ('queued', 'running') "
        "AND (train_dataset_id = ?1 OR eval_dataset_id = ?1) ORDER BY created_at LIMIT 1",
    [STMT_DATASET_DELETE] = "DELETE FROM datasets WHERE id = ?1",
};

struct store {
    sqlite3 *db;
    sqlite3_stmt *stmt[STMT_COUNT];
    store_error last_error;
};

static const char *const STATUS_NAMES[STORE_JOB_STATUS_COUNT] = {"queued", "running", "succeeded",
                                                                 "failed", "cancelled"};
static const char *const EVENT_TYPE_NAMES[STORE_EVENT_TYPE_COUNT] = {"step", "freeze", "eval",
                                                                     "status", "log"};

/* Index of name in names[0..count), or -1 when it is not there (or NULL). */
static int name_index(const char *const *names, int count, const char *name) {
    for (int i = 0; name && i < count; i++)
        if (strcmp(name, names[i]) == 0) return i;
    return -1;
}

const char *store_job_status_name(store_job_status st) {
    return (unsigned)st < STORE_JOB_STATUS_COUNT ? STATUS_NAMES[st] : NULL;
}

int store_job_status_parse(const char *name, store_job_status *out) {
    int i = name_index(STATUS_NAMES, STORE_JOB_STATUS_COUNT, name);
    if (i < 0) return -1;
    *out = (store_job_status)i;
    return 0;
}

const char *store_event_type_name(store_event_type t) {
    return (unsigned)t < STORE_EVENT_TYPE_COUNT ? EVENT_TYPE_NAMES[t] : NULL;
}

int store_event_type_parse(const char *name, store_event_type *out) {
    int i = name_index(EVENT_TYPE_NAMES, STORE_EVENT_TYPE_COUNT, name);
    if (i < 0) return -1;
    *out = (store_event_type)i;
    return 0;
}

/* ---- errors --------------------------------------------------------------- */

static void vwrite_err(char *err, size_t errlen, const char *fmt, va_list ap) {
    if (err && errlen) vsnprintf(err, errlen, fmt, ap);
}

static void write_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void write_err(char *err, size_t errlen, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vwrite_err(err, errlen, fmt, ap);
    va_end(ap);
}

static int fail(store *s, store_error kind, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
static int fail(store *s, store_error kind, char *err, size_t errlen, const char *fmt, ...) {
    s->last_error = kind;
    va_list ap;
    va_start(ap, fmt);
    vwrite_err(err, errlen, fmt, ap);
    va_end(ap);
    return -1;
}

/* An SQLite failure `rc` while doing `what`; must run before the statement is
 * reset (the message belongs to the last call). Constraint failures are the
 * caller's data, not a broken database, and are classified as such. */
static int fail_sql(store *s, int rc, char *err, size_t errlen, const char *what) {
    store_error kind = STORE_E_DB;
    switch (rc) {
    case SQLITE_CONSTRAINT_CHECK:
    case SQLITE_CONSTRAINT_NOTNULL:
    case SQLITE_CONSTRAINT_DATATYPE: kind = STORE_E_INVALID; break;
    case SQLITE_CONSTRAINT_PRIMARYKEY:
    case SQLITE_CONSTRAINT_UNIQUE:
    case SQLITE_CONSTRAINT_TRIGGER: kind = STORE_E_CONFLICT; break;
    case SQLITE_CONSTRAINT_FOREIGNKEY: kind = STORE_E_NOT_FOUND; break;
    default: break;
    }
    return fail(s, kind, err, errlen, "%s: %s (sqlite error %d)", what, sqlite3_errmsg(s->db), rc);
}

store_error store_last_error(const store *s) { return s ? s->last_error : STORE_E_DB; }

/* ---- statements and transactions ----------------------------------------- */

static sqlite3_stmt *prep(store *s, enum stmt_id id, char *err, size_t errlen) {
    if (!s->stmt[id]) {
        int rc = sqlite3_prepare_v3(s->db, STMT_SQL[id], -1, SQLITE_PREPARE_PERSISTENT,
                                    &s->stmt[id], NULL);
        if (rc != SQLITE_OK) {
            fail_sql(s, rc, err, errlen, "preparing a statement");
            s->stmt[id] = NULL;
            return NULL;
        }
    }
    return s->stmt[id];
}

static void reset_all(store *s) {
    for (int i = 0; i < STMT_COUNT; i++)
        if (s->stmt[i]) sqlite3_reset(s->stmt[i]);
}

/* Step a prepared and bound statement that returns no rows to its end and
 * reset it; -1 with "<what>: <SQLite's message>" if it failed. */
static int run_stmt(store *s, sqlite3_stmt *st, const char *what, char *err, size_t errlen) {
    int rc = sqlite3_step(st);
    if (rc != SQLITE_DONE) fail_sql(s, rc, err, errlen, what);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

/* Run a statement that has no parameters and returns no rows. */
static int exec_stmt(store *s, enum stmt_id id, char *err, size_t errlen, const char *what) {
    sqlite3_stmt *st = prep(s, id, err, errlen);
    return st ? run_stmt(s, st, what, err, errlen) : -1;
}

/* Run a row-less statement whose only parameter ?1 is `key`. */
static int exec_stmt_bound_id(store *s, enum stmt_id id, const char *key, const char *what,
                              char *err, size_t errlen) {
    sqlite3_stmt *st = prep(s, id, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return run_stmt(s, st, what, err, errlen);
}

/* Run an INSERT whose ?1 is the new row's id (its other parameters bound)
 * and reset it, as run_stmt(). generate: a fresh random id goes into id for
 * each attempt, retried while it collides with an existing one; otherwise
 * id is inserted as it is, and a collision fails with STORE_E_CONFLICT. */
static int insert_with_id(store *s, sqlite3_stmt *st, char id[STORE_ID_SIZE], int generate,
                          const char *what, char *err, size_t errlen) {
    int rc;
    for (int attempt = 1;; attempt++) {
        if (generate) store_new_id(id);
        sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
        rc = sqlite3_step(st);
        if (rc != SQLITE_CONSTRAINT_PRIMARYKEY || !generate || attempt == ID_ATTEMPTS) break;
        sqlite3_reset(st);
    }
    if (rc != SQLITE_DONE) fail_sql(s, rc, err, errlen, what);
    sqlite3_reset(st);
    return rc == SQLITE_DONE ? 0 : -1;
}

static int tx_begin(store *s, char *err, size_t errlen) {
    return exec_stmt(s, STMT_BEGIN, err, errlen, "starting a write transaction");
}

static void tx_rollback(store *s) {
    reset_all(s);
    if (!sqlite3_get_autocommit(s->db)) {
        sqlite3_stmt *st = s->stmt[STMT_ROLLBACK];
        if (!st && sqlite3_prepare_v3(s->db, STMT_SQL[STMT_ROLLBACK], -1, SQLITE_PREPARE_PERSISTENT,
                                      &st, NULL) != SQLITE_OK)
            st = NULL;
        s->stmt[STMT_ROLLBACK] = st;
        if (st) {
            sqlite3_step(st);
            sqlite3_reset(st);
        }
    }
}

static int tx_commit(store *s, char *err, size_t errlen) {
    if (exec_stmt(s, STMT_COMMIT, err, errlen, "committing") != 0) {
        tx_rollback(s);
        return -1;
    }
    return 0;
}

/* ---- small helpers -------------------------------------------------------- */

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int is_id(const char *id) {
    if (!id || strlen(id) != STORE_ID_LEN) return 0;
    for (const char *p = id; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f'))) return 0;
    return 1;
}

/* 0 when id can name a `kind` ("job", "dataset"); otherwise no such one
 * exists, and the message quotes (the start of) what was asked for. */
static int check_id(store *s, const char *kind, const char *id, char *err, size_t errlen) {
    if (is_id(id)) return 0;
    return fail(s, STORE_E_NOT_FOUND, err, errlen, "no %s '%.*s'", kind, MSG_ID_MAX,
                id ? id : "(null)");
}

void store_new_id(char out[STORE_ID_SIZE]) {
    static const char HEX[] = "0123456789abcdef";
    unsigned char bytes[STORE_ID_LEN / 2];
    sqlite3_randomness((int)sizeof bytes, bytes);
    for (size_t i = 0; i < sizeof bytes; i++) {
        out[2 * i] = HEX[bytes[i] >> 4];
        out[2 * i + 1] = HEX[bytes[i] & 15];
    }
    out[STORE_ID_LEN] = '\0';
}

static int bind_text(sqlite3_stmt *st, int i, const char *v) {
    return v ? sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC) : sqlite3_bind_null(st, i);
}

/* *dst = copy of a text column, NULL for SQL NULL; -1 on OOM. */
static int dup_column(sqlite3_stmt *st, int col, char **dst) {
    *dst = NULL;
    if (sqlite3_column_type(st, col) == SQLITE_NULL) return 0;
    const char *v = (const char *)sqlite3_column_text(st, col);
    if (!v) return -1; /* text conversion ran out of memory */
    size_t len = (size_t)sqlite3_column_bytes(st, col);
    *dst = malloc(len + 1);
    if (!*dst) return -1;
    memcpy(*dst, v, len + 1);
    return 0;
}

/* Grow *arr (elements of size elem) so index *n is valid. */
static int grow(void **arr, size_t *cap, size_t n, size_t elem) {
    if (n < *cap) return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*arr, ncap * elem);
    if (!p) return -1;
    *arr = p;
    *cap = ncap;
    return 0;
}

static int check_page(store *s, int64_t limit, int64_t offset, char *err, size_t errlen) {
    if (limit < 1 || limit > STORE_LIST_LIMIT_MAX)
        return fail(s, STORE_E_INVALID, err, errlen, "limit %lld is outside 1..%d",
                    (long long)limit, STORE_LIST_LIMIT_MAX);
    if (offset < 0)
        return fail(s, STORE_E_INVALID, err, errlen, "offset %lld is negative", (long long)offset);
    return 0;
}

/* ---- reading rows --------------------------------------------------------- */

/* The statement's result columns are the layout's, by number and name, and
 * each member has the size its column type writes. For assert(). */
static int layout_matches(sqlite3_stmt *st, const row_layout *l) {
    if (sqlite3_column_count(st) != l->ncols) return 0;
    for (int i = 0; i < l->ncols; i++) {
        const column *c = &l->cols[i];
        const char *name = sqlite3_column_name(st, i);
        size_t want = 0;
        switch (c->type) {
        case COL_INT: want = sizeof(int); break;
        case COL_INT64:
        case COL_COUNT:
        case COL_TIME: want = sizeof(int64_t); break;
        case COL_DOUBLE:
        case COL_DOUBLE_OR_NAN: want = sizeof(double); break;
        case COL_TEXT: want = sizeof(char *); break;
        case COL_CHARS: want = c->size; break;
        case COL_JOB_STATUS: want = sizeof(store_job_status); break;
        case COL_EVENT_TYPE: want = sizeof(store_event_type); break;
        }
        if (!name || strcmp(name, c->name) != 0 || c->size != want || want == 0 ||
            c->offset + c->size > l->size)
            return 0;
    }
    return 1;
}

/* Free the COL_TEXT members of a row read with layout l and zero it. */
static void clear_row(const row_layout *l, void *row) {
    for (int i = 0; i < l->ncols; i++)
        if (l->cols[i].type == COL_TEXT) free(*(char **)((char *)row + l->cols[i].offset));
    memset(row, 0, l->size);
}

/* clear_row() each of rows[0..n), then free the array. */
static void free_rows(const row_layout *l, void *rows, size_t n) {
    for (size_t i = 0; rows && i < n; i++) clear_row(l, (char *)rows + i * l->size);
    free(rows);
}

/* Fill *row from the statement's current row; -1 (row cleared) when out of
 * memory or a name column holds no known name (the schema's CHECKs make that
 * unreachable). */
static int read_row(sqlite3_stmt *st, const row_layout *l, void *row) {
    memset(row, 0, l->size);
    for (int i = 0; i < l->ncols; i++) {
        const column *c = &l->cols[i];
        void *m = (char *)row + c->offset;
        int is_null = sqlite3_column_type(st, i) == SQLITE_NULL;
        int ok = 1;
        switch (c->type) {
        case COL_INT: *(int *)m = sqlite3_column_int(st, i); break;
        case COL_INT64: *(int64_t *)m = sqlite3_column_int64(st, i); break;
        case COL_TIME:
            *(int64_t *)m = is_null ? STORE_TIME_NONE : sqlite3_column_int64(st, i);
            break;
        case COL_COUNT:
            *(int64_t *)m = is_null ? STORE_COUNT_NONE : sqlite3_column_int64(st, i);
            break;
        case COL_DOUBLE: *(double *)m = sqlite3_column_double(st, i); break;
        case COL_DOUBLE_OR_NAN: *(double *)m = is_null ? NAN : sqlite3_column_double(st, i); break;
        case COL_TEXT: ok = dup_column(st, i, (char **)m) == 0; break;
        case COL_CHARS: {
            const char *v = (const char *)sqlite3_column_text(st, i);
            snprintf((char *)m, c->size, "%s", v ? v : "");
            break;
        }
        case COL_JOB_STATUS:
            ok = store_job_status_parse((const char *)sqlite3_column_text(st, i),
                                        (store_job_status *)m) == 0;
            break;
        case COL_EVENT_TYPE:
            ok = store_event_type_parse((const char *)sqlite3_column_text(st, i),
                                        (store_event_type *)m) == 0;
            break;
        }
        if (!ok) {
            clear_row(l, row);
            return -1;
        }
    }
    return 0;
}

/* Step st to its end, reading every row with layout l into a new array
 * (*out, NULL when *n == 0; release with free_rows), and reset it. -1 with
 * "<what>: <SQLite's message>" or "<what>: out of memory". */
static int query_rows(store *s, sqlite3_stmt *st, const row_layout *l, void **out, size_t *n,
                      const char *what, char *err, size_t errlen) {
    assert(layout_matches(st, l));
    void *rows = NULL;
    size_t cnt = 0, cap = 0;
    int rc;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (grow(&rows, &cap, cnt, l->size) != 0 ||
            read_row(st, l, (char *)rows + cnt * l->size) != 0) {
            fail(s, STORE_E_DB, err, errlen, "%s: out of memory", what);
            goto fail;
        }
        cnt++;
    }
    if (rc != SQLITE_DONE) {
        fail_sql(s, rc, err, errlen, what);
        goto fail;
    }
    sqlite3_reset(st);
    *out = rows;
    *n = cnt;
    return 0;

fail:
    sqlite3_reset(st);
    free_rows(l, rows, cnt);
    return -1;
}

/* Run st, which yields at most one row (a key lookup, LIMIT 1, or RETURNING
 * of one row; a second row fails as an SQLite error), to its end and reset
 * it: 1 with the row read into *row with layout l (l NULL: only whether there
 * is a row), 0 when there is none, -1 as query_rows(). Stepping past the row
 * is what completes an UPDATE or INSERT ... RETURNING and reports its late
 * errors (foreign keys), so it happens before the reset. */
static int query_row(store *s, sqlite3_stmt *st, const row_layout *l, void *row, const char *what,
                     char *err, size_t errlen) {
    assert(!l || layout_matches(st, l));
    int rc = sqlite3_step(st);
    int got = rc == SQLITE_ROW;
    if (got) {
        if (l && read_row(st, l, row) != 0) {
            fail(s, STORE_E_DB, err, errlen, "%s: out of memory", what);
            sqlite3_reset(st);
            return -1;
        }
        rc = sqlite3_step(st);
    }
    if (rc != SQLITE_DONE) {
        fail_sql(s, rc, err, errlen, what);
        if (got && l) clear_row(l, row);
        sqlite3_reset(st);
        return -1;
    }
    sqlite3_reset(st);
    return got;
}

/* query_row() of statement `id` with its one parameter ?1 bound to key. */
static int query_row_by_key(store *s, enum stmt_id id, const char *key, const row_layout *l,
                            void *row, const char *what, char *err, size_t errlen) {
    sqlite3_stmt *st = prep(s, id, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, key, -1, SQLITE_STATIC);
    return query_row(s, st, l, row, what, err, errlen);
}

/* Read the `kind` ("job", "dataset") with this id into *out through
 * statement `stmt` (SELECT ... WHERE id = ?1); NOT_FOUND if there is none. */
static int get_by_id(store *s, enum stmt_id stmt, const row_layout *l, const char *kind,
                     const char *id, void *out, char *err, size_t errlen) {
    if (check_id(s, kind, id, err, errlen) != 0) return -1;
    char what[32];
    snprintf(what, sizeof what, "reading %s", kind);
    int got = query_row_by_key(s, stmt, id, l, out, what, err, errlen);
    if (got == 0) return fail(s, STORE_E_NOT_FOUND, err, errlen, "no %s %s", kind, id);
    return got == 1 ? 0 : -1;
}

/* ---- connection ----------------------------------------------------------- */

/* Run a PRAGMA and copy its first result column (or "" if no row). */
static int pragma_text(sqlite3 *db, const char *sql, char *out, size_t outlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &st, NULL);
    if (rc != SQLITE_OK) return rc;
    out[0] = '\0';
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW) {
        const char *v = (const char *)sqlite3_column_text(st, 0);
        snprintf(out, outlen, "%s", v ? v : "");
        rc = SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(st);
    return rc;
}

/* Longest single back-off sleep while retrying the switch to WAL (ms). */
#define WAL_RETRY_SLEEP_MAX_MS 32

/* PRAGMA journal_mode = WAL, retried while another connection holds a lock.
 * Switching a new file to WAL upgrades the read lock the pragma already holds
 * to an exclusive one, and SQLite does not call the busy handler for such an
 * upgrade (two connections doing it at once would wait on each other); so
 * when several threads open a fresh file together, all but one get
 * SQLITE_BUSY at once. Retrying with back-off, within the same busy timeout,
 * lets the first finish; the others then find the file already in WAL mode.
 * tests/test_store.c (concurrent first open) fails without this loop. */
static int set_wal_mode(sqlite3 *db, char *mode, size_t modelen) {
    int slept = 0, nap = 1;
    for (;;) {
        int rc = pragma_text(db, "PRAGMA journal_mode = WAL", mode, modelen);
        if ((rc & 0xff) != SQLITE_BUSY || slept >= STORE_BUSY_TIMEOUT_MS) return rc;
        slept += sqlite3_sleep(nap);
        if (nap < WAL_RETRY_SLEEP_MAX_MS) nap *= 2;
    }
}

store *store_open(const char *path, char *err, size_t errlen) {
    if (!path || !*path) {
        write_err(err, errlen, "store_open: empty database path");
        return NULL;
    }
    if (!sqlite3_threadsafe()) {
        /* One connection per thread needs at least SQLITE_THREADSAFE=2. */
        write_err(err, errlen, "store_open: this SQLite library was built without threads");
        return NULL;
    }
    store *s = calloc(1, sizeof *s);
    if (!s) {
        write_err(err, errlen, "store_open: out of memory");
        return NULL;
    }
    /* NOMUTEX: each connection is used by one thread, so SQLite's per-call
     * connection mutex would be pure overhead. */
    int rc = sqlite3_open_v2(
        path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        write_err(err, errlen, "cannot open database %s: %s", path,
                  s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        goto fail;
    }
    sqlite3_extended_result_codes(s->db, 1);
    /* Before anything that may lock: switching to WAL and migrating must
     * wait for other connections opening the same file at the same time. */
    sqlite3_busy_timeout(s->db, STORE_BUSY_TIMEOUT_MS);

    char mode[32];
    rc = set_wal_mode(s->db, mode, sizeof mode);
    if (rc != SQLITE_OK) {
        write_err(err, errlen, "database %s: setting WAL mode: %s", path, sqlite3_errmsg(s->db));
        goto fail;
    }
    if (strcmp(mode, "wal") != 0) {
        write_err(err, errlen, "database %s: cannot use WAL mode (journal_mode stays '%s')", path,
                  mode);
        goto fail;
    }
    char fk[8];
    if ((rc = pragma_text(s->db, "PRAGMA synchronous = NORMAL", mode, sizeof mode)) != SQLITE_OK ||
        (rc = pragma_text(s->db, "PRAGMA foreign_keys = ON", mode, sizeof mode)) != SQLITE_OK ||
        (rc = pragma_text(s->db, "PRAGMA foreign_keys", fk, sizeof fk)) != SQLITE_OK) {
        write_err(err, errlen, "database %s: configuring connection: %s", path,
                  sqlite3_errmsg(s->db));
        goto fail;
    }
    if (strcmp(fk, "1") != 0) {
        write_err(err, errlen, "database %s: this SQLite does not enforce foreign keys", path);
        goto fail;
    }

    char merr[512];
    if (migrate_apply(s->db, migrations_embedded, migrations_embedded_count, NULL, merr,
                      sizeof merr) != 0) {
        write_err(err, errlen, "database %s: %s", path, merr);
        goto fail;
    }
    return s;

fail:
    sqlite3_close(s->db);
    free(s);
    return NULL;
}

void store_close(store *s) {
    if (!s) return;
    for (int i = 0; i < STMT_COUNT; i++) sqlite3_finalize(s->stmt[i]);
    /* With every statement finalized close cannot report SQLITE_BUSY; the
     * last connection to close checkpoints and removes the WAL. */
    sqlite3_close(s->db);
    free(s);
}

struct sqlite3 *store_sqlite(store *s) {
    return s->db;
}

int store_check_integrity(store *s, char *err, size_t errlen) {
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(s->db, "PRAGMA integrity_check", -1, &st, NULL);
    if (rc != SQLITE_OK) return fail_sql(s, rc, err, errlen, "integrity check");
    rc = sqlite3_step(st);
    if (rc != SQLITE_ROW) {
        fail_sql(s, rc, err, errlen, "integrity check");
        sqlite3_finalize(st);
        return -1;
    }
    const char *first = (const char *)sqlite3_column_text(st, 0);
    int ok = first && strcmp(first, "ok") == 0;
    if (!ok)
        fail(s, STORE_E_DB, err, errlen, "integrity check failed: %s",
             first ? first : "(no message)");
    sqlite3_finalize(st);
    return ok ? 0 : -1;
}

int store_checkpoint(store *s, char *err, size_t errlen) {
    int rc = sqlite3_wal_checkpoint_v2(s->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK) return fail_sql(s, rc, err, errlen, "checkpoint");
    return 0;
}

/* ---- events (internal) ---------------------------------------------------- */

/* Append a status event inside the caller's transaction. Optional members:
 * attempt (> 0), error, cancel_requested (nonzero), reason. */
static int append_status_event(store *s, const char *job_id, store_job_status status, int attempt,
                               const char *error, int cancel_requested, const char *reason,
                               int64_t now, char *err, size_t errlen) {
    sqlite3_stmt *st = prep(s, STMT_EVENT_INSERT_STATUS, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, STATUS_NAMES[status], -1, SQLITE_STATIC);
    if (attempt > 0)
        sqlite3_bind_int(st, 3, attempt);
    else
        sqlite3_bind_null(st, 3);
    bind_text(st, 4, error);
    bind_text(st, 5, cancel_requested ? "true" : NULL);
    bind_text(st, 6, reason);
    sqlite3_bind_int64(st, 7, now);
    return run_stmt(s, st, "recording status event", err, errlen);
}

/* Append one event inside the caller's transaction (or as its own). */
static int insert_event(store *s, const char *job_id, store_event_type type, const char *payload,
                        int64_t now, int64_t *seq_out, char *err, size_t errlen) {
    if (check_id(s, "job", job_id, err, errlen) != 0) return -1;
    if ((unsigned)type >= STORE_EVENT_TYPE_COUNT)
        return fail(s, STORE_E_INVALID, err, errlen, "event type %d is not known", (int)type);
    if (!payload) return fail(s, STORE_E_INVALID, err, errlen, "event payload is NULL");
    sqlite3_stmt *st = prep(s, STMT_EVENT_INSERT, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, EVENT_TYPE_NAMES[type], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, payload, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    event_seq row;
    int got = query_row(s, st, &EVENT_SEQ_ROW, &row, "appending event", err, errlen);
    if (got < 0 && s->last_error == STORE_E_NOT_FOUND) /* the job's foreign key */
        return fail(s, STORE_E_NOT_FOUND, err, errlen, "no job %s", job_id);
    if (got < 0) return -1;
    assert(got == 1); /* INSERT ... SELECT of an aggregate: always one row */
    if (seq_out) *seq_out = row.seq;
    return 0;
}

/* ---- jobs ----------------------------------------------------------------- */

/* Frees spec, metrics and error: JOB_ROW's text columns. */
void store_job_clear(store_job *j) {
    if (j) clear_row(&JOB_ROW, j);
}

void store_job_list_free(store_job *jobs, size_t n) { free_rows(&JOB_ROW, jobs, n); }

/* NOT_FOUND unless dataset `id` exists (inside the caller's transaction). */
static int need_dataset(store *s, const char *id, const char *role, char *err, size_t errlen) {
    if (!is_id(id))
        return fail(s, STORE_E_NOT_FOUND, err, errlen, "no dataset '%.*s' (%s)", MSG_ID_MAX, id,
                    role);
    int got =
        query_row_by_key(s, STMT_DATASET_EXISTS, id, NULL, NULL, "looking up dataset", err, errlen);
    if (got == 0) return fail(s, STORE_E_NOT_FOUND, err, errlen, "no dataset %s (%s)", id, role);
    return got == 1 ? 0 : -1;
}

int store_job_create(store *s, const char *spec_json, const char *train_dataset_id,
                     const char *eval_dataset_id, char id_out[STORE_ID_SIZE], char *err,
                     size_t errlen) {
    if (!spec_json) return fail(s, STORE_E_INVALID, err, errlen, "job spec is NULL");
    /* No uploaded dataset: the built-in demo, or files named in the spec. */
    if (train_dataset_id && !*train_dataset_id) train_dataset_id = NULL;
    if (eval_dataset_id && !*eval_dataset_id) eval_dataset_id = NULL;

    if (tx_begin(s, err, errlen) != 0) return -1;
    if ((train_dataset_id &&
         need_dataset(s, train_dataset_id, "train_dataset_id", err, errlen) != 0) ||
        (eval_dataset_id && need_dataset(s, eval_dataset_id, "eval_dataset_id", err, errlen) != 0))
        goto fail;

    int64_t now = now_ms();
    char id[STORE_ID_SIZE];
    sqlite3_stmt *st = prep(s, STMT_JOB_INSERT, err, errlen);
    if (!st) goto fail;
    sqlite3_bind_text(st, 2, spec_json, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 3, now);
    bind_text(st, 4, train_dataset_id);
    bind_text(st, 5, eval_dataset_id);
    if (insert_with_id(s, st, id, 1, "creating job", err, errlen) != 0 ||
        append_status_event(s, id, STORE_JOB_QUEUED, 0, NULL, 0, NULL, now, err, errlen) != 0 ||
        tx_commit(s, err, errlen) != 0)
        goto fail;
    memcpy(id_out, id, STORE_ID_SIZE);
    return 0;

fail:
    tx_rollback(s);
    return -1;
}

int store_job_get(store *s, const char *id, store_job *out, char *err, size_t errlen) {
    return get_by_id(s, STMT_JOB_GET, &JOB_ROW, "job", id, out, err, errlen);
}

int store_job_list(store *s, int status, int64_t limit, int64_t offset, store_job **out, size_t *n,
                   char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (status != STORE_STATUS_ANY && !store_job_status_name((store_job_status)status))
        return fail(s, STORE_E_INVALID, err, errlen, "job status %d is not known", status);
    if (check_page(s, limit, offset, err, errlen) != 0) return -1;
    sqlite3_stmt *st =
        prep(s, status == STORE_STATUS_ANY ? STMT_JOB_LIST_ALL : STMT_JOB_LIST_STATUS, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, limit);
    sqlite3_bind_int64(st, 2, offset);
    if (status != STORE_STATUS_ANY)
        sqlite3_bind_text(st, 3, STATUS_NAMES[status], -1, SQLITE_STATIC);
    void *jobs;
    if (query_rows(s, st, &JOB_ROW, &jobs, n, "listing jobs", err, errlen) != 0) return -1;
    *out = jobs;
    return 0;
}

int store_job_counts(store *s, int64_t counts[STORE_JOB_STATUS_COUNT], char *err, size_t errlen) {
    for (int i = 0; i < STORE_JOB_STATUS_COUNT; i++) counts[i] = 0;
    sqlite3_stmt *st = prep(s, STMT_JOB_COUNTS, err, errlen);
    if (!st) return -1;
    void *rows;
    size_t n;
    if (query_rows(s, st, &STATUS_COUNT_ROW, &rows, &n, "counting jobs", err, errlen) != 0)
        return -1;
    const status_count *row = rows;
    for (size_t i = 0; i < n; i++) counts[row[i].status] = row[i].count;
    free_rows(&STATUS_COUNT_ROW, rows, n);
    return 0;
}

int store_claim_next_job(store *s, store_job *out, char *err, size_t errlen) {
    /* Idle workers poll; answering "nothing queued" from a plain read keeps
     * them from taking the write lock each time. A job queued just after
     * this read is found by the next poll, as if we had polled earlier. */
    sqlite3_stmt *st = prep(s, STMT_JOB_ANY_QUEUED, err, errlen);
    if (!st) return -1;
    int got = query_row(s, st, NULL, NULL, "looking for queued jobs", err, errlen);
    if (got <= 0) return got;

    if (tx_begin(s, err, errlen) != 0) return -1;
    int64_t now = now_ms();
    store_job job;
    memset(&job, 0, sizeof job);
    st = prep(s, STMT_JOB_CLAIM, err, errlen);
    if (!st) goto fail;
    sqlite3_bind_int64(st, 1, now);
    got = query_row(s, st, &JOB_ROW, &job, "claiming a job", err, errlen);
    if (got < 0) goto fail;
    if (got == 0) { /* another worker took the last one */
        tx_rollback(s);
        return 0;
    }
    if (append_status_event(s, job.id, STORE_JOB_RUNNING, job.attempts, NULL, 0, NULL, now, err,
                            errlen) != 0 ||
        tx_commit(s, err, errlen) != 0)
        goto fail;
    *out = job;
    return 1;

fail:
    tx_rollback(s);
    store_job_clear(&job);
    return -1;
}

/* Read a job's status and cancel flag; NOT_FOUND if there is no such job. */
static int job_state(store *s, const char *id, job_state_row *out, char *err, size_t errlen) {
    int got = query_row_by_key(s, STMT_JOB_STATE, id, &JOB_STATE_ROW, out, "reading job state", err,
                               errlen);
    if (got == 0) return fail(s, STORE_E_NOT_FOUND, err, errlen, "no job %s", id);
    return got == 1 ? 0 : -1;
}

/* Check id, start a write transaction and read the job's state in it: 0, or
 * -1 with nothing left open. */
static int tx_begin_on_job(store *s, const char *id, job_state_row *state, char *err,
                           size_t errlen) {
    if (check_id(s, "job", id, err, errlen) != 0 || tx_begin(s, err, errlen) != 0) return -1;
    if (job_state(s, id, state, err, errlen) != 0) {
        tx_rollback(s);
        return -1;
    }
    return 0;
}

/* Explain why a job that should have been `expected` was not. */
static int not_in_state(store *s, const char *id, const char *expected, char *err, size_t errlen) {
    job_state_row state;
    if (job_state(s, id, &state, err, errlen) == 0)
        fail(s, STORE_E_CONFLICT, err, errlen, "job %s is %s, not %s", id,
             STATUS_NAMES[state.status], expected);
    return -1;
}

int store_job_update_progress(store *s, const char *id, const store_progress *p, char *err,
                              size_t errlen) {
    if (check_id(s, "job", id, err, errlen) != 0) return -1;
    sqlite3_stmt *st = prep(s, STMT_JOB_PROGRESS, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, p->step);
    sqlite3_bind_int64(st, 3, p->total_steps);
    sqlite3_bind_int64(st, 4, p->epoch);
    if (isnan(p->loss))
        sqlite3_bind_null(st, 5); /* SQLite has no NaN; NULL reads back as NAN */
    else
        sqlite3_bind_double(st, 5, p->loss);
    sqlite3_bind_int64(st, 6, p->flops_forward);
    sqlite3_bind_int64(st, 7, p->flops_backward_input);
    sqlite3_bind_int64(st, 8, p->flops_backward_weight);
    sqlite3_bind_int64(st, 9, p->trainable_now);
    sqlite3_bind_double(st, 10, p->trainable_avg);
    sqlite3_bind_int64(st, 11, p->frozen);
    sqlite3_bind_int64(st, 12, p->freezable);
    job_state_row row;
    int got = query_row(s, st, &JOB_STATE_ROW, &row, "updating progress", err, errlen);
    if (got == 0) return not_in_state(s, id, "running", err, errlen);
    if (got < 0) return -1;
    return row.cancel_requested ? 1 : 0;
}

/* UPDATE a job from status `from` to terminal status `to` inside the caller's
 * transaction, with its status event. */
static int transition_to_final(store *s, const char *id, store_job_status from, store_job_status to,
                               const char *metrics, const char *error, const char *reason,
                               int64_t now, char *err, size_t errlen) {
    /* Only queued or running jobs finish, and only as succeeded, failed (with
     * a reason) or cancelled; callers decide that before they get here. */
    assert(from == STORE_JOB_QUEUED || from == STORE_JOB_RUNNING);
    assert(to == STORE_JOB_SUCCEEDED || to == STORE_JOB_CANCELLED ||
           (to == STORE_JOB_FAILED && error && *error));
    sqlite3_stmt *st = prep(s, STMT_JOB_FINISH, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, STATUS_NAMES[from], -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, STATUS_NAMES[to], -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, now);
    bind_text(st, 5, metrics);
    bind_text(st, 6, error);
    if (run_stmt(s, st, "finishing job", err, errlen) != 0) return -1;
    if (sqlite3_changes(s->db) != 1) return not_in_state(s, id, STATUS_NAMES[from], err, errlen);
    return append_status_event(s, id, to, 0, error, 0, reason, now, err, errlen);
}

int store_job_finish(store *s, const char *id, store_job_status final, const char *metrics_json,
                     const char *error, char *err, size_t errlen) {
    if (final != STORE_JOB_SUCCEEDED && final != STORE_JOB_FAILED && final != STORE_JOB_CANCELLED)
        return fail(s, STORE_E_INVALID, err, errlen,
                    "a job can only finish succeeded, failed or cancelled, not %s",
                    store_job_status_name(final) ? store_job_status_name(final) : "(unknown)");
    if (final == STORE_JOB_FAILED && (!error || !*error))
        return fail(s, STORE_E_INVALID, err, errlen, "a failed job needs an error message");
    if (check_id(s, "job", id, err, errlen) != 0) return -1;
    if (tx_begin(s, err, errlen) != 0) return -1;
    if (transition_to_final(s, id, STORE_JOB_RUNNING, final, metrics_json, error, NULL, now_ms(),
                            err, errlen) != 0 ||
        tx_commit(s, err, errlen) != 0) {
        tx_rollback(s);
        return -1;
    }
    return 0;
}

int store_job_request_cancel(store *s, const char *id, char *err, size_t errlen) {
    job_state_row state;
    if (tx_begin_on_job(s, id, &state, err, errlen) != 0) return -1;
    int64_t now = now_ms();
    int outcome;
    if (state.status == STORE_JOB_QUEUED) {
        if (transition_to_final(s, id, STORE_JOB_QUEUED, STORE_JOB_CANCELLED, NULL, NULL, NULL, now,
                                err, errlen) != 0)
            goto fail;
        outcome = STORE_CANCEL_DONE;
    } else if (state.status == STORE_JOB_RUNNING) {
        if (!state.cancel_requested) { /* asking twice changes nothing and logs nothing */
            if (exec_stmt_bound_id(s, STMT_JOB_SET_CANCEL, id, "requesting cancel", err, errlen) !=
                    0 ||
                append_status_event(s, id, STORE_JOB_RUNNING, 0, NULL, 1, NULL, now, err, errlen) !=
                    0)
                goto fail;
        }
        outcome = STORE_CANCEL_REQUESTED;
    } else {
        outcome = STORE_CANCEL_ALREADY_FINISHED;
    }
    if (tx_commit(s, err, errlen) != 0) return -1;
    return outcome;

fail:
    tx_rollback(s);
    return -1;
}

/* Why store_requeue_running() changed a job, recorded in its status event. */
#define REQUEUE_REASON "the daemon stopped while the job was running"

int store_requeue_running(store *s, int max_crashes, store_requeue_result *out, char *err,
                          size_t errlen) {
    store_requeue_result res = {0, 0, 0};
    void *rows = NULL;
    size_t cnt = 0;

    if (tx_begin(s, err, errlen) != 0) return -1;
    /* A clean stop left nothing running (store_job_release), so whatever is
     * running now, the daemon died under. */
    if (exec_stmt(s, STMT_JOB_COUNT_CRASHES, err, errlen, "counting crashes") != 0) goto fail;
    /* Collect first, then change: never update the rows a live SELECT walks. */
    sqlite3_stmt *st = prep(s, STMT_JOB_LIST_RUNNING, err, errlen);
    if (!st ||
        query_rows(s, st, &RUNNING_JOB_ROW, &rows, &cnt, "listing running jobs", err, errlen) != 0)
        goto fail;

    const running_job *jobs = rows;
    int64_t now = now_ms();
    for (size_t i = 0; i < cnt; i++) {
        const char *id = jobs[i].id;
        if (jobs[i].cancel_requested) {
            if (transition_to_final(s, id, STORE_JOB_RUNNING, STORE_JOB_CANCELLED, NULL, NULL,
                                    REQUEUE_REASON, now, err, errlen) != 0)
                goto fail;
            res.cancelled++;
        } else if (max_crashes > 0 && jobs[i].crashes >= max_crashes) {
            char msg[200];
            snprintf(msg, sizeof msg,
                     "gave up after %d crashes: the daemon died while this job ran, each time "
                     "(clean shutdowns do not count; POST /jobs/%s/retry runs it again)",
                     jobs[i].crashes, id);
            if (transition_to_final(s, id, STORE_JOB_RUNNING, STORE_JOB_FAILED, NULL, msg,
                                    REQUEUE_REASON, now, err, errlen) != 0)
                goto fail;
            res.failed++;
        } else {
            if (exec_stmt_bound_id(s, STMT_JOB_REQUEUE, id, "requeueing job", err, errlen) != 0 ||
                append_status_event(s, id, STORE_JOB_QUEUED, 0, NULL, 0, REQUEUE_REASON, now, err,
                                    errlen) != 0)
                goto fail;
            res.requeued++;
        }
    }
    if (tx_commit(s, err, errlen) != 0) {
        free_rows(&RUNNING_JOB_ROW, rows, cnt);
        return -1;
    }
    free_rows(&RUNNING_JOB_ROW, rows, cnt);
    if (out) *out = res;
    return 0;

fail:
    tx_rollback(s);
    free_rows(&RUNNING_JOB_ROW, rows, cnt);
    return -1;
}

int store_job_release(store *s, const char *id, const char *reason, char *err, size_t errlen) {
    job_state_row state;
    if (tx_begin_on_job(s, id, &state, err, errlen) != 0) return -1;
    if (state.status != STORE_JOB_RUNNING) {
        fail(s, STORE_E_CONFLICT, err, errlen, "job %s is %s, not running", id,
             STATUS_NAMES[state.status]);
        goto fail;
    }
    int64_t now = now_ms();
    int outcome;
    if (state.cancel_requested) { /* asked to stop for good while it was stopping anyway */
        if (transition_to_final(s, id, STORE_JOB_RUNNING, STORE_JOB_CANCELLED, NULL, NULL, reason,
                                now, err, errlen) != 0)
            goto fail;
        outcome = STORE_RELEASE_CANCELLED;
    } else {
        if (exec_stmt_bound_id(s, STMT_JOB_REQUEUE, id, "requeueing job", err, errlen) != 0 ||
            append_status_event(s, id, STORE_JOB_QUEUED, 0, NULL, 0, reason, now, err, errlen) != 0)
            goto fail;
        outcome = STORE_RELEASE_QUEUED;
    }
    if (tx_commit(s, err, errlen) != 0) return -1;
    return outcome;

fail:
    tx_rollback(s);
    return -1;
}

/* A dataset a retried job needs must still exist (inside the transaction). */
static int retry_needs_dataset(store *s, const char *job, const char *ds, const char *role,
                               char *err, size_t errlen) {
    if (!ds || !*ds) return 0;
    if (need_dataset(s, ds, role, err, errlen) == 0) return 0;
    if (store_last_error(s) == STORE_E_NOT_FOUND)
        fail(s, STORE_E_CONFLICT, err, errlen,
             "job %s cannot run again: its %s dataset %.*s has been deleted (submit a new job "
             "with another dataset)",
             job, role, MSG_ID_MAX, ds);
    return -1;
}

#define RETRY_REASON "retry requested"

int store_job_retry(store *s, const char *id, const char *train_dataset_id,
                    const char *eval_dataset_id, char *err, size_t errlen) {
    job_state_row state;
    if (tx_begin_on_job(s, id, &state, err, errlen) != 0) return -1;
    if (state.status != STORE_JOB_FAILED && state.status != STORE_JOB_CANCELLED) {
        fail(s, STORE_E_CONFLICT, err, errlen,
             "job %s is %s: only a failed or cancelled job can be retried", id,
             STATUS_NAMES[state.status]);
        goto fail;
    }
    if (retry_needs_dataset(s, id, train_dataset_id, "train", err, errlen) != 0 ||
        retry_needs_dataset(s, id, eval_dataset_id, "eval", err, errlen) != 0)
        goto fail;
    sqlite3_stmt *st = prep(s, STMT_JOB_RETRY, err, errlen);
    if (!st) goto fail;
    sqlite3_bind_text(st, 1, id, -1, SQLITE_STATIC);
    bind_text(st, 2, train_dataset_id && *train_dataset_id ? train_dataset_id : NULL);
    bind_text(st, 3, eval_dataset_id && *eval_dataset_id ? eval_dataset_id : NULL);
    if (run_stmt(s, st, "requeueing job for a retry", err, errlen) != 0 ||
        append_status_event(s, id, STORE_JOB_QUEUED, 0, NULL, 0, RETRY_REASON, now_ms(), err,
                            errlen) != 0 ||
        tx_commit(s, err, errlen) != 0)
        goto fail;
    return 0;

fail:
    tx_rollback(s);
    return -1;
}

/* ---- events --------------------------------------------------------------- */

int store_event_append(store *s, const char *job_id, store_event_type type,
                       const char *payload_json, int64_t *seq_out, char *err, size_t errlen) {
    /* One INSERT is its own transaction and takes the write lock before it
     * reads max(seq), so no BEGIN IMMEDIATE is needed here. */
    return insert_event(s, job_id, type, payload_json, now_ms(), seq_out, err, errlen);
}

int store_event_append_batch(store *s, const store_event_new *events, size_t n, int64_t *seqs_out,
                             char *err, size_t errlen) {
    if (n == 0) return 0;
    if (!events) return fail(s, STORE_E_INVALID, err, errlen, "event batch is NULL");
    if (tx_begin(s, err, errlen) != 0) return -1;
    int64_t now = now_ms();
    for (size_t i = 0; i < n; i++) {
        char ierr[384];
        if (insert_event(s, events[i].job_id, events[i].type, events[i].payload, now,
                         seqs_out ? &seqs_out[i] : NULL, ierr, sizeof ierr) != 0) {
            write_err(err, errlen, "event %zu of %zu: %s", i + 1, n, ierr);
            tx_rollback(s);
            return -1;
        }
    }
    return tx_commit(s, err, errlen);
}

void store_event_list_free(store_event *events, size_t n) { free_rows(&EVENT_ROW, events, n); }

/* NOT_FOUND unless job `id` exists. */
static int need_job(store *s, const char *id, char *err, size_t errlen) {
    int got = query_row_by_key(s, STMT_JOB_EXISTS, id, NULL, NULL, "looking up job", err, errlen);
    if (got == 0) return fail(s, STORE_E_NOT_FOUND, err, errlen, "no job %s", id);
    return got == 1 ? 0 : -1;
}

int store_event_list(store *s, const char *job_id, int64_t after_seq, int64_t limit,
                     store_event **out, size_t *n, char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (check_id(s, "job", job_id, err, errlen) != 0) return -1;
    if (check_page(s, limit, 0, err, errlen) != 0) return -1;
    sqlite3_stmt *st = prep(s, STMT_EVENT_LIST, err, errlen);
    if (!st) return -1;
    sqlite3_bind_text(st, 1, job_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, after_seq);
    sqlite3_bind_int64(st, 3, limit);
    void *evs;
    size_t cnt;
    if (query_rows(s, st, &EVENT_ROW, &evs, &cnt, "listing events", err, errlen) != 0) return -1;
    /* Every job has event 1, so an empty answer may mean "no such job". */
    if (cnt == 0 && need_job(s, job_id, err, errlen) != 0) return -1;
    *out = evs;
    *n = cnt;
    return 0;
}

/* ---- datasets ------------------------------------------------------------- */

/* Frees name, format and path: DATASET_ROW's text columns. */
void store_dataset_clear(store_dataset *d) {
    if (d) clear_row(&DATASET_ROW, d);
}

void store_dataset_list_free(store_dataset *d, size_t n) { free_rows(&DATASET_ROW, d, n); }

int store_dataset_create(store *s, const store_dataset *d, char id_out[STORE_ID_SIZE], char *err,
                         size_t errlen) {
    if (!d || !d->name || !d->format || !d->path)
        return fail(s, STORE_E_INVALID, err, errlen, "dataset needs a name, a format and a path");
    int generate = d->id[0] == '\0';
    if (!generate && !is_id(d->id))
        return fail(s, STORE_E_INVALID, err, errlen,
                    "dataset id '%.*s' is not %d lowercase hex characters", MSG_ID_MAX, d->id,
                    STORE_ID_LEN);
    sqlite3_stmt *st = prep(s, STMT_DATASET_INSERT, err, errlen);
    if (!st) return -1;
    char id[STORE_ID_SIZE];
    memcpy(id, d->id, STORE_ID_SIZE);
    sqlite3_bind_text(st, 2, d->name, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, d->format, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 4, d->rows);
    sqlite3_bind_int64(st, 5, d->bytes);
    sqlite3_bind_text(st, 6, d->sha256, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 7, now_ms());
    sqlite3_bind_text(st, 8, d->path, -1, SQLITE_STATIC);
    bind_text(st, 9, d->task);
    bind_text(st, 10, d->form);
    if (d->tokens >= 0)
        sqlite3_bind_int64(st, 11, d->tokens);
    else
        sqlite3_bind_null(st, 11);
    if (insert_with_id(s, st, id, generate, "creating dataset", err, errlen) != 0) {
        /* The primary key is the one constraint of datasets that conflicts. */
        if (!generate && s->last_error == STORE_E_CONFLICT)
            fail(s, STORE_E_CONFLICT, err, errlen, "dataset %s already exists", id);
        return -1;
    }
    memcpy(id_out, id, STORE_ID_SIZE);
    return 0;
}

int store_dataset_get(store *s, const char *id, store_dataset *out, char *err, size_t errlen) {
    return get_by_id(s, STMT_DATASET_GET, &DATASET_ROW, "dataset", id, out, err, errlen);
}

int store_dataset_list(store *s, int64_t limit, int64_t offset, store_dataset **out, size_t *n,
                       char *err, size_t errlen) {
    *out = NULL;
    *n = 0;
    if (check_page(s, limit, offset, err, errlen) != 0) return -1;
    sqlite3_stmt *st = prep(s, STMT_DATASET_LIST, err, errlen);
    if (!st) return -1;
    sqlite3_bind_int64(st, 1, limit);
    sqlite3_bind_int64(st, 2, offset);
    void *ds;
    if (query_rows(s, st, &DATASET_ROW, &ds, n, "listing datasets", err, errlen) != 0) return -1;
    *out = ds;
    return 0;
}

int store_dataset_delete(store *s, const char *id, char *err, size_t errlen) {
    if (check_id(s, "dataset", id, err, errlen) != 0) return -1;
    if (tx_begin(s, err, errlen) != 0) return -1;
    if (need_dataset(s, id, "delete", err, errlen) != 0) goto fail;
    job_ref user;
    int got = query_row_by_key(s, STMT_DATASET_USER, id, &JOB_REF_ROW, &user,
                               "checking dataset users", err, errlen);
    if (got == 1)
        fail(s, STORE_E_CONFLICT, err, errlen,
             "dataset %s is used by %s job %s; cancel the job or wait for it to finish", id,
             STATUS_NAMES[user.status], user.id);
    if (got != 0) goto fail;
    if (exec_stmt_bound_id(s, STMT_DATASET_DELETE, id, "deleting dataset", err, errlen) != 0 ||
        tx_commit(s, err, errlen) != 0)
        goto fail;
    return 0;

fail:
    tx_rollback(s);
    return -1;
}
