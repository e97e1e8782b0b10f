-- queue_resume: resume the queue %(queue)s and wake the idle workers, which claim its due jobs
-- at once. No row when it was not paused.
WITH resumed AS (
  DELETE FROM jobline.queue_pauses WHERE queue = %(queue)s RETURNING queue
)
SELECT queue, pg_notify('jobline_jobs', '') FROM resumed
