-- job_run_now: make a pending (delayed or backing-off) job due now, and wake the workers.
WITH due AS (
  UPDATE jobline.jobs SET run_at = now()
  WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status = 'pending'
  RETURNING *
)
SELECT due.*, pg_notify('jobline_jobs', '') FROM due
