-- 0018_claim_by_key: the claim of 0001, skipping paused queues (0016), updating what it claims
-- by key, and returning it in claim order.
--
-- claim_jobs: lease up to `lim` due jobs of `functions` (in `queues`, or any queue when NULL;
-- never of a paused queue unless the operator's run-now exempted that attempt, 0016) to
-- `worker` for `lease_seconds`, counting the attempt. Highest priority first, then earliest
-- run_at, then id; SKIP LOCKED lets claimers pass each other.
-- - It walks jobs_due_idx in claim order, filtering by function. (A walk per served function of
--   an index led by `function` made a claim's cost independent of other functions' backlogs,
--   but drained 2.5 times slower with a worker's defaults, for reasons not yet understood:
--   bench/README.md, "Claim cost and what else is in the table".)
-- - The claimed rows are updated by id array, not by joining back to jobline.jobs: with fresh
--   statistics (ANALYZE, as autovacuum runs it) the planner chose a Hash Join that read the
--   whole primary key on every claim (20 ms per claim of 10 at 40,000 pending jobs, not 1 ms).
-- - The SET clauses pin the plan to the indexes whatever the statistics say; jit = off because
--   enable_sort = off prices the final sort of the claimed rows at 1e10, which made PostgreSQL
--   JIT-compile every claim (190 ms each). Paused queues and exemptions are read once per claim
--   (an InitPlan and a hashed SubPlan over tables of a few rows).
-- It also returns the job's trace_context (0017). A function's RETURNS TABLE cannot be changed
-- in place, so it is dropped and created again; the drop took 0011's REVOKE with it, hence the
-- REVOKE below.
DROP FUNCTION jobline.claim_jobs(text, text[], text[], integer, double precision);

CREATE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                   lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
  WITH due AS (
    SELECT j.id FROM jobline.jobs j
    WHERE j.status = 'pending'
      AND j.run_at <= now()
      AND j.function = ANY(functions)
      AND (queues IS NULL OR j.queue = ANY(queues))
      AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
           OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT lim
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running',
        attempts = j.attempts + 1,
        worker_id = worker,
        lease_until = now() + make_interval(secs => lease_seconds),
        started_at = now()
    WHERE j.id = ANY(ARRAY(SELECT due.id FROM due))
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
              j.priority, j.run_at
  )
  -- In claim order, so a worker starts them in that order (the update returns them as it finds them).
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;

REVOKE ALL ON FUNCTION jobline.claim_jobs(text, text[], text[], integer, double precision) FROM PUBLIC;
