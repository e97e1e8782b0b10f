-- task_claim_many_limited: task_claim_many under the flow-control limits %(limit_ids)s, which
-- the caller locked earlier in this transaction (limit_take). The same candidates as
-- task_claim_many (owner, task types, paused queues), skipping the jobs of full (limit, key)
-- pairs, up to 2 x %(limit)s of them, of which jobline.limits_admit (the rule the in-process
-- claim applies too, 0019) picks the ones to lease; only those are locked, as in
-- jobline.claim_jobs_limited. statement_timestamp() is after the lock: starts and leases are
-- stamped with it. Uses jobs_owner_due_idx for a user, jobs_due_idx for the service key.
WITH room AS MATERIALIZED (
  SELECT r.limit_id, coalesce(r.key, '') AS key, r.room, l.scope, l.target, NOT l.per_key AS whole
  FROM jobline.limit_room(%(limit_ids)s::bigint[], statement_timestamp()) r
  JOIN jobline.limits l ON l.id = r.limit_id
), full_ AS MATERIALIZED (
  SELECT * FROM room WHERE room.room <= 0
), next AS MATERIALIZED (
  SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
  WHERE j.status = 'pending' AND j.run_at <= statement_timestamp()
    AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
    AND (CASE WHEN %(task_types)s::text[] IS NULL
              THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions f WHERE f.function = j.function)
              ELSE j.function = ANY(%(task_types)s::text[]) END)
    AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
         OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
    -- NOT IN over non-null values: hashed subplans, however many pairs are full.
    AND j.function NOT IN (SELECT f.target FROM full_ f WHERE f.whole AND f.scope = 'function')
    AND j.queue NOT IN (SELECT f.target FROM full_ f WHERE f.whole AND f.scope = 'queue')
    AND (j.function, coalesce(j.concurrency_key, '')) NOT IN (
          SELECT f.target, f.key FROM full_ f WHERE NOT f.whole AND f.scope = 'function')
    AND (j.queue, coalesce(j.concurrency_key, '')) NOT IN (
          SELECT f.target, f.key FROM full_ f WHERE NOT f.whole AND f.scope = 'queue')
  ORDER BY j.priority DESC, j.run_at, j.id
  LIMIT %(limit)s::int * 2
), admitted AS (
  SELECT jobline.limits_admit(n.ids, n.functions, n.queues, n.keys, %(limit)s::int, %(limit_ids)s::bigint[],
                              statement_timestamp(), ARRAY(SELECT room.limit_id FROM room),
                              ARRAY(SELECT room.key FROM room), ARRAY(SELECT room.room FROM room)) AS ids
  FROM (SELECT array_agg(o.id) AS ids, array_agg(o.function) AS functions, array_agg(o.queue) AS queues,
               array_agg(o.concurrency_key) AS keys
        FROM (SELECT * FROM next ORDER BY next.priority DESC, next.run_at, next.id) o) n
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
            j.priority, j.run_at, j.pipeline_run_id, j.depends_on
)
-- upstream: a pipeline step's upstream results by step name, NULL for other jobs (0021).
SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at,
       CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END AS upstream
FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
