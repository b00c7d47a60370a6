-- 0002_epochs_from_one.sql — stored epochs counted from 1, as people read them.
--
-- Versions before this one stored epochs counted from 0 (a job's progress,
-- the "epoch" of step and eval events, metrics' best_epoch and
-- epochs[].epoch) while `aflorad run` printed "best epoch 3" for index 2.
-- Everything aflorad writes now counts from 1 (daemon/job.h,
-- JOB_EPOCH_SHOWN); this rewrites what older versions stored so old and new
-- jobs read alike. A best_epoch of -1 (no evaluation) becomes null, as new
-- jobs write it. A job's progress epoch 0 before its first step stays 0.
--
-- JSON values carry a subtype only within one expression, so the rebuilt
-- epochs array goes through json() before json_set stores it.

UPDATE jobs SET epoch = epoch + 1 WHERE step > 0;

UPDATE events
   SET payload = json_set(payload, '$.epoch', json_extract(payload, '$.epoch') + 1)
 WHERE type IN ('step', 'eval') AND json_type(payload, '$.epoch') = 'integer';

UPDATE jobs
   SET metrics = json_set(metrics, '$.best_epoch',
                          CASE WHEN json_extract(metrics, '$.best_epoch') >= 0
                               THEN json_extract(metrics, '$.best_epoch') + 1 END)
 WHERE metrics IS NOT NULL AND json_type(metrics, '$.best_epoch') = 'integer';

UPDATE jobs
   SET metrics = json_set(metrics, '$.epochs', json(
           (SELECT json_group_array(CASE WHEN json_type(value, '$.epoch') = 'integer'
                                         THEN json_set(value, '$.epoch',
                                                       json_extract(value, '$.epoch') + 1)
                                         ELSE json(value) END)
              FROM json_each(metrics, '$.epochs'))))
 WHERE metrics IS NOT NULL AND json_type(metrics, '$.epochs') = 'array';
