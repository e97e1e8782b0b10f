-- notification_prune: delete up to %(limit)s events older than %(seconds)s (the retention of
-- failed jobs: an event outlives the job it tells of no longer than that job's record). Their
-- deliveries are `http` jobs, pruned with the jobs. Uses notifications_created_idx.
WITH old AS (
  SELECT id FROM jobline.notifications
  WHERE created_at < now() - make_interval(secs => %(seconds)s)
  LIMIT %(limit)s
)
DELETE FROM jobline.notifications n USING old WHERE n.id = old.id
