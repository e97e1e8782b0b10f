-- 0021_pipelines: pipelines (issue 11, section 1). A pipeline is a named graph of steps declared
-- in code and recorded here when a worker or `jobline serve` starts; a run creates every step as
-- a job in one transaction (jobline.start_pipeline, the one place that creates runs), chained by
-- the dependency mechanism of 0001 (depends_on, deps_remaining, settle_dependants). A run's
-- history and status are kept by two triggers on jobline.jobs that only pipeline steps fire
-- (pipeline_step_changed, pipeline_run_settle); ordinary jobs pay their WHEN tests only (100,000
-- status updates took as long with the triggers as without, within the noise of this machine).
-- Also: Snooze (a handler's "run me again later" that spends no attempt) and the `upstream`
-- column of the claim.

-- The pipelines declared in code. steps is validated in Python (jobline/pipeline.py: unique
-- names, known `after` names, no cycle, bounded sizes) and stored in an order where every step
-- comes after the steps it runs after, with its queue, priority and max_attempts resolved:
-- [{"name", "function", "after": [...], "delay": seconds, "queue", "priority", "max_attempts",
--   "payload": {...}}, ...]. start_pipeline checks the order again, so a hand-written row cannot
-- make a run with a dangling dependency.
CREATE TABLE jobline.pipelines (
  name        text        PRIMARY KEY CHECK (jobline.is_valid_name(name, 200)),
  steps       jsonb       NOT NULL CHECK (jsonb_typeof(steps) = 'array' AND jsonb_array_length(steps) BETWEEN 1 AND 100),
  updated_at  timestamptz NOT NULL DEFAULT now()
);

-- One run of a pipeline. steps is the pipeline's steps when the run started, so a run keeps its
-- shape (for retry and for its graph) when the code changes the pipeline later.
CREATE TABLE jobline.pipeline_runs (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  pipeline     text        NOT NULL,
  owner        text,
  status       text        NOT NULL DEFAULT 'running'
               CHECK (status IN ('running', 'succeeded', 'failed', 'cancelled')),
  payload      jsonb       NOT NULL,
  steps        jsonb       NOT NULL,
  created_at   timestamptz NOT NULL DEFAULT now(),
  finished_at  timestamptz
);
-- Listings newest first, per owner (a user's) or for everyone (the service's, by id).
CREATE INDEX pipeline_runs_owner_idx ON jobline.pipeline_runs (owner, id DESC);
CREATE INDEX pipeline_runs_pipeline_idx ON jobline.pipeline_runs (pipeline, id DESC);
-- Retention: finished runs whose step jobs are all gone (pipeline_run_prune.sql).
CREATE INDEX pipeline_runs_finished_idx ON jobline.pipeline_runs (finished_at) WHERE status <> 'running';

-- Seed 003's pipeline_history: what happened to a run and its steps, in order (by id). step is
-- NULL for events of the run itself (started, succeeded, failed, cancelled, retried).
CREATE TABLE jobline.pipeline_history (
  id       bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  run_id   bigint      NOT NULL REFERENCES jobline.pipeline_runs (id) ON DELETE CASCADE,
  step     text,
  job_id   bigint,
  event    text        NOT NULL,
  message  text,
  at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX pipeline_history_run_idx ON jobline.pipeline_history (run_id, id);

-- A step is a job with these two set; ordinary jobs leave them NULL (nullable without default:
-- adding them rewrites nothing). No foreign key: its check would cost every step's updates.
ALTER TABLE jobline.jobs ADD COLUMN pipeline_run_id bigint, ADD COLUMN step text;
CREATE INDEX jobs_pipeline_run_idx ON jobline.jobs (pipeline_run_id) WHERE pipeline_run_id IS NOT NULL;

-- A plain role's own jobs (0011, 0019) never join a run (only start_pipeline makes steps: a
-- step added by hand would change another user's run, its status and its events), and never take
-- a unique key of jobline's own (`jobline-...`, such as a notification's delivery, 0020: holding
-- one would keep jobline from queueing that delivery).
DROP POLICY jobs_own_insert ON jobline.jobs;
CREATE POLICY jobs_own_insert ON jobline.jobs FOR INSERT
  WITH CHECK (username = current_user AND function IN ('sql', 'http') AND owner IS NULL AND depends_on IS NULL
              AND status = 'pending' AND attempts = 0 AND deps_remaining = 0 AND worker_id IS NULL
              AND lease_until IS NULL AND started_at IS NULL AND finished_at IS NULL AND result IS NULL
              AND last_error IS NULL AND archived_at IS NULL AND concurrency_key IS NULL
              AND pipeline_run_id IS NULL AND step IS NULL
              AND (unique_key IS NULL OR unique_key NOT LIKE 'jobline-%')
              AND (parent_id IS NULL OR jobline.job_acts_for(parent_id, current_user)));

-- The built-in `pipeline` function (a schedule's start of a run) is jobline's own: never handed
-- to a remote worker that names no task types (task_claim_many.sql), as `sql` and `http` (0005).
INSERT INTO jobline.local_functions (function) VALUES ('pipeline') ON CONFLICT DO NOTHING;

-- Snooze: a snoozed attempt is recorded (attempts outcome 'snoozed', so it shows in the job's
-- history) and its attempt number is used, since attempts' key is (job_id, attempt); instead of
-- counting against the budget, the snooze raises max_attempts by one (job_complete_many.sql).
-- A job polling with Snooze may therefore pass 1000, 0001's bound for what a caller asks for
-- (job.py and jobline.enqueue keep that bound on input).
ALTER TABLE jobline.jobs DROP CONSTRAINT jobs_max_attempts_check;
ALTER TABLE jobline.jobs ADD CONSTRAINT jobs_max_attempts_check CHECK (max_attempts >= 1) NOT VALID;

-- retry_budget: the max_attempts of a job a person retries (job_retry.sql, retry_pipeline_run):
-- the attempts it made, plus its budget again. Its budget is max_attempts less its snoozes, which
-- each raised max_attempts by one without being a try; so a retried job gets as many tries as it
-- was declared with, however often it snoozed. Reads the attempts' primary key.
CREATE FUNCTION jobline.retry_budget(job_id bigint, attempts integer, max_attempts integer) RETURNS integer
LANGUAGE sql STABLE AS $$
  SELECT retry_budget.attempts + greatest(1, retry_budget.max_attempts
    - (SELECT count(*)::int FROM jobline.attempts a WHERE a.job_id = retry_budget.job_id AND a.outcome = 'snoozed'))
$$;

-- pipeline_upstream: the results of the jobs `deps` (a step's depends_on: the steps it runs
-- after), keyed by step name, e.g. {"generate": {"text": "..."}}. Read at claim time (below),
-- so a retried run's later steps read the results its earlier steps keep.
CREATE FUNCTION jobline.pipeline_upstream(deps bigint[]) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT coalesce(jsonb_object_agg(u.step, coalesce(u.result, 'null'::jsonb)), '{}'::jsonb)
    FROM jobline.jobs u
   WHERE u.id = ANY(deps) AND u.step IS NOT NULL
$$;

-- start_pipeline: the one place that creates runs (Python, the CLI, HTTP and schedules call it).
-- In the caller's transaction: the run, its history's first row and one job per step, or, on any
-- error, nothing. A step's payload is the run's payload with the step's own declared payload on
-- top (the declaration wins); a step of a built-in function (sql, http) gets only its declared
-- payload, so whoever starts a run can never choose a URL, a header or a command.
-- parent: the running job that starts the run (the built-in `pipeline` function's, which a
-- schedule's tick enqueues), of the same owner. Its steps become that job's children (parent_id,
-- as a `sql` command's jobs are, 0012), so the tick's outcome follows the run (job_outcome), and a
-- failed step counts against the schedule's max_consecutive_failures (0020).
CREATE FUNCTION jobline.start_pipeline(name text, payload jsonb DEFAULT '{}', owner text DEFAULT NULL,
                                       parent bigint DEFAULT NULL)
RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_variable
DECLARE
  declared jsonb;
  run_id bigint;
  s jsonb;
  ids jsonb := '{}'::jsonb;
  deps bigint[];
  dep text;
  job_id bigint;
  delay float8;
BEGIN
  IF name IS NULL THEN
    RAISE EXCEPTION 'jobline.start_pipeline: name must not be null' USING ERRCODE = '22023';
  END IF;
  SELECT p.steps INTO declared FROM jobline.pipelines p WHERE p.name = start_pipeline.name;
  IF declared IS NULL THEN
    RAISE EXCEPTION 'jobline.start_pipeline: no pipeline named %', quote_literal(name)
      USING ERRCODE = 'P0002', HINT = 'pipelines are recorded when a worker or `jobline serve` of the app that declares them starts';
  END IF;
  IF payload IS NULL OR jsonb_typeof(payload) <> 'object' THEN
    RAISE EXCEPTION 'jobline.start_pipeline: payload must be a JSON object' USING ERRCODE = '22023';
  END IF;
  IF octet_length(payload::text) > 1048576 THEN
    RAISE EXCEPTION 'jobline.start_pipeline: payload is larger than 1 MiB' USING ERRCODE = '22023';
  END IF;
  IF owner IS NOT NULL AND NOT jobline.is_valid_name(owner, 200) THEN
    RAISE EXCEPTION 'jobline.start_pipeline: owner % is not a valid name', quote_literal(owner) USING ERRCODE = '22023';
  END IF;
  IF parent IS NOT NULL AND NOT EXISTS (SELECT FROM jobline.jobs j WHERE j.id = parent AND j.status = 'running'
                                           AND j.owner IS NOT DISTINCT FROM start_pipeline.owner) THEN
    RAISE EXCEPTION 'jobline.start_pipeline: parent % is not a running job of the same owner', parent
      USING ERRCODE = '22023';
  END IF;

  INSERT INTO jobline.pipeline_runs (pipeline, owner, payload, steps)
  VALUES (start_pipeline.name, owner, payload, declared)
  RETURNING id INTO run_id;
  INSERT INTO jobline.pipeline_history (run_id, event, message)
  VALUES (run_id, 'started', format('%s steps', jsonb_array_length(declared)));

  FOR s IN SELECT value FROM jsonb_array_elements(declared) LOOP
    deps := '{}';
    FOR dep IN SELECT jsonb_array_elements_text(coalesce(s->'after', '[]')) LOOP
      IF NOT ids ? dep THEN
        RAISE EXCEPTION 'jobline.start_pipeline: pipeline %: step % runs after %, which is not declared before it',
          quote_literal(name), quote_literal(s->>'name'), quote_literal(dep) USING ERRCODE = '22023';
      END IF;
      deps := deps || (ids->>dep)::bigint;
    END LOOP;
    delay := coalesce((s->>'delay')::float8, 0);
    INSERT INTO jobline.jobs (function, payload, status, run_at, queue, priority, owner, max_attempts,
                              depends_on, deps_remaining, pipeline_run_id, step, parent_id)
    VALUES (s->>'function',
            CASE WHEN s->>'function' IN ('sql', 'http') THEN coalesce(s->'payload', '{}')
                 ELSE payload || coalesce(s->'payload', '{}') END,
            CASE WHEN cardinality(deps) = 0 THEN 'pending' ELSE 'waiting' END,
            -- A step's delay runs from its release: now for a first step, else when the last
            -- step it runs after succeeds (jobs_pipeline_release below).
            now() + make_interval(secs => CASE WHEN cardinality(deps) = 0 THEN delay ELSE 0 END),
            coalesce(s->>'queue', 'default'), coalesce((s->>'priority')::int, 0), owner,
            coalesce((s->>'max_attempts')::int, 3),
            CASE WHEN cardinality(deps) = 0 THEN NULL ELSE deps END, cardinality(deps), run_id, s->>'name', parent)
    RETURNING id INTO job_id;
    ids := ids || jsonb_build_object(s->>'name', job_id);
  END LOOP;
  RETURN run_id;
END $$;

-- pipeline_step_changed: a step's history, and its delay. A BEFORE trigger, for two reasons: the
-- delay (a step is due `delay` seconds after its release, waiting -> pending) is written into the
-- row being updated; and the history comes out in the order things happened. A completion
-- statement settles dependants (settle_dependants) within itself, before its own AFTER triggers
-- fire: an AFTER trigger would log "post released" before "generate succeeded".
-- Fired only for steps whose status changed (the trigger's WHEN), so ordinary jobs pay one test.
CREATE FUNCTION jobline.pipeline_step_changed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  event text;
  delay float8;
BEGIN
  IF OLD.status = 'waiting' AND NEW.status = 'pending' THEN
    SELECT (s->>'delay')::float8 INTO delay
      FROM jobline.pipeline_runs r, jsonb_array_elements(r.steps) s
     WHERE r.id = NEW.pipeline_run_id AND s->>'name' = NEW.step;
    IF delay > 0 THEN
      NEW.run_at := now() + make_interval(secs => delay);
    END IF;
  END IF;
  event := CASE
    WHEN NEW.status = 'running' THEN 'started'
    WHEN OLD.status = 'waiting' AND NEW.status = 'pending' THEN 'released'
    WHEN OLD.status IN ('succeeded', 'failed', 'cancelled') THEN 'retried'
    WHEN OLD.status = 'running' AND NEW.status = 'pending' AND NEW.max_attempts > OLD.max_attempts THEN 'snoozed'
    WHEN OLD.status = 'running' AND NEW.status = 'pending' AND NEW.attempts < OLD.attempts THEN 'handed back'
    WHEN OLD.status = 'running' AND NEW.status = 'pending' THEN 'retrying'
    ELSE NEW.status END;
  -- A step reaching or leaving a final status may change its run's: note the run for
  -- pipeline_run_settle, which runs at commit (see there why then, and why from this list).
  IF NEW.status IN ('succeeded', 'failed', 'cancelled') OR OLD.status IN ('succeeded', 'failed', 'cancelled') THEN
    PERFORM set_config('jobline.settle_runs',
                       coalesce(current_setting('jobline.settle_runs', true), '') || NEW.pipeline_run_id || ',', true);
  END IF;
  INSERT INTO jobline.pipeline_history (run_id, step, job_id, event, message)
  VALUES (NEW.pipeline_run_id, NEW.step, NEW.id, event, CASE event
    WHEN 'started' THEN format('attempt %s of %s', NEW.attempts, NEW.max_attempts)
    WHEN 'released' THEN CASE WHEN NEW.run_at > now() THEN format('due at %s', NEW.run_at) END
    WHEN 'snoozed' THEN format('until %s', NEW.run_at)
    -- The first line of the error (an http failure's second line is the response body).
    WHEN 'retrying' THEN left(split_part(NEW.last_error, E'\n', 1), 500)
    WHEN 'failed' THEN left(split_part(NEW.last_error, E'\n', 1), 500)
    WHEN 'cancelled' THEN left(split_part(NEW.last_error, E'\n', 1), 500)
    END);
  RETURN NEW;
END $$;

CREATE TRIGGER jobs_pipeline_step BEFORE UPDATE OF status ON jobline.jobs
  FOR EACH ROW WHEN (NEW.pipeline_run_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status)
  EXECUTE FUNCTION jobline.pipeline_step_changed();

-- The hook where a run reaches its final status (succeeded, failed or cancelled), once per time
-- it gets there (a retried run that fails again calls it again). Called by pipeline_run_settle
-- when the transaction that finished the run commits.
-- It raises pipeline.succeeded or pipeline.failed (0020's record_event) to the run's owner and
-- the operators; a cancelled run raises nothing (a person cancelled it). Inside its own
-- exception block, as 0020's trigger does: a notification must never make the commit that
-- finished the run fail.
CREATE FUNCTION jobline.pipeline_run_finished(run_id bigint, status text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  run jobline.pipeline_runs;
BEGIN
  IF status NOT IN ('succeeded', 'failed') THEN
    RETURN;
  END IF;
  SELECT * INTO run FROM jobline.pipeline_runs r WHERE r.id = pipeline_run_finished.run_id;
  BEGIN
    PERFORM jobline.record_event('pipeline.' || status, run.owner, left(format('%s #%s', run.pipeline, run.id), 500),
      jsonb_build_object('run_id', run.id, 'pipeline', run.pipeline, 'status', status,
                         'failed_steps', (SELECT coalesce(jsonb_agg(j.step ORDER BY j.id), '[]') FROM jobline.jobs j
                                          WHERE j.pipeline_run_id = run.id AND j.status = 'failed')));
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'jobline: the % event of pipeline run % was not recorded: %', 'pipeline.' || status, run.id, SQLERRM;
  END;
END $$;

-- pipeline_run_settle: the one place a run's status is maintained. Running while any step is
-- waiting, pending or running; then succeeded when every step succeeded, failed when one failed,
-- cancelled otherwise (a person cancelled it).
-- How, and why so:
-- - Two steps of one run finishing in two transactions must not both count the other as still
--   live, so the run's row is locked before its steps are counted; each statement of a plpgsql
--   function reads a fresh snapshot, so the second to get the lock sees the first's committed
--   step, and the last one to finish always sees them all.
-- - It is a deferred constraint trigger: it runs at commit, when the transaction takes no other
--   lock, and its first firing settles every run the transaction touched (listed by
--   pipeline_step_changed in the transaction-local setting jobline.settle_runs), locking them in
--   id order; the later firings find the list empty. Run rows locked during the statement (an
--   AFTER ROW trigger) were locked in the order the statement updated its steps, so a completion
--   batch holding steps of runs 1 and 2 and another's holding steps of runs 2 and 1 could
--   deadlock, and so could a batch waiting for a fan-in step's row that another batch's settle
--   holds (tests/runtime/test_pipelines.py runs 40 wide runs in four worker processes and counts
--   PostgreSQL's deadlocks: there were some before this).
-- - FOR NO KEY UPDATE, not FOR UPDATE: other transactions' history rows hold FOR KEY SHARE on the
--   run (their foreign key), which FOR UPDATE would wait for.
-- - Ordinary jobs never fire it (its WHEN), nor do a step's other moves (claimed, retrying).
CREATE FUNCTION jobline.pipeline_run_settle() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  touched text := current_setting('jobline.settle_runs', true);
  run jobline.pipeline_runs;
  live integer;
  total integer;
  succeeded integer;
  failed integer;
  new_status text;
BEGIN
  IF touched IS NULL OR touched = '' THEN
    RETURN NULL;  -- an earlier firing in this commit settled them all
  END IF;
  PERFORM set_config('jobline.settle_runs', '', true);
  FOR run IN SELECT r.* FROM jobline.pipeline_runs r
              WHERE r.id = ANY(string_to_array(rtrim(touched, ','), ',')::bigint[])
              ORDER BY r.id FOR NO KEY UPDATE OF r LOOP
    SELECT count(*) FILTER (WHERE j.status IN ('waiting', 'pending', 'running')), count(*),
           count(*) FILTER (WHERE j.status = 'succeeded'), count(*) FILTER (WHERE j.status = 'failed')
      INTO live, total, succeeded, failed
      FROM jobline.jobs j WHERE j.pipeline_run_id = run.id;
    new_status := CASE WHEN live > 0 THEN 'running' WHEN succeeded = total THEN 'succeeded'
                       WHEN failed > 0 THEN 'failed' ELSE 'cancelled' END;
    IF new_status IS DISTINCT FROM run.status THEN
      UPDATE jobline.pipeline_runs r
         SET status = new_status, finished_at = CASE WHEN new_status = 'running' THEN NULL ELSE now() END
       WHERE r.id = run.id;
      INSERT INTO jobline.pipeline_history (run_id, event, message)
      VALUES (run.id, CASE WHEN new_status = 'running' THEN 'retried' ELSE new_status END,
              format('%s of %s steps succeeded', succeeded, total));
      IF new_status <> 'running' THEN
        PERFORM jobline.pipeline_run_finished(run.id, new_status);
      END IF;
    END IF;
  END LOOP;
  RETURN NULL;
END $$;

CREATE CONSTRAINT TRIGGER jobs_pipeline_run AFTER UPDATE OF status ON jobline.jobs
  DEFERRABLE INITIALLY DEFERRED
  FOR EACH ROW WHEN (NEW.pipeline_run_id IS NOT NULL AND OLD.status IS DISTINCT FROM NEW.status
                     AND (NEW.status IN ('succeeded', 'failed', 'cancelled')
                          OR OLD.status IN ('succeeded', 'failed', 'cancelled')))
  EXECUTE FUNCTION jobline.pipeline_run_settle();

-- cancel_pipeline_run: cancel every unfinished step of run `run_id` with `reason` (a running
-- attempt's late report is fenced out, as for jobline.jobs cancels); returns how many. Only the
-- steps are written: the run's status follows at commit (pipeline_run_settle).
CREATE FUNCTION jobline.cancel_pipeline_run(run_id bigint, reason text DEFAULT NULL) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  cancelled bigint[];
BEGIN
  WITH c AS (
    UPDATE jobline.jobs j
       SET status = 'cancelled', finished_at = now(), worker_id = NULL, lease_until = NULL,
           last_error = coalesce(reason, 'the pipeline run was cancelled')
     WHERE j.pipeline_run_id = run_id AND j.status IN ('waiting', 'pending', 'running')
    RETURNING j.id)
  SELECT coalesce(array_agg(id), '{}') INTO cancelled FROM c;
  -- Jobs outside the run that someone made depend on its steps.
  PERFORM jobline.settle_dependants('{}', cancelled);
  RETURN cardinality(cancelled);
END $$;

-- retry_pipeline_run: run a failed or cancelled run again from its failed and cancelled steps,
-- keeping the results of the steps that succeeded. Each such step gets its attempt budget again
-- (as jobline.jobs retries do) and is pending when every step it runs after succeeded, else
-- waiting for those that are run again. Returns how many steps run again.
CREATE FUNCTION jobline.retry_pipeline_run(run_id bigint) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
  again integer;
BEGIN
  WITH redo AS (
    UPDATE jobline.jobs j
       SET deps_remaining = r.remaining,
           status = CASE WHEN r.remaining = 0 THEN 'pending' ELSE 'waiting' END,
           run_at = now(), finished_at = NULL, archived_at = NULL, worker_id = NULL, lease_until = NULL,
           max_attempts = jobline.retry_budget(j.id, j.attempts, j.max_attempts)
      FROM (SELECT w.id, (SELECT count(*) FROM jobline.jobs d
                           WHERE d.id = ANY(w.depends_on) AND d.status <> 'succeeded')::int AS remaining
              FROM jobline.jobs w
             WHERE w.pipeline_run_id = run_id AND w.status IN ('failed', 'cancelled')) r
     WHERE j.id = r.id
    RETURNING j.id)
  SELECT count(*) INTO again FROM redo;
  IF again > 0 THEN
    PERFORM pg_notify('jobline_jobs', '');
  END IF;
  RETURN again;
END $$;

-- The claims (0019: claim_jobs, and its two paths claim_jobs_free and claim_jobs_limited), each
-- returning also `upstream`: the results of the steps a pipeline step runs after, by step name;
-- NULL for ordinary jobs. Otherwise 0019's text unchanged.
-- Why at claim time, not stored at release: a retried run's step must read the results its
-- upstream steps have now, and storing them would add a write per release to settle_dependants.
-- The cost stays off the ordinary-job path: the CASE calls pipeline_upstream only for rows with
-- a pipeline_run_id (a NULL test per claimed row otherwise), and only for the rows claimed.
-- A function's RETURNS TABLE cannot be changed in place: dropped and created again.
DROP FUNCTION jobline.claim_jobs(text, text[], text[], integer, double precision);
DROP FUNCTION jobline.claim_jobs_free(text, text[], text[], integer, double precision);
DROP FUNCTION jobline.claim_jobs_limited(text, text[], text[], integer, double precision, bigint[], timestamptz);

CREATE FUNCTION jobline.claim_jobs_free(worker text, functions text[], queues text[], lim integer,
                                        lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
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
              j.priority, j.run_at, j.pipeline_run_id, j.depends_on
  )
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context,
         CASE WHEN c.pipeline_run_id IS NOT NULL THEN jobline.pipeline_upstream(c.depends_on) END
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;

CREATE FUNCTION jobline.claim_jobs_limited(worker text, functions text[], queues text[], lim integer,
                                           lease_seconds double precision, limit_ids bigint[], at timestamptz)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
  WITH room AS MATERIALIZED (
    SELECT r.limit_id, coalesce(r.key, '') AS key, r.room, l.scope, l.target, NOT l.per_key AS whole
    FROM jobline.limit_room(limit_ids, at) r JOIN jobline.limits l ON l.id = r.limit_id
  ), full_ AS MATERIALIZED (
    SELECT * FROM room WHERE room.room <= 0
  ), due AS MATERIALIZED (
    SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
    WHERE j.status = 'pending'
      AND j.run_at <= at
      AND j.function = ANY(functions)
      AND (queues IS NULL OR j.queue = ANY(queues))
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
    -- a filter on status would make the planner walk the partial jobs_due_idx for these ids.
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
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;

CREATE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                   lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb, upstream jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  limit_ids bigint[];
BEGIN
  limit_ids := jobline.limits_take(functions, queues);
  IF limit_ids IS NULL THEN
    RETURN QUERY SELECT * FROM jobline.claim_jobs_free(worker, functions, queues, lim, lease_seconds);
  ELSE
    RETURN QUERY SELECT * FROM jobline.claim_jobs_limited(worker, functions, queues, lim, lease_seconds,
                                                          limit_ids, clock_timestamp());
  END IF;
END $$;

REVOKE ALL ON FUNCTION jobline.claim_jobs_free(text, text[], text[], integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.claim_jobs_limited(text, text[], text[], integer, double precision, bigint[], timestamptz)
  FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.claim_jobs(text, text[], text[], integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.cancel_pipeline_run(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.retry_pipeline_run(bigint) FROM PUBLIC;
