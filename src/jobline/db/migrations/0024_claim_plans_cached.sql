-- 0024_claim_plans_cached: the claims keep their plans between calls, and a claim under
-- flow-control limits reads only its functions' ranges too.
--
-- claim_jobs_free and claim_jobs_limited were SQL functions with SET clauses, which PostgreSQL
-- never inlines and plans afresh on every call: about 0.15 ms of a 0.45 ms claim on an idle
-- table, paid on every pickup and every poll. As PL/pgSQL functions, their statement is planned
-- once per session and kept: force_generic_plan, because PostgreSQL's own choice kept making
-- custom plans (the generic plan's guess of 10 served functions looks dearer than the real 2-4,
-- so it was never adopted: 0.36 ms per idle claim against 0.12-0.15 with the generic plan). The
-- settings that pin the plan are the functions' own, so it is the plan
-- tests/db/test_core_queries.py keeps. The statements are 0023's (free) and 0021's (limited) with one change: the limited
-- claim's candidates now come from each served function's own range of jobs_function_due_idx,
-- as 0023's free claim does (its walk of jobs_due_idx read every pending job of other functions
-- ahead in claim order). `#variable_conflict use_column`: every column reference in these
-- statements is qualified, and a column never means one of the output parameters.

CREATE OR REPLACE FUNCTION jobline.claim_jobs_free(worker text, functions text[], queues text[], lim integer,
                                                   lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
LANGUAGE plpgsql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off
SET plan_cache_mode = force_generic_plan AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH paused AS MATERIALIZED (
    SELECT ARRAY(SELECT p.queue FROM jobline.queue_pauses p) AS names  -- not `queues`: the argument
  ), due AS (
    SELECT d.id FROM (SELECT DISTINCT f.name FROM unnest(functions) AS f(name)) AS f
    CROSS JOIN paused
    CROSS JOIN LATERAL (
      SELECT j.id, j.priority, j.run_at FROM jobline.jobs j
      WHERE j.status = 'pending'
        AND j.function >= f.name AND j.function <= f.name
        AND j.run_at <= now()
        AND (queues IS NULL OR j.queue = ANY(queues))
        AND (j.queue <> ALL(paused.names)
             OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
      ORDER BY j.function, j.priority DESC, j.run_at, j.id
      LIMIT lim
      FOR UPDATE SKIP LOCKED
    ) AS d
    ORDER BY d.priority DESC, d.run_at, d.id
    LIMIT lim
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running',
        attempts = j.attempts + 1,
        worker_id = worker,
        lease_until = now() + make_interval(secs => lease_seconds),
        started_at = now()
    WHERE j.id = ANY(ARRAY(SELECT due.id FROM due))
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
              j.priority, j.run_at, j.pipeline_run_id, j.depends_on
  )
  -- In claim order, so a worker starts them in that order (the update returns them as it finds them).
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context,
         CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END $$;

-- Candidates: up to 2 x lim per served function, in its range's order, skipping the jobs of full
-- (limit, key) pairs, merged into claim order; limits_admit picks the ones to claim from the
-- first 2 x lim. A function whose every key is full is still read to its end, as before.
CREATE OR REPLACE FUNCTION jobline.claim_jobs_limited(worker text, functions text[], queues text[], lim integer,
                                                      lease_seconds double precision, limit_ids bigint[],
                                                      at timestamptz)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
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
  ), due AS MATERIALIZED (
    SELECT d.* FROM (SELECT DISTINCT f.name FROM unnest(functions) AS f(name)) AS f
    CROSS JOIN paused
    CROSS JOIN LATERAL (
      SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
      WHERE j.status = 'pending'
        AND j.function >= f.name AND j.function <= f.name
        AND j.run_at <= at
        AND (queues IS NULL OR j.queue = ANY(queues))
        AND (j.queue <> ALL(paused.names)
             OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
        -- NOT IN over non-null values: hashed subplans, however many pairs are full.
        AND j.function NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'function')
        AND j.queue NOT IN (SELECT fu.target FROM full_ fu WHERE fu.whole AND fu.scope = 'queue')
        AND (j.function, coalesce(j.concurrency_key, '')) NOT IN (
              SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'function')
        AND (j.queue, coalesce(j.concurrency_key, '')) NOT IN (
              SELECT fu.target, fu.key FROM full_ fu WHERE NOT fu.whole AND fu.scope = 'queue')
      ORDER BY j.function, j.priority DESC, j.run_at, j.id
      LIMIT lim::bigint * 2
    ) AS d
    ORDER BY d.priority DESC, d.run_at, d.id
    LIMIT lim::bigint * 2
  ), admitted AS (
    -- The candidates' arrays in claim order: aggregated from the sorted rows (one sort, not one
    -- per array).
    SELECT jobline.limits_admit(d.due_ids, d.due_functions, d.due_queues, d.due_keys, lim, limit_ids, at,
                                ARRAY(SELECT room.limit_id FROM room), ARRAY(SELECT room.key FROM room),
                                ARRAY(SELECT room.room FROM room)) AS ids
    FROM (SELECT array_agg(o.id) AS due_ids, array_agg(o.function) AS due_functions,
                 array_agg(o.queue) AS due_queues, array_agg(o.concurrency_key) AS due_keys
          FROM (SELECT * FROM due ORDER BY due.priority DESC, due.run_at, due.id) o) d
  ), locked AS (
    -- The status is read from the row as locked (its latest version), not filtered in the scan:
    -- a filter on status would make the planner walk a partial index for these ids.
    SELECT j.id, j.status FROM jobline.jobs j
    WHERE j.id = ANY((SELECT admitted.ids FROM admitted)::bigint[])
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running',
        attempts = j.attempts + 1,
        worker_id = worker,
        lease_until = at + make_interval(secs => lease_seconds),
        started_at = at
    WHERE j.id = ANY(ARRAY(SELECT locked.id FROM locked WHERE locked.status = 'pending'))
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
              j.priority, j.run_at, j.pipeline_run_id, j.depends_on
  )
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context,
         CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id;
END $$;
