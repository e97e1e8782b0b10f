-- job_run_now: make a pending (delayed or backing-off) job due now, and wake the workers. With
-- %(past_pause)s (the operator's "run now"), its next claim may take it even while its queue
-- is paused: that attempt only.
WITH due AS (
  UPDATE jobline.jobs SET run_at = now()
  WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status = 'pending'
  RETURNING *
), exempted AS (
  INSERT INTO jobline.queue_pause_exemptions (job_id, attempts)
  SELECT id, attempts FROM due WHERE %(past_pause)s
  ON CONFLICT DO NOTHING
)
SELECT due.*, pg_notify('jobline_jobs', '') FROM due
