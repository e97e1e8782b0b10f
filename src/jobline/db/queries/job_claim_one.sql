-- job_claim_one: lease the pending job %(id)s to %(worker_id)s for %(lease_seconds)s seconds,
-- counting the attempt, whatever its run_at or queue: `jobline jobs run ID` runs one job now,
-- by hand, even while its queue is paused. No row when the job is not pending (running
-- elsewhere, waiting on a dependency, finished) or is locked by a claim in progress.
-- Returns the columns of job_claim_many (upstream: see jobline.claim_jobs, 0021). Uses the primary key.
WITH one AS (
  SELECT id FROM jobline.jobs WHERE id = %(id)s AND status = 'pending' FOR UPDATE SKIP LOCKED
)
UPDATE jobline.jobs j
SET status = 'running',
    attempts = j.attempts + 1,
    worker_id = %(worker_id)s,
    lease_until = now() + make_interval(secs => %(lease_seconds)s),
    started_at = now()
FROM one
WHERE j.id = one.id
RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
          CASE WHEN j.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(j.depends_on) END AS upstream
