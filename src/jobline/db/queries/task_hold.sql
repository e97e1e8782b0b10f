-- task_hold: lock job %(id)s for a report from the remote worker holding lease %(worker_id)s,
-- if it still holds it (the job is running under that lease) and, for a user (%(owner)s), owns
-- it. Run in the report's transaction, before job_complete_many writes the outcome.
SELECT id, function, attempts, max_attempts, started_at
FROM jobline.jobs
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND status = 'running' AND worker_id = %(worker_id)s
FOR UPDATE
