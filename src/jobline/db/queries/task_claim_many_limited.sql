-- task_claim_many_limited: task_claim_many under the flow-control limits %(limit_ids)s, which
-- the caller locked earlier in this transaction (limit_take). The same candidates as
-- task_claim_many (owner, task types, paused queues), skipping the jobs of full (limit, key)
-- pairs, up to 4 x %(limit)s of them, of which jobline.limits_admit (the rule the in-process
-- claim applies too, 0019) picks the ones to lease; only those are locked, as in
-- jobline.claim_jobs_limited. statement_timestamp() is after the lock: starts and leases are
-- stamped with it. Uses jobs_owner_due_idx for a user, jobs_due_idx for the service key.
WITH full_ AS MATERIALIZED (
  SELECT * FROM jobline.limit_full(%(limit_ids)s::bigint[], statement_timestamp())
), next AS MATERIALIZED (
  SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
  WHERE j.status = 'pending' AND j.run_at <= statement_timestamp()
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
    AND (CASE WHEN %(task_types)s::text[] IS NULL
              THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions f WHERE f.function = j.function)
              ELSE j.function = ANY(%(task_types)s::text[]) END)
    AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
         OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
    AND NOT EXISTS (SELECT 1 FROM full_ f WHERE f.whole AND f.scope = 'function' AND f.target = j.function)
    AND NOT EXISTS (SELECT 1 FROM full_ f WHERE f.whole AND f.scope = 'queue' AND f.target = j.queue)
    AND NOT EXISTS (SELECT 1 FROM full_ f WHERE NOT f.whole AND f.scope = 'function' AND f.target = j.function
                                           AND f.key = coalesce(j.concurrency_key, ''))
    AND NOT EXISTS (SELECT 1 FROM full_ f WHERE NOT f.whole AND f.scope = 'queue' AND f.target = j.queue
                                           AND f.key = coalesce(j.concurrency_key, ''))
  ORDER BY j.priority DESC, j.run_at, j.id
  LIMIT %(limit)s::int * 4
), admitted AS (
  SELECT jobline.limits_admit(n.ids, n.functions, n.queues, n.keys, %(limit)s::int, %(limit_ids)s::bigint[],
                              statement_timestamp()) AS ids
  FROM (SELECT array_agg(next.id ORDER BY next.priority DESC, next.run_at, next.id) AS ids,
               array_agg(next.function ORDER BY next.priority DESC, next.run_at, next.id) AS functions,
               array_agg(next.queue ORDER BY next.priority DESC, next.run_at, next.id) AS queues,
               array_agg(next.concurrency_key ORDER BY next.priority DESC, next.run_at, next.id) AS keys
        FROM next) n
), locked AS (
  -- The status is read from the row as locked (its latest version), not filtered in the scan:
  -- a filter on status would make the planner walk the partial jobs_due_idx for these ids.
  SELECT j.id, j.status FROM jobline.jobs j
  WHERE j.id = ANY((SELECT admitted.ids FROM admitted)::bigint[])
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE jobline.jobs j
  SET status = 'running', attempts = j.attempts + 1, worker_id = %(worker_id)s,
      lease_until = statement_timestamp() + make_interval(secs => %(lease_seconds)s),
      started_at = statement_timestamp()
  WHERE j.id = ANY(ARRAY(SELECT locked.id FROM locked WHERE locked.status = 'pending'))
  RETURNING j.id, j.function, j.payload, j.owner, j.attempts, j.max_attempts, j.lease_until, j.started_at,
            j.priority, j.run_at
)
SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at
FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
