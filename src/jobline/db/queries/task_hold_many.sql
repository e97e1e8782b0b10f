-- task_hold_many: of jobs %(ids)s, the attempts that the remote worker holding lease
-- %(worker_id)s still holds (running under that lease) and, for a user (%(owner)s), owns: a
-- batch report's task_hold, in one round trip. No lock, as in task_hold: job_complete_many is
-- fenced on the same lease and attempt. Uses jobs_pkey.
SELECT id, function, attempts, max_attempts, started_at
FROM jobline.jobs
WHERE id = ANY(%(ids)s::bigint[]) AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND status = 'running' AND worker_id = %(worker_id)s
