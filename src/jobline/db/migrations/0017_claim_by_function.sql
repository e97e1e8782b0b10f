-- 0017_claim_by_function: a claim's cost no longer depends on what else is in the table.
--
-- 0001's claim walked jobs_due_idx (priority, run_at, id) in claim order and filtered by
-- function, so every pending job of a function the worker does not serve, ahead in that order,
-- was read on every claim: with 200,000 of them, 44 ms per claim instead of 0.3 ms, and the same
-- for an idle worker's every poll. Now each served function is read from its own range of
-- jobs_function_due_idx, and the candidates are merged into claim order.
CREATE INDEX jobs_function_due_idx ON jobline.jobs (function, priority DESC, run_at, id)
  WHERE status = 'pending';

-- claim_jobs: lease up to `lim` due jobs of `functions` (in `queues`, or any queue when NULL;
-- never of a paused queue unless the operator's run-now exempted that attempt, 0016) to
-- `worker` for `lease_seconds`, counting the attempt. Highest priority first, then earliest
-- run_at, then id, across the functions; SKIP LOCKED lets claimers pass each other.
-- - Per function, a LATERAL scan of jobs_function_due_idx takes up to `lim` rows in order and
--   locks them; the best `lim` of those are claimed. The rows locked but not claimed are free
--   again when the claim's statement ends.
-- - The claimed rows are updated by id array, not by joining back to jobline.jobs: with fresh
--   statistics (ANALYZE, as autovacuum runs it) the planner chose a Hash Join that read the
--   whole primary key on every claim (20 ms per claim of 10 at 40,000 pending jobs, not 1 ms).
-- - The SET clauses pin the plan to the indexes whatever the statistics say; jit = off because
--   enable_sort = off prices the merge's sort at 1e10, which made PostgreSQL JIT-compile every
--   claim (190 ms each). Paused queues and exemptions are read once per claim (an InitPlan and
--   a hashed SubPlan over tables of a few rows).
CREATE OR REPLACE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                              lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
  WITH paused AS MATERIALIZED (
    SELECT ARRAY(SELECT p.queue FROM jobline.queue_pauses p) AS names  -- not `queues`: the argument
  ), due AS (
    SELECT d.id FROM (SELECT DISTINCT f.name FROM unnest(functions) AS f(name)) AS f
    CROSS JOIN paused
    CROSS JOIN LATERAL (
      SELECT j.id, j.priority, j.run_at FROM jobline.jobs j
      WHERE j.status = 'pending'
        AND j.function = f.name
        AND j.run_at <= now()
        AND (queues IS NULL OR j.queue = ANY(queues))
        AND (j.queue <> ALL(paused.names)
             OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
      ORDER BY j.priority DESC, j.run_at, j.id
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
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.priority, j.run_at
  )
  -- In claim order, so a worker starts them in that order (the update returns them as it finds them).
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;
