-- task_claim_many_limited: task_claim_many under the flow-control limits %(limit_ids)s, which
-- the caller locked earlier in this transaction (limit_take). The same candidates as
-- task_claim_many (owner, task types, paused queues), skipping the jobs of full (limit, key)
-- pairs, up to 4 x %(limit)s of them, of which jobline.limits_admit (the rule the in-process
-- claim applies too, 0019) picks the ones to lease. statement_timestamp() is after the lock:
-- starts and leases are stamped with it. Uses jobs_owner_due_idx for a user, jobs_due_idx for
-- the service key.
WITH full_ AS MATERIALIZED (
  SELECT * FROM jobline.limit_full(%(limit_ids)s::bigint[], statement_timestamp())
), next AS (
  SELECT j.id, j.priority, j.run_at FROM jobline.jobs j
  WHERE j.status = 'pending' AND j.run_at <= statement_timestamp()
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
    AND (CASE WHEN %(task_types)s::text[] IS NULL
              THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions f WHERE f.function = j.function)
              ELSE j.function = ANY(%(task_types)s::text[]) END)
    AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
         OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
    AND NOT EXISTS (SELECT 1 FROM full_ f
                    WHERE (CASE f.scope WHEN 'function' THEN j.function ELSE j.queue END) = f.target
                      AND (NOT f.per_key OR f.key IS NOT DISTINCT FROM j.concurrency_key))
  ORDER BY j.priority DESC, j.run_at, j.id
  LIMIT %(limit)s::int * 4
  FOR UPDATE SKIP LOCKED
), admitted AS (
  SELECT jobline.limits_admit(ARRAY(SELECT next.id FROM next ORDER BY next.priority DESC, next.run_at, next.id),
                              %(limit)s::int, %(limit_ids)s::bigint[], statement_timestamp()) AS ids
), claimed AS (
  UPDATE jobline.jobs j
  SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
      lease_until = statement_timestamp() + make_interval(secs => %(lease_seconds)s),
      started_at = statement_timestamp()
  WHERE j.id = ANY((SELECT admitted.ids FROM admitted)::bigint[])
  RETURNING j.id, j.function, j.payload, j.owner, j.attempts, j.max_attempts, j.lease_until, j.started_at,
            j.priority, j.run_at
)
SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at
FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
