-- pipeline_run_prune: delete up to %(limit)s finished runs that finished more than %(seconds)s ago
-- and have no step job left (retention removed them: job_prune_finished), with their history
-- (ON DELETE CASCADE). Uses pipeline_runs_finished_idx, and jobs_pipeline_run_idx per run.
WITH old AS (
  SELECT r.id FROM jobline.pipeline_runs r
  WHERE r.status <> 'running' AND r.finished_at < now() - make_interval(secs => %(seconds)s)
    AND NOT EXISTS (SELECT 1 FROM jobline.jobs j WHERE j.pipeline_run_id = r.id)
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
DELETE FROM jobline.pipeline_runs r USING old WHERE r.id = old.id
