-- 0001_init.sql — aflorad's first schema: uploaded datasets, the job queue,
-- and each job's append-only event log.
--
-- daemon/migrate.c runs this inside one transaction and then sets
-- PRAGMA user_version = 1, so it must not contain BEGIN/COMMIT. It is embedded
-- into the binary by migrations/embed.sh (daemon/migrations_gen.c); rerun that
-- script after any edit (tests/test_store.c fails while the two differ).
--
-- Tables are STRICT so a wrong type from a caller is an error, not a silently
-- stored string. The CHECK constraints state the invariants the daemon relies
-- on (a finished job has finished_at, a failed one has an error, ...), so a bug
-- in the C code fails loudly instead of writing an impossible row. Times are
-- unix milliseconds.

CREATE TABLE datasets (
    id          TEXT    NOT NULL PRIMARY KEY
                CONSTRAINT dataset_id_is_16_hex
                CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'),
    name        TEXT    NOT NULL CONSTRAINT dataset_name_nonempty CHECK (length(name) > 0),
    format      TEXT    NOT NULL CONSTRAINT dataset_format_nonempty CHECK (length(format) > 0),
    rows        INTEGER NOT NULL CONSTRAINT dataset_rows_nonnegative CHECK (rows >= 0),
    bytes       INTEGER NOT NULL CONSTRAINT dataset_bytes_nonnegative CHECK (bytes >= 0),
    sha256      TEXT    NOT NULL
                CONSTRAINT dataset_sha256_is_64_hex
                CHECK (length(sha256) = 64 AND sha256 NOT GLOB '*[^0-9a-f]*'),
    created_at  INTEGER NOT NULL,
    path        TEXT    NOT NULL CONSTRAINT dataset_path_nonempty CHECK (length(path) > 0)
) STRICT;

CREATE INDEX datasets_by_created ON datasets (created_at);

CREATE TABLE jobs (
    id               TEXT    NOT NULL PRIMARY KEY
                     CONSTRAINT job_id_is_16_hex
                     CHECK (length(id) = 16 AND id NOT GLOB '*[^0-9a-f]*'),
    spec             TEXT    NOT NULL
                     CONSTRAINT job_spec_is_json_object
                     CHECK (json_valid(spec) AND json_type(spec) = 'object'),
    status           TEXT    NOT NULL DEFAULT 'queued'
                     CONSTRAINT job_status_known
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    created_at       INTEGER NOT NULL,
    started_at       INTEGER,           -- last time a worker claimed it
    finished_at      INTEGER,

    -- progress, overwritten by the worker as training goes
    step             INTEGER NOT NULL DEFAULT 0 CHECK (step >= 0),
    total_steps      INTEGER NOT NULL DEFAULT 0 CHECK (total_steps >= 0),
    epoch            INTEGER NOT NULL DEFAULT 0 CHECK (epoch >= 0),
    loss             REAL,              -- NULL until the first step
    flops_forward          INTEGER NOT NULL DEFAULT 0 CHECK (flops_forward >= 0),
    flops_backward_input   INTEGER NOT NULL DEFAULT 0 CHECK (flops_backward_input >= 0),
    flops_backward_weight  INTEGER NOT NULL DEFAULT 0 CHECK (flops_backward_weight >= 0),
    trainable_now    INTEGER NOT NULL DEFAULT 0 CHECK (trainable_now >= 0),
    trainable_avg    REAL    NOT NULL DEFAULT 0 CHECK (trainable_avg >= 0),
    frozen           INTEGER NOT NULL DEFAULT 0 CHECK (frozen >= 0),
    freezable        INTEGER NOT NULL DEFAULT 0 CHECK (freezable >= 0),

    metrics          TEXT CONSTRAINT job_metrics_is_json CHECK (metrics IS NULL OR json_valid(metrics)),
    error            TEXT,
    cancel_requested INTEGER NOT NULL DEFAULT 0 CHECK (cancel_requested IN (0, 1)),
    attempts         INTEGER NOT NULL DEFAULT 0 CHECK (attempts >= 0),

    -- NULL only once the dataset was deleted after the job finished; the spec
    -- still names it. Deleting one that a queued or running job needs is
    -- refused (store.c checks first; the trigger below is the backstop).
    train_dataset_id TEXT REFERENCES datasets (id) ON DELETE SET NULL,
    eval_dataset_id  TEXT REFERENCES datasets (id) ON DELETE SET NULL,

    CONSTRAINT job_running_has_started_at
        CHECK (status <> 'running' OR started_at IS NOT NULL),
    CONSTRAINT job_finished_at_iff_finished
        CHECK ((status IN ('queued', 'running')) = (finished_at IS NULL)),
    CONSTRAINT job_failed_has_error
        CHECK (status <> 'failed' OR error IS NOT NULL)
) STRICT;

-- The queue. "Oldest queued job" is the first entry with status = 'queued' in
-- this index; SQLite appends the rowid to every index entry, so jobs created in
-- the same millisecond come out in insertion order. The same index serves
-- listing by status newest-first (scanned backwards) and counting by status.
CREATE INDEX jobs_by_status_created ON jobs (status, created_at);
-- Listing all jobs newest-first.
CREATE INDEX jobs_by_created ON jobs (created_at);
-- Child-key indexes for the dataset foreign keys: without them every dataset
-- delete scans all jobs.
CREATE INDEX jobs_by_train_dataset ON jobs (train_dataset_id);
CREATE INDEX jobs_by_eval_dataset ON jobs (eval_dataset_id);

CREATE TRIGGER datasets_in_use_by_active_job
BEFORE DELETE ON datasets
WHEN EXISTS (SELECT 1 FROM jobs
             WHERE status IN ('queued', 'running')
               AND (train_dataset_id = OLD.id OR eval_dataset_id = OLD.id))
BEGIN
    SELECT RAISE(ABORT, 'dataset is used by a queued or running job');
END;

-- One row per thing that happened to a job, numbered 1, 2, 3, ... per job
-- (store.c assigns seq = max + 1 inside the writing transaction). The primary
-- key is the "events by (job_id, seq)" index; WITHOUT ROWID stores the rows in
-- that order, so reading a job's events after seq N is one range scan.
CREATE TABLE events (
    job_id      TEXT    NOT NULL REFERENCES jobs (id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL CHECK (seq >= 1),
    type        TEXT    NOT NULL
                CONSTRAINT event_type_known
                CHECK (type IN ('step', 'freeze', 'eval', 'status', 'log')),
    payload     TEXT    NOT NULL CONSTRAINT event_payload_is_json CHECK (json_valid(payload)),
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (job_id, seq)
) STRICT, WITHOUT ROWID;
