-- 0016_queue_pauses: pausing a queue (seed 001's "pause processing while leaving manual tools
-- available"). A paused queue's pending jobs stay pending and no worker claims them, in-process
-- or remote, until it is resumed; schedules keep creating jobs in it. A pause is a row, so it
-- survives restarts and holds for every worker on every machine.

CREATE TABLE jobline.queue_pauses (
  queue      text        PRIMARY KEY CHECK (jobline.is_valid_name(queue, 200)),
  paused_at  timestamptz NOT NULL DEFAULT now(),
  reason     text        CHECK (reason IS NULL OR (length(reason) <= 500 AND reason !~ '[[:cntrl:]]'))
);

-- The operator's "run now" of one job of a paused queue: a claim may take that job for that
-- attempt only (a retry of it waits for the queue again). Rows of jobs that moved on are pruned
-- by maintenance. A table of its own, written only by jobline, because plain roles may INSERT
-- into jobline.jobs (0011).
CREATE TABLE jobline.queue_pause_exemptions (
  job_id    bigint  NOT NULL,
  attempts  integer NOT NULL,   -- the job's attempts when it was exempted, before the claim counts one
  PRIMARY KEY (job_id, attempts)
);

-- claim_jobs as in 0001, skipping paused queues. Both lists are read once per claim (an
-- InitPlan and a hashed SubPlan over tables of a few rows), so an unpaused claim costs the same.
-- The claimed rows are updated by id array, not by joining `due` back to jobline.jobs: with
-- fresh statistics (ANALYZE, as autovacuum runs it) the planner chose a Hash Join that read the
-- whole primary key on every claim (20 ms per claim of 10 at 40,000 pending jobs, against 1 ms).
-- jit = off: enable_sort = off prices the final sort of the claimed rows at 1e10, which would
-- otherwise make PostgreSQL JIT-compile every claim (190 ms each).
CREATE OR REPLACE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                              lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text)
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
  )
  , claimed AS (
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
