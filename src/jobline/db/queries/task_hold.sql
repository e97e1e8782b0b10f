-- task_hold: the attempt of job %(id)s that the remote worker holding lease %(worker_id)s
-- reports on, if it still holds it (the job is running under that lease) and, for a user
-- (%(owner)s), owns it. No lock: job_complete_many, which then writes the outcome, is fenced
-- on the same lease and attempt, so a lease lost in between makes it write nothing.
SELECT id, function, attempts, max_attempts, started_at
FROM jobline.jobs
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND status = 'running' AND worker_id = %(worker_id)s
