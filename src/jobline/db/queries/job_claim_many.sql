-- job_claim_many: lease up to %(limit)s due jobs of %(functions)s (in %(queues)s, or any
-- queue when NULL) to %(worker_id)s for %(lease_seconds)s seconds; counts the attempt.
-- Uses jobs_due_idx (partial, status = 'pending'). SKIP LOCKED lets claimers pass each other.
WITH due AS (
  SELECT id FROM jobline.jobs
  WHERE status = 'pending'
    AND run_at <= now()
    AND function = ANY(%(functions)s::text[])
    AND (%(queues)s::text[] IS NULL OR queue = ANY(%(queues)s::text[]))
  ORDER BY priority DESC, run_at, id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
)
UPDATE jobline.jobs j
SET status = 'running',
    attempts = j.attempts + 1,
    worker_id = %(worker_id)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    started_at = now()
FROM due
WHERE j.id = due.id
RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner
