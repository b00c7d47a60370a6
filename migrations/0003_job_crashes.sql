-- 0003_job_crashes.sql — count the times the daemon died under a job apart
-- from the times a worker claimed it.
--
-- attempts counts every claim. A clean shutdown checkpoints a running job and
-- puts it back in the queue, so a long job restarted a few times for upgrades
-- collected "attempts" and was failed as if it crashed the daemon. crashes
-- counts only what store_requeue_running finds at start-up: jobs still
-- running, i.e. the daemon was killed or crashed while they ran. The daemon
-- gives up on a job after too many crashes, and POST /jobs/{id}/retry resets
-- the count. Jobs of an older database start at 0.

ALTER TABLE jobs ADD COLUMN crashes INTEGER NOT NULL DEFAULT 0
    CONSTRAINT job_crashes_nonnegative CHECK (crashes >= 0);
