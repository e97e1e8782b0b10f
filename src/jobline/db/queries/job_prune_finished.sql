-- job_prune_finished: delete up to %(limit)s finished jobs older than their state's retention
-- (attempts go with them by ON DELETE CASCADE). Bounded so no statement runs long.
-- Uses jobs_finished_idx.
WITH old AS (
  SELECT id FROM jobline.jobs
  WHERE (status = 'succeeded' AND finished_at < now() - make_interval(secs => %(succeeded_seconds)s))
     OR (status = 'failed' AND finished_at < now() - make_interval(secs => %(failed_seconds)s))
     OR (status = 'cancelled' AND finished_at < now() - make_interval(secs => %(cancelled_seconds)s))
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
DELETE FROM jobline.jobs j USING old WHERE j.id = old.id
