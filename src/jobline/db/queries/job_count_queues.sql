-- job_count_queues: per queue (of %(owner)s's jobs; NULL: every owner), the jobs waiting, pending
-- (and how many of those are due) and running now, through the statuses' partial indexes, and
-- those that succeeded and failed since %(since)s, through jobs_finished_idx over that range;
-- and the age in seconds of the queue's oldest due pending job (NULL: none), from the same rows.
WITH live AS (
  SELECT queue, status, run_at FROM jobline.jobs
   WHERE status = 'pending' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  UNION ALL
  SELECT queue, status, run_at FROM jobline.jobs
   WHERE status = 'running' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  UNION ALL
  SELECT queue, status, run_at FROM jobline.jobs
   WHERE status = 'waiting' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
), finished AS (
  SELECT queue, status FROM jobline.jobs
   WHERE status IN ('succeeded', 'failed') AND finished_at >= %(since)s
     AND (%(owner)s::text IS NULL OR owner = %(owner)s)
), counted AS (
  SELECT queue,
         count(*) FILTER (WHERE status = 'waiting') AS waiting,
         count(*) FILTER (WHERE status = 'pending') AS pending,
         count(*) FILTER (WHERE status = 'pending' AND run_at <= now()) AS due,
         count(*) FILTER (WHERE status = 'running') AS running,
         0 AS succeeded, 0 AS failed,
         min(run_at) FILTER (WHERE status = 'pending' AND run_at <= now()) AS oldest_due_at
    FROM live GROUP BY queue
  UNION ALL
  SELECT queue, 0, 0, 0, 0, count(*) FILTER (WHERE status = 'succeeded'), count(*) FILTER (WHERE status = 'failed'),
         NULL::timestamptz
    FROM finished GROUP BY queue
)
SELECT queue, sum(waiting)::bigint AS waiting, sum(pending)::bigint AS pending, sum(due)::bigint AS due,
       sum(running)::bigint AS running, sum(succeeded)::bigint AS succeeded, sum(failed)::bigint AS failed,
       extract(epoch FROM now() - min(oldest_due_at))::float8 AS oldest_due_seconds
FROM counted GROUP BY queue ORDER BY queue
