-- 0025_claim_tasks_per_function: the remote workers' claim (claim-next-task) no longer reads
-- other functions' pending jobs either.
--
-- task_claim_many and task_claim_many_limited walked jobs_due_idx in claim order for the service
-- key, filtering by function: every pending job of a function that in-process workers serve (or
-- of a task type not asked for), ahead in that order, was read on every remote claim. Now, as
-- the in-process claim does since 0023, the service key's claim reads each claimable function's
-- own range of jobs_function_due_idx and merges the candidates into claim order. Which functions
-- are claimable: the task types asked for, or else every function with a pending job that no
-- in-process worker serves, found by stepping through jobs_function_due_idx from one function
-- to the next (one index probe per function, however many jobs each has).
-- A user's claim keeps its walk of jobs_owner_due_idx: it reads only that user's pending jobs,
-- where a range per function would read every owner's jobs of a shared task type.
-- The statements move into PL/pgSQL functions, as the in-process claims (0023, 0024), so their
-- planner settings hold and their plans are kept between calls; each branch runs only when its
-- `owner_scope` test holds (a one-time filter on the argument).

-- The functions a remote claim of `task_types` may take (NULL: every claimable one).
CREATE FUNCTION jobline.remote_task_types(task_types text[]) RETURNS SETOF text
LANGUAGE sql STABLE AS $$
  WITH RECURSIVE pending(name) AS (
    (SELECT j.function FROM jobline.jobs j WHERE task_types IS NULL AND j.status = 'pending'
     ORDER BY j.function LIMIT 1)
    UNION ALL
    SELECT (SELECT j.function FROM jobline.jobs j WHERE j.status = 'pending' AND j.function > p.name
            ORDER BY j.function LIMIT 1)
    FROM pending p WHERE p.name IS NOT NULL
  )
  SELECT DISTINCT t.name FROM unnest(task_types) AS t(name)
  UNION ALL
  SELECT p.name FROM pending p
  WHERE p.name IS NOT NULL AND NOT EXISTS (SELECT 1 FROM jobline.local_functions l WHERE l.function = p.name)
$$;

CREATE FUNCTION jobline.claim_tasks(worker text, owner_scope text, task_types text[], lim integer,
                                    lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, owner text, attempts integer, max_attempts integer,
               lease_until timestamptz, started_at timestamptz, upstream jsonb)
LANGUAGE plpgsql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH paused AS MATERIALIZED (
    SELECT ARRAY(SELECT p.queue FROM jobline.queue_pauses p) AS names
  ), next AS (
    SELECT u.id FROM (
      -- The service key: each claimable function's own range.
      SELECT d.id, d.priority, d.run_at FROM jobline.remote_task_types(task_types) AS f(name)
      CROSS JOIN paused
      CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobline.jobs j
        WHERE j.status = 'pending'
          AND j.function >= f.name AND j.function <= f.name
          AND j.run_at <= now()
          AND (j.queue <> ALL(paused.names)
               OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
        ORDER BY j.function, j.priority DESC, j.run_at, j.id
        LIMIT lim
        FOR UPDATE SKIP LOCKED
      ) AS d
      WHERE owner_scope IS NULL
      UNION ALL
      -- A user: their own pending jobs, in claim order.
      SELECT o.id, o.priority, o.run_at FROM paused
      CROSS JOIN LATERAL (
        SELECT j.id, j.priority, j.run_at FROM jobline.jobs j
        WHERE owner_scope IS NOT NULL
          AND j.status = 'pending' AND j.owner = owner_scope AND j.run_at <= now()
          AND (CASE WHEN task_types IS NULL
                    THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions l WHERE l.function = j.function)
                    ELSE j.function = ANY(task_types) END)
          AND (j.queue <> ALL(paused.names)
               OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT lim
        FOR UPDATE SKIP LOCKED
      ) AS o
    ) AS u
    ORDER BY u.priority DESC, u.run_at, u.id
    LIMIT lim
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running', attempts = j.attempts + 1, worker_id = worker,
        lease_until = now() + make_interval(secs => lease_seconds), started_at = now()
    WHERE j.id = ANY(ARRAY(SELECT next.id FROM next))
    RETURNING j.id, j.function, j.payload, j.owner, j.attempts, j.max_attempts, j.lease_until, j.started_at,
              j.priority, j.run_at, j.pipeline_run_id, j.depends_on
  )
  SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at,
         CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END $$;

-- Under the flow-control limits `limit_ids`, locked earlier in the caller's transaction
-- (limits_take), at `at` (a time after the lock): the same candidates, skipping the jobs of full
-- (limit, key) pairs, up to 2 x lim of them, of which jobline.limits_admit picks the ones to
-- lease; only those are locked, as in jobline.claim_jobs_limited.
CREATE FUNCTION jobline.claim_tasks_limited(worker text, owner_scope text, task_types text[], lim integer,
                                            lease_seconds double precision, limit_ids bigint[], at timestamptz)
RETURNS TABLE (id bigint, function text, payload jsonb, owner text, attempts integer, max_attempts integer,
               lease_until timestamptz, started_at timestamptz, upstream jsonb)
LANGUAGE plpgsql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH room AS MATERIALIZED (
    SELECT r.limit_id, coalesce(r.key, '') AS key, r.room, l.scope, l.target, NOT l.per_key AS whole
    FROM jobline.limit_room(limit_ids, at) r JOIN jobline.limits l ON l.id = r.limit_id
  ), full_ AS MATERIALIZED (
    SELECT * FROM room WHERE room.room <= 0
  ), paused AS MATERIALIZED (
    SELECT ARRAY(SELECT p.queue FROM jobline.queue_pauses p) AS names
  ), next AS MATERIALIZED (
    SELECT u.* FROM (
      -- Each branch as claim_tasks's, skipping the jobs of full pairs (NOT IN over non-null
      -- values: hashed subplans, however many pairs are full).
      SELECT d.* FROM jobline.remote_task_types(task_types) AS f(name)
      CROSS JOIN paused
      CROSS JOIN LATERAL (
        SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
        WHERE j.status = 'pending'
          AND j.function >= f.name AND j.function <= f.name
          AND j.run_at <= at
          AND (j.queue <> ALL(paused.names)
               OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
          AND j.function NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'function')
          AND j.queue NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'queue')
          AND (j.function, coalesce(j.concurrency_key, '')) NOT IN (
                SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'function')
          AND (j.queue, coalesce(j.concurrency_key, '')) NOT IN (
                SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'queue')
        ORDER BY j.function, j.priority DESC, j.run_at, j.id
        LIMIT lim::bigint * 2
      ) AS d
      WHERE owner_scope IS NULL
      UNION ALL
      SELECT o.* FROM paused
      CROSS JOIN LATERAL (
        SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
        WHERE owner_scope IS NOT NULL
          AND j.status = 'pending' AND j.owner = owner_scope AND j.run_at <= at
          AND (CASE WHEN task_types IS NULL
                    THEN NOT EXISTS (SELECT 1 FROM jobline.local_functions l WHERE l.function = j.function)
                    ELSE j.function = ANY(task_types) END)
          AND (j.queue <> ALL(paused.names)
               OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
          AND j.function NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'function')
          AND j.queue NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'queue')
          AND (j.function, coalesce(j.concurrency_key, '')) NOT IN (
                SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'function')
          AND (j.queue, coalesce(j.concurrency_key, '')) NOT IN (
                SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'queue')
        ORDER BY j.priority DESC, j.run_at, j.id
        LIMIT lim::bigint * 2
      ) AS o
    ) AS u
    ORDER BY u.priority DESC, u.run_at, u.id
    LIMIT lim::bigint * 2
  ), admitted AS (
    SELECT jobline.limits_admit(n.ids, n.functions, n.queues, n.keys, lim, limit_ids, at,
                                ARRAY(SELECT room.limit_id FROM room), ARRAY(SELECT room.key FROM room),
                                ARRAY(SELECT room.room FROM room)) AS ids
    FROM (SELECT array_agg(o.id) AS ids, array_agg(o.function) AS functions, array_agg(o.queue) AS queues,
                 array_agg(o.concurrency_key) AS keys
          FROM (SELECT * FROM next ORDER BY next.priority DESC, next.run_at, next.id) o) n
  ), locked AS (
    -- The status is read from the row as locked (its latest version), not filtered in the scan:
    -- a filter on status would make the planner walk a partial index for these ids.
    SELECT j.id, j.status FROM jobline.jobs j
    WHERE j.id = ANY((SELECT admitted.ids FROM admitted)::bigint[])
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running', attempts = j.attempts + 1, worker_id = worker,
        lease_until = at + make_interval(secs => lease_seconds), started_at = at
    WHERE j.id = ANY(ARRAY(SELECT locked.id FROM locked WHERE locked.status = 'pending'))
    RETURNING j.id, j.function, j.payload, j.owner, j.attempts, j.max_attempts, j.lease_until, j.started_at,
              j.priority, j.run_at, j.pipeline_run_id, j.depends_on
  )
  SELECT c.id, c.function, c.payload, c.owner, c.attempts, c.max_attempts, c.lease_until, c.started_at,
         CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END $$;

REVOKE ALL ON FUNCTION jobline.remote_task_types(text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.claim_tasks(text, text, text[], integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.claim_tasks_limited(text, text, text[], integer, double precision, bigint[], timestamptz)
  FROM PUBLIC;
