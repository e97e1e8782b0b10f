-- task_claim_many: lease up to %(limit)s claimable jobs to a remote worker as %(worker_id)s (a
-- token unique to this claim request, which the reports on each of its tasks must present) for
-- %(lease_seconds)s seconds: the highest priority, then the earliest run_at, then the oldest.
-- Scoped to %(owner)s (NULL: any owner). With %(task_types)s, only those functions; without,
-- only remote task types: never a function that in-process workers serve
-- (jobline.local_functions, built-ins included). Jobs waiting on a dependency are not pending, so
-- dependencies are respected. SKIP LOCKED: concurrent callers get distinct jobs. Paused queues
-- are skipped as in jobline.claim_jobs (0016). Uses jobs_owner_due_idx for a user, jobs_due_idx
-- for the service key.
WITH next AS (
  SELECT j.id FROM jobline.jobs j
  WHERE j.status = 'pending' AND j.run_at <= now()
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
    AND (CASE WHEN %(task_types)s::text[] IS NULL
              THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions f WHERE f.function = j.function)
              ELSE j.function = ANY(%(task_types)s::text[]) END)
    AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
         OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
  ORDER BY j.priority DESC, j.run_at, j.id
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE jobline.jobs j
  SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
      lease_until = now() + make_interval(secs => %(lease_seconds)s), started_at = now()
  -- By an id array, never a join back to jobline.jobs: that plan read all of jobs_pkey (0018).
  WHERE j.id = ANY(ARRAY(SELECT next.id FROM next))
  RETURNING j.id, j.function, j.payload, j.owner, j.attempts, j.max_attempts, j.lease_until, j.started_at,
            j.priority, j.run_at, j.pipeline_run_id, j.depends_on
)
-- In claim order (the update returns rows as it finds them), so a worker starts them in that order.
-- upstream: a pipeline step's upstream results by step name, NULL for other jobs (0021).
SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at,
       CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END AS upstream
FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
