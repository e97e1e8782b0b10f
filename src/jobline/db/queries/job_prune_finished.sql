-- job_prune_finished: delete up to %(limit)s finished jobs older than their state's retention
-- with their attempts and schedule runs. Bounded so no statement runs long.
-- Uses jobs_finished_idx. A step of a pipeline run still running is kept whatever its age: a
-- later step (after a delay or a snooze of days) reads its result as its upstream.
WITH old AS (
  SELECT j.id FROM jobline.jobs j
  WHERE ((j.status = 'succeeded' AND j.finished_at < now() - make_interval(secs => %(succeeded_seconds)s))
     OR (j.status = 'failed' AND j.finished_at < now() - make_interval(secs => %(failed_seconds)s))
     OR (j.status = 'cancelled' AND j.finished_at < now() - make_interval(secs => %(cancelled_seconds)s)))
    AND (j.pipeline_run_id IS NULL
         OR NOT EXISTS (SELECT 1 FROM jobline.pipeline_runs r WHERE r.id = j.pipeline_run_id AND r.status = 'running'))
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), gone AS (
  DELETE FROM jobline.jobs j USING old WHERE j.id = old.id RETURNING j.id
), gone_attempts AS (
  DELETE FROM jobline.attempts a USING gone WHERE a.job_id = gone.id
), gone_runs AS (
  DELETE FROM jobline.schedule_runs r USING gone WHERE r.job_id = gone.id
)
SELECT count(*) FROM gone
