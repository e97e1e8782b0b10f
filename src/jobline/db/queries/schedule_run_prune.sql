-- schedule_run_prune: delete up to %(limit)s runs that made no job (skipped, missed) and are
-- older than %(seconds)s. Runs with jobs go with their jobs (job_prune_finished).
WITH old AS (
  SELECT id FROM jobline.schedule_runs
  WHERE job_id IS NULL AND created_at < now() - make_interval(secs => %(seconds)s)
  LIMIT %(limit)s
)
DELETE FROM jobline.schedule_runs r USING old WHERE r.id = old.id
