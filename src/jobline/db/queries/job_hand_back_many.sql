-- job_hand_back_many: a stopping worker returns the jobs it could not finish in its grace
-- period; the interrupted attempt does not count against max_attempts. Fenced like completion.
WITH back AS (
  UPDATE jobline.jobs
  SET status = 'pending', attempts = attempts - 1, run_at = now(), worker_id = NULL, lease_until = NULL
  WHERE id = ANY(%(ids)s::bigint[]) AND status = 'running' AND worker_id = %(worker_id)s
  RETURNING id
)
SELECT b.id, pg_notify('jobline_jobs', '') FROM back b
