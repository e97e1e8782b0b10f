-- job_prune_finished: delete up to %(limit)s finished jobs older than their state's retention
-- with their attempts and schedule runs. Bounded so no statement runs long.
-- Uses jobs_finished_idx.
WITH old AS (
  SELECT id FROM jobline.jobs
  WHERE (status = 'succeeded' AND finished_at < now() - make_interval(secs => %(succeeded_seconds)s))
     OR (status = 'failed' AND finished_at < now() - make_interval(secs => %(failed_seconds)s))
     OR (status = 'cancelled' AND finished_at < now() - make_interval(secs => %(cancelled_seconds)s))
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
