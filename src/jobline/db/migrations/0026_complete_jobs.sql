-- 0026_complete_jobs: the statement that records a batch of outcomes (job_complete_many) moves
-- into jobline.complete_jobs, whose settings keep it on the primary key.
--
-- As a plain statement it updated the batch's jobs by whatever plan the statistics suggested.
-- With the statistics of an emptier table (before autovacuum analyzes a burst of enqueues), the
-- planner read the whole table, or every running job through the partial jobs_lease_idx (which
-- also holds the dead entries of every job completed since the last vacuum), and joined the batch
-- afterwards: 4-7 ms per batch of 50 instead of under 1 during a drain of 20,000 (auto_explain;
-- bench/README.md). So: sequential scans off, and the fence on status written as a range, which
-- jobs_lease_idx's predicate cannot use (as 0023's claim keeps off an index), so the jobs are
-- found by id. Bitmap scans stay on: settle_dependants finds dependants through the GIN index
-- jobs_dependants_idx, which only a bitmap scan reads. force_custom_plan: each call is planned
-- with its batch's size (a generic plan of this statement was several times slower).
-- Otherwise as before: fenced on (status = 'running', worker_id, attempts); settle_dependants
-- runs after `done` is complete and, being volatile, with fresh snapshots, so it sees a dependant
-- whose enqueue (holding FOR SHARE on the dependency) made the update wait.
CREATE FUNCTION jobline.complete_jobs(worker text, ids bigint[], attempt_numbers integer[], statuses text[],
                                      retry_seconds double precision[], results jsonb[], errors text[],
                                      tracebacks text[], outcomes text[], started double precision[],
                                      finished double precision[])
RETURNS TABLE (id bigint, status text)
LANGUAGE plpgsql SET enable_seqscan = off SET plan_cache_mode = force_custom_plan SET jit = off AS $$
#variable_conflict use_column
BEGIN
  RETURN QUERY
  WITH outcome AS (
    SELECT * FROM unnest(ids, attempt_numbers, statuses, retry_seconds, results, errors, tracebacks, outcomes,
                         started, finished)
      AS o(id, attempt, status, retry_in, result, error, traceback, outcome, started_at, finished_at)
  ), done AS (
    UPDATE jobline.jobs j
    SET status = o.status,
        run_at = CASE WHEN o.status = 'pending' THEN now() + make_interval(secs => o.retry_in) ELSE j.run_at END,
        result = o.result,
        -- A snooze (the handler's Snooze) spends no attempt: its number is used, the budget grows by one.
        max_attempts = j.max_attempts + CASE WHEN o.outcome = 'snoozed' THEN 1 ELSE 0 END,
        last_error = coalesce(o.error, j.last_error),
        finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE now() END,
        worker_id = NULL,
        lease_until = NULL
    FROM outcome o
    WHERE j.id = o.id AND j.status >= 'running' AND j.status <= 'running' AND j.worker_id = worker
      AND j.attempts = o.attempt
    RETURNING j.id, j.status
  ), recorded AS (
    INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
    SELECT o.id, o.attempt, worker, to_timestamp(o.started_at), to_timestamp(o.finished_at), o.outcome, o.error,
           o.traceback
    FROM outcome o JOIN done d ON d.id = o.id
  ), settled AS (
    SELECT jobline.settle_dependants(
             coalesce(array_agg(done.id) FILTER (WHERE done.status = 'succeeded'), '{}'),
             coalesce(array_agg(done.id) FILTER (WHERE done.status IN ('failed', 'cancelled')), '{}')) AS released
    FROM done
  )
  SELECT d.id, d.status FROM done d, settled;
END $$;

REVOKE ALL ON FUNCTION jobline.complete_jobs(text, bigint[], integer[], text[], double precision[], jsonb[], text[],
                                             text[], text[], double precision[], double precision[]) FROM PUBLIC;
