-- function_list: every function that has unarchived jobs or a live worker, with job counts by
-- status and the number of live workers (seen within %(live_seconds)s) that serve it.
WITH counts AS (
  SELECT function,
         count(*) FILTER (WHERE status = 'waiting') AS waiting,
         count(*) FILTER (WHERE status = 'pending') AS pending,
         count(*) FILTER (WHERE status = 'running') AS running,
         count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
         count(*) FILTER (WHERE status = 'failed') AS failed,
         count(*) FILTER (WHERE status = 'cancelled') AS cancelled
  FROM jobline.jobs WHERE archived_at IS NULL
  GROUP BY function
), served AS (
  SELECT f AS function, count(*) AS workers
  FROM jobline.workers w, unnest(w.functions) f
  WHERE w.last_seen_at > now() - make_interval(secs => %(live_seconds)s)
  GROUP BY f
)
SELECT coalesce(c.function, s.function) AS function,
       coalesce(s.workers, 0) AS workers,
       coalesce(c.waiting, 0) AS waiting, coalesce(c.pending, 0) AS pending,
       coalesce(c.running, 0) AS running, coalesce(c.succeeded, 0) AS succeeded,
       coalesce(c.failed, 0) AS failed, coalesce(c.cancelled, 0) AS cancelled
FROM counts c FULL JOIN served s ON s.function = c.function
ORDER BY 1
