-- job_stats: what GET /api/stats and GET /metrics report besides the counts, for %(owner)s
-- (NULL: every owner): jobs that reached succeeded or failed within the last minute, 5 minutes
-- and hour of coalesce(%(now)s, now()); and the age in seconds of the oldest due pending job
-- (NULL: none). Both are bounded, whatever the table's size: the windows walk jobs_finished_idx
-- over the last hour, the oldest due job the pending-only jobs_due_idx (jobs_owner_due_idx for
-- a user). The counts are job_count_unarchived (every unarchived job, for /api/stats) or
-- job_count_live (the live statuses' partial indexes, for /metrics).
WITH clock AS (SELECT coalesce(%(now)s::timestamptz, now()) AS now),
finished AS (
  SELECT j.status, j.finished_at FROM jobline.jobs j, clock
  WHERE j.status IN ('succeeded', 'failed') AND j.finished_at > clock.now - interval '1 hour'
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
)
SELECT
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
