-- 0023_claim_per_function: a claim's cost no longer depends on other functions' pending jobs.
--
-- 0018's claim (kept by 0019 and 0021 as claim_jobs_free) walked jobs_due_idx (priority, run_at,
-- id) in claim order and filtered by function, so every pending job of a function the worker
-- does not serve, ahead in that order, was read on every claim and every wake-up: 200,000 of
-- them made a drain 0.07x as fast, and a pickup while another process drained a backlog of
-- another function 78 ms at p50 (bench/README.md).
-- Now each served function is read from its own range of jobs_function_due_idx, up to `lim` rows
-- in claim order, and the candidates are merged into claim order. Why the range test
-- (`function >= f.name AND function <= f.name`) rather than `=`, and ORDER BY function first: with
-- `=`, the planner takes the function as a constant, finds that jobs_due_idx gives the order as
-- well, and, its statistics saying nothing of which functions have no pending job, walked
-- jobs_due_idx once per served function, through every pending job for each function that had
-- none (the built-ins sql, http and pipeline: 8.5 ms per claim during a drain instead of 1.3).
-- Only jobs_function_due_idx gives the order (function, priority DESC, run_at, id), and sorting
-- is off, so the plan holds whatever the statistics say; tests/db/test_core_queries.py keeps it.
-- The rows locked but not claimed (more than `lim` among several functions) are free again when
-- the claim's statement ends (the claim is its own transaction). Otherwise as 0021's.
CREATE INDEX jobs_function_due_idx ON jobline.jobs (function, priority DESC, run_at, id) WHERE status = 'pending';

CREATE OR REPLACE FUNCTION jobline.claim_jobs_free(worker text, functions text[], queues text[], lim integer,
                                                   lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
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
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;
