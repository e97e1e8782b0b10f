-- 0001_jobs: the durable job queue. Needs no extension, so it installs on any PostgreSQL 13+.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

-- Name rules of jobline.enqueue(); job.py applies the same rules in Python. (They are not CHECK
-- constraints on jobline.jobs because PostgreSQL re-evaluates every CHECK on every UPDATE, and
-- each job is updated at least twice; the cheap integer and status checks stay on the table.)
CREATE FUNCTION jobline.is_valid_name(name text, max_length int) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  -- Any printable text: quotes and unicode are fine (names are always parameterised), but no
  -- control characters and no surrounding blanks, which only cause confusion in listings.
  SELECT name IS NOT NULL
     AND length(name) BETWEEN 1 AND max_length
     AND name !~ '[[:cntrl:]]'
     AND name = btrim(name)
$$;

CREATE TABLE jobline.jobs (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  function      text        NOT NULL,
  payload       jsonb       NOT NULL DEFAULT '{}',
  status        text        NOT NULL DEFAULT 'pending'
                CHECK (status IN ('waiting', 'pending', 'running', 'succeeded', 'failed', 'cancelled')),
  queue         text        NOT NULL DEFAULT 'default',
  priority      integer     NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
  owner         text,
  run_at        timestamptz NOT NULL DEFAULT now(),
  attempts      integer     NOT NULL DEFAULT 0,
  max_attempts  integer     NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 1000),
  depends_on    bigint[],
  -- How many of depends_on have not succeeded yet; the job is released when it reaches 0.
  -- A counter (not a re-check of depends_on) so that two dependencies finishing in two
  -- concurrent transactions serialise on this row and cannot both miss the release.
  deps_remaining integer    NOT NULL DEFAULT 0,
  unique_key    text,
  -- The lease: which worker runs the current attempt and until when it is trusted to.
  -- (worker_id, attempts) is the fencing token every write to a running job checks.
  worker_id     text,
  lease_until   timestamptz,
  started_at    timestamptz,
  finished_at   timestamptz,
  result        jsonb,
  last_error    text,
  archived_at   timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- Claimable rows only: the claim scans this small index in claim order.
CREATE INDEX jobs_due_idx ON jobline.jobs (priority DESC, run_at, id) WHERE status = 'pending';
-- Lease expiry scan for the rescuer.
CREATE INDEX jobs_lease_idx ON jobline.jobs (lease_until) WHERE status = 'running';
-- Dependants of a job, looked up when it finishes.
CREATE INDEX jobs_waiting_deps_idx ON jobline.jobs USING gin (depends_on) WHERE status = 'waiting';
-- Deduplication: one live job per (function, owner, unique_key).
CREATE UNIQUE INDEX jobs_unique_key_idx ON jobline.jobs (function, coalesce(owner, ''), unique_key)
  WHERE unique_key IS NOT NULL AND status IN ('waiting', 'pending', 'running');
-- Retention and listings of finished jobs.
CREATE INDEX jobs_finished_idx ON jobline.jobs (finished_at)
  WHERE status IN ('succeeded', 'failed', 'cancelled');

CREATE TABLE jobline.attempts (
  -- No foreign key: its check would cost every completion; the pruner deletes a job's
  -- attempts with the job.
  job_id       bigint      NOT NULL,
  attempt      integer     NOT NULL,
  worker_id    text        NOT NULL,
  started_at   timestamptz NOT NULL,
  finished_at  timestamptz NOT NULL,
  -- succeeded | failed (will retry or is final: see the job) | timeout | lost (lease expired) | cancelled
  outcome      text        NOT NULL,
  error        text,
  PRIMARY KEY (job_id, attempt)
);

-- Live workers and the functions they serve, so listings can flag work nobody serves.
CREATE TABLE jobline.workers (
  id            text        PRIMARY KEY,
  hostname      text        NOT NULL,
  pid           integer     NOT NULL,
  functions     text[]      NOT NULL,
  queues        text[]      NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  last_seen_at  timestamptz NOT NULL DEFAULT now()
);

-- Idle workers LISTEN on this channel; any statement that makes jobs due notifies it once.
CREATE FUNCTION jobline.notify_jobs() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('jobline_jobs', '');
  RETURN NULL;
END $$;

CREATE TRIGGER jobs_notify_insert AFTER INSERT ON jobline.jobs
  FOR EACH STATEMENT EXECUTE FUNCTION jobline.notify_jobs();

-- claim_jobs: lease up to `lim` due jobs of `functions` (in `queues`, or any queue when NULL)
-- to `worker` for `lease_seconds`, counting the attempt. Highest priority first, then earliest
-- run_at, then id; SKIP LOCKED lets claimers pass each other.
-- Why a function: its SET clauses make the planner walk jobs_due_idx in claim order even when
-- statistics are stale (right after a burst of enqueues the table looks empty to the planner,
-- which would otherwise sort every pending row on each claim). Functions also work through
-- transaction-mode poolers, where session settings would leak.
CREATE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                   lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off AS $$
  WITH due AS (
    SELECT j.id FROM jobline.jobs j
    WHERE j.status = 'pending'
      AND j.run_at <= now()
      AND j.function = ANY(functions)
      AND (queues IS NULL OR j.queue = ANY(queues))
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT lim
    FOR UPDATE SKIP LOCKED
  )
  UPDATE jobline.jobs j
  SET status = 'running',
      attempts = j.attempts + 1,
      worker_id = worker,
      lease_until = now() + make_interval(secs => lease_seconds),
      started_at = now()
  FROM due
  WHERE j.id = due.id
  RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner
$$;

-- enqueue: the SQL entry point, for transactional enqueue from an application's own SQL.
CREATE FUNCTION jobline.enqueue(
  function_name text,
  payload       jsonb       DEFAULT '{}',
  run_at        timestamptz DEFAULT now(),
  queue         text        DEFAULT 'default',
  priority      integer     DEFAULT 0,
  owner         text        DEFAULT NULL,
  max_attempts  integer     DEFAULT 3,
  depends_on    bigint[]    DEFAULT NULL,
  unique_key    text        DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  dep_statuses text[];
  missing bigint[];
  remaining integer := 0;
  new_status text := 'pending';
  job_id bigint;
BEGIN
  IF NOT jobline.is_valid_name(enqueue.function_name, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: function_name % is not a valid name', quote_nullable(enqueue.function_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  IF enqueue.payload IS NULL OR jsonb_typeof(enqueue.payload) <> 'object' THEN
    RAISE EXCEPTION 'jobline.enqueue: payload must be a JSON object'
      USING ERRCODE = '22023';
  END IF;
  IF octet_length(enqueue.payload::text) > 1048576 THEN
    RAISE EXCEPTION 'jobline.enqueue: payload is larger than 1 MiB' USING ERRCODE = '22023';
  END IF;
  IF enqueue.owner IS NOT NULL AND NOT jobline.is_valid_name(enqueue.owner, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: owner % is not a valid name', quote_literal(enqueue.owner) USING ERRCODE = '22023';
  END IF;
  IF enqueue.unique_key IS NOT NULL AND NOT jobline.is_valid_name(enqueue.unique_key, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: unique_key % is not a valid name', quote_literal(enqueue.unique_key) USING ERRCODE = '22023';
  END IF;
  IF NOT jobline.is_valid_name(enqueue.queue, 100) THEN
    RAISE EXCEPTION 'jobline.enqueue: queue % is not a valid name', quote_nullable(enqueue.queue) USING ERRCODE = '22023';
  END IF;
  IF enqueue.priority IS NULL OR enqueue.priority NOT BETWEEN -1000 AND 1000 THEN
    RAISE EXCEPTION 'jobline.enqueue: priority must be between -1000 and 1000, got %', enqueue.priority USING ERRCODE = '22023';
  END IF;
  IF enqueue.max_attempts IS NULL OR enqueue.max_attempts NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'jobline.enqueue: max_attempts must be between 1 and 1000, got %', enqueue.max_attempts USING ERRCODE = '22023';
  END IF;
  IF enqueue.depends_on IS NOT NULL AND cardinality(enqueue.depends_on) > 0 THEN
    -- FOR SHARE waits for a dependency that is finishing right now, so its completion either
    -- happened before (we see the final status) or will release this row after we commit.
    SELECT array_agg(d.status) INTO dep_statuses
      FROM (SELECT j.status FROM jobline.jobs j WHERE j.id = ANY(enqueue.depends_on) FOR SHARE) d;
    missing := array(SELECT unnest(enqueue.depends_on)
                     EXCEPT SELECT j.id FROM jobline.jobs j WHERE j.id = ANY(enqueue.depends_on));
    IF cardinality(missing) > 0 THEN
      RAISE EXCEPTION 'jobline.enqueue: depends_on names jobs that do not exist: %', missing USING ERRCODE = '23503';
    END IF;
    depends_on := array(SELECT DISTINCT unnest(enqueue.depends_on) ORDER BY 1);
    remaining := cardinality(array_remove(dep_statuses, 'succeeded'));
    IF dep_statuses && ARRAY['failed', 'cancelled'] THEN
      new_status := 'cancelled';
    ELSIF remaining > 0 THEN
      new_status := 'waiting';
    END IF;
  ELSE
    depends_on := NULL;
  END IF;

  INSERT INTO jobline.jobs AS j (function, payload, run_at, queue, priority, owner, max_attempts,
                                 depends_on, deps_remaining, unique_key, status, finished_at, last_error)
  VALUES (enqueue.function_name, enqueue.payload, coalesce(enqueue.run_at, now()), enqueue.queue,
          enqueue.priority, enqueue.owner, enqueue.max_attempts,
          enqueue.depends_on, remaining, enqueue.unique_key, new_status,
          CASE WHEN new_status = 'cancelled' THEN now() END,
          CASE WHEN new_status = 'cancelled' THEN 'a job it depends on failed or was cancelled' END)
  ON CONFLICT (function, coalesce(owner, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'pending', 'running')
    DO NOTHING
  RETURNING j.id INTO job_id;

  IF job_id IS NULL THEN
    SELECT j.id INTO job_id FROM jobline.jobs j
     WHERE j.function = enqueue.function_name AND coalesce(j.owner, '') = coalesce(enqueue.owner, '')
       AND j.unique_key = enqueue.unique_key AND j.status IN ('waiting', 'pending', 'running');
  END IF;
  RETURN job_id;
END $$;

-- Seed 000's interface: a task log whose rows are jobs.
CREATE FUNCTION jobline.log_scheduled_task(task_name text) RETURNS bigint
LANGUAGE sql AS $$ SELECT jobline.enqueue(task_name) $$;

CREATE VIEW jobline.scheduled_tasks AS
SELECT id,
       function AS function_name,
       run_at AS scheduled_time,
       CASE WHEN status IN ('waiting', 'pending', 'running') THEN 'pending'
            WHEN status = 'succeeded' THEN 'completed'
            ELSE 'failed' END AS status
  FROM jobline.jobs;

-- For an external cron that can only run SQL: wake every idle worker to run what is due now.
CREATE FUNCTION jobline.process_scheduled_tasks() RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
  due integer;
BEGIN
  SELECT count(*) INTO due FROM jobline.jobs WHERE status = 'pending' AND run_at <= now();
  PERFORM pg_notify('jobline_jobs', '');
  RETURN due;
END $$;

-- settle_dependants: what finishing jobs means for the jobs that wait on them.
-- Dependants of failed or cancelled jobs are cancelled (recursively, with the reason); then
-- each succeeded job counts itself off its dependants, which become pending at zero.
-- Two statements, each with a fresh snapshot, so a dependant enqueued while its dependency was
-- finishing (jobline.enqueue holds FOR SHARE on the dependency) is always seen.
-- Callers pass only jobs whose final state they have just written, exactly once.
CREATE FUNCTION jobline.settle_dependants(succeeded_ids bigint[], failed_ids bigint[])
RETURNS integer LANGUAGE plpgsql
-- Reach dependants through jobs_waiting_deps_idx even when statistics are stale (see claim_jobs).
SET enable_seqscan = off AS $$
DECLARE
  released integer := 0;
BEGIN
  IF cardinality(failed_ids) > 0 THEN
    WITH RECURSIVE doomed(id, cause) AS (
      SELECT w.id, (SELECT min(d) FROM unnest(w.depends_on) d WHERE d = ANY(failed_ids))
        FROM jobline.jobs w
       WHERE w.status = 'waiting' AND w.depends_on && failed_ids
      UNION
      SELECT w.id, d.id FROM jobline.jobs w JOIN doomed d ON w.depends_on @> ARRAY[d.id]
       WHERE w.status = 'waiting'
    )
    UPDATE jobline.jobs j
       SET status = 'cancelled', finished_at = now(),
           last_error = format('cancelled because job %s, which it depends on, failed or was cancelled', d.cause)
      FROM (SELECT DISTINCT ON (id) id, cause FROM doomed ORDER BY id, cause) d
     WHERE j.id = d.id AND j.status = 'waiting';
  END IF;

  IF cardinality(succeeded_ids) > 0 THEN
    WITH counted AS (
      SELECT w.id, (SELECT count(*) FROM unnest(w.depends_on) d WHERE d = ANY(succeeded_ids)) AS done
        FROM jobline.jobs w
       WHERE w.status = 'waiting' AND w.depends_on && succeeded_ids
    ), updated AS (
      -- Row locks serialise concurrent settlers on the same dependant, and the SET expressions
      -- read the latest row version, so the counter never misses a decrement.
      UPDATE jobline.jobs j
         SET deps_remaining = j.deps_remaining - c.done,
             status = CASE WHEN j.deps_remaining - c.done <= 0 THEN 'pending' ELSE 'waiting' END
        FROM counted c
       WHERE j.id = c.id AND j.status = 'waiting'
      RETURNING j.status
    )
    SELECT count(*) FILTER (WHERE status = 'pending') INTO released FROM updated;
    IF released > 0 THEN
      PERFORM pg_notify('jobline_jobs', '');
    END IF;
  END IF;
  RETURN released;
END $$;

