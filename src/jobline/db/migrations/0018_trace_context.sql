-- 0018_trace_context: a job carries the trace context of the span that enqueued it, so the
-- worker's attempt span joins the enqueuer's trace (jobline/tracing.py).
--
-- NULL unless the enqueuing process traces (has an OpenTelemetry TracerProvider): the
-- propagator's carrier as a JSON object, {"traceparent": ..., "tracestate": ...} with the default
-- W3C propagator. A nullable column without a default: adding it rewrites nothing, and a NULL
-- costs a row no space beyond its null bitmap. jobline.enqueue() (SQL callers, dependencies,
-- unique keys) leaves it NULL.
ALTER TABLE jobline.jobs ADD COLUMN trace_context jsonb;

-- claim_jobs returns trace_context too. A function's RETURNS TABLE cannot be changed in place,
-- so it is dropped and created again: the body is 0017's, with trace_context added to the two
-- column lists. The drop took 0011's REVOKE with it, hence the REVOKE below.
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
