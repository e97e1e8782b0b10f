-- job_stats: what GET /api/stats and GET /metrics report, for %(owner)s (NULL: every owner):
-- unarchived jobs counted by function and status (as [function, status, count] triples); jobs
-- that reached succeeded or failed within the last minute, 5 minutes and hour of
-- coalesce(%(now)s, now()); and the age in seconds of the oldest due pending job (NULL: none).
-- The counts read every unarchived job, as function_list does; the windows use
-- jobs_finished_idx and the oldest due job the pending-only jobs_due_idx (jobs_owner_due_idx
-- for a user).
WITH clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
finished AS (
  SELECT j.status, j.finished_at FROM jobline.jobs j, clock
  WHERE j.status IN ('succeeded', 'failed') AND j.finished_at > clock.now - interval '1 hour'
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
)
SELECT
  (SELECT coalesce(jsonb_agg(jsonb_build_array(c.function, c.status, c.n) ORDER BY c.function, c.status), '[]')
     FROM (SELECT function, status, count(*) AS n FROM jobline.jobs
           WHERE archived_at IS NULL AND (%(owner)s::text IS NULL OR owner = %(owner)s)
           GROUP BY function, status) c) AS counts,
  count(*) FILTER (WHERE f.status = 'succeeded' AND f.finished_at > clock.now - interval '1 minute') AS succeeded_1m,
  count(*) FILTER (WHERE f.status = 'failed' AND f.finished_at > clock.now - interval '1 minute') AS failed_1m,
  count(*) FILTER (WHERE f.status = 'succeeded' AND f.finished_at > clock.now - interval '5 minutes') AS succeeded_5m,
  count(*) FILTER (WHERE f.status = 'failed' AND f.finished_at > clock.now - interval '5 minutes') AS failed_5m,
  count(*) FILTER (WHERE f.status = 'succeeded') AS succeeded_1h,
  count(*) FILTER (WHERE f.status = 'failed') AS failed_1h,
  (SELECT extract(epoch FROM clock.now - min(j.run_at))::float8 FROM jobline.jobs j
    WHERE j.status = 'pending' AND j.run_at <= clock.now
      AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)) AS oldest_due_seconds
FROM clock LEFT JOIN finished f ON true
GROUP BY clock.now
