-- 0012_run_status: a run's status follows the work its tick started, including the jobs its SQL
-- queued. Seed 002's weekly check is `SELECT jobline.http_post(...)`: the command succeeds in a
-- millisecond by queueing an HTTP call, and the call may then fail five times. The run must not
-- say `succeeded` then: it is `running` while the call is in flight or waiting for a retry,
-- `failed` with the call's status and error once it fails for good, `succeeded` when it
-- succeeded. The same for every job's status in jobline.scheduled_tasks, `jobline cron ls|runs`
-- and GET /api/schedules (which read jobline.job_outcome too).
--
-- How: while a worker runs a `sql` job's command, the setting jobline.parent_job names that job
-- (Store.sql_run), and jobline.enqueue records it as `parent_id` of the jobs the command queues
-- (a job of the same role, still running; anything else is ignored, so a command that sets the
-- setting itself can only name its own jobs). One level: the children's own children do not
-- count.
-- Cost: jobs queued by anything else have no parent; enqueue reads one setting; the index holds
-- only the rows that have a parent.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

ALTER TABLE jobline.jobs ADD COLUMN parent_id bigint;
CREATE INDEX jobs_parent_idx ON jobline.jobs (parent_id) WHERE parent_id IS NOT NULL;

-- job_acts_for: whether job `job_id` acts for `role`. The policy below asks it, as the table's
-- owner: a policy on jobline.jobs cannot read jobline.jobs under its own policies.
CREATE FUNCTION jobline.job_acts_for(job_id bigint, role text) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT FROM jobline.jobs j
                  WHERE j.id OPERATOR(pg_catalog.=) job_id AND j.username OPERATOR(pg_catalog.=) role)
$$;

-- As in 0010, and a plain role's job can only be the child of one of its own.
DROP POLICY jobs_own_insert ON jobline.jobs;
CREATE POLICY jobs_own_insert ON jobline.jobs FOR INSERT
  WITH CHECK (username = current_user AND function IN ('sql', 'http') AND owner IS NULL AND depends_on IS NULL
              AND status = 'pending' AND attempts = 0 AND deps_remaining = 0 AND worker_id IS NULL
              AND lease_until IS NULL AND started_at IS NULL AND finished_at IS NULL AND result IS NULL
              AND last_error IS NULL AND archived_at IS NULL
              AND (parent_id IS NULL OR jobline.job_acts_for(parent_id, current_user)));

-- enqueue, as in 0011, recording the running `sql` job whose command queues this one.
CREATE OR REPLACE FUNCTION jobline.enqueue(
  function_name text,
  payload       jsonb       DEFAULT '{}',
  run_at        timestamptz DEFAULT now(),
  queue         text        DEFAULT 'default',
  priority      integer     DEFAULT 0,
  owner         text        DEFAULT NULL,
  max_attempts  integer     DEFAULT 3,
  depends_on    bigint[]    DEFAULT NULL,
  unique_key    text        DEFAULT NULL,
  username      text        DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  dep_statuses text[];
  missing bigint[];
  remaining integer := 0;
  new_status text := 'pending';
  job_id bigint;
  acting text := coalesce(enqueue.username, current_user);
  running_job text := current_setting('jobline.parent_job', true);
  parent bigint;
BEGIN
  IF NOT jobline.is_valid_name(enqueue.function_name, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: function_name % is not a valid name', quote_nullable(enqueue.function_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  -- The policies on jobline.jobs hold this rule; here it is said in words. Who may UPDATE
  -- jobline.jobs (the operator) is the cheapest question that tells the operator from a plain
  -- role, and only what a plain role may not do asks it: the operator's enqueue stays as fast.
  IF (acting <> current_user OR enqueue.owner IS NOT NULL OR enqueue.depends_on IS NOT NULL
      OR enqueue.function_name NOT IN ('sql', 'http'))
     AND NOT has_table_privilege('jobline.jobs', 'UPDATE') THEN
    RAISE EXCEPTION 'jobline.enqueue: role % may queue only its own sql and http jobs, without owner or depends_on',
      quote_ident(current_user)
      USING ERRCODE = '42501',
            HINT = 'jobline''s operator (a superuser or the owner of schema jobline) may queue any function, for any role';
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
  -- Queued by the command of a running `sql` job (Store.sql_run names it): its child, if it acts
  -- for the same role (a job queued before roles were recorded: for the operator). A plain role
  -- sees only its own jobs here.
  IF running_job ~ '^[0-9]{1,18}$' THEN
    SELECT j.id INTO parent FROM jobline.jobs j
     WHERE j.id = running_job::bigint AND j.status = 'running' AND coalesce(j.username, acting) = acting;
  END IF;

  INSERT INTO jobline.jobs AS j (function, payload, run_at, queue, priority, owner, max_attempts,
                                 depends_on, deps_remaining, unique_key, status, finished_at, last_error,
                                 username, parent_id)
  VALUES (enqueue.function_name, enqueue.payload, coalesce(enqueue.run_at, now()), enqueue.queue,
          enqueue.priority, enqueue.owner, enqueue.max_attempts,
          enqueue.depends_on, remaining, enqueue.unique_key, new_status,
          CASE WHEN new_status = 'cancelled' THEN now() END,
          CASE WHEN new_status = 'cancelled' THEN 'a job it depends on failed or was cancelled' END,
          acting, parent)
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

-- job_outcome: how the work job `job_id` started went, given the job's status, error and end.
-- A job that failed, or is still to run or running, is just that. One that succeeded is
-- `running` while a job it queued (its children) is waiting, pending (a retry included) or
-- running; `failed` once one of them failed or was cancelled, with `error` naming it and its
-- own error's first line (for an HTTP call: its status and timing); `succeeded` when all did.
-- `finished_at` is when the last of them finished (NULL while one runs); `live` how many are not
-- finished. A set-returning SQL function so that the planner inlines it as a LATERAL subquery:
-- its children are read (through jobs_parent_idx) only for jobs that succeeded.
CREATE FUNCTION jobline.job_outcome(job_id bigint, job_status text, job_error text, job_finished timestamptz)
RETURNS TABLE (status text, error text, finished_at timestamptz, live bigint)
LANGUAGE sql STABLE AS $$
  SELECT CASE WHEN job_status IS DISTINCT FROM 'succeeded' OR c.total = 0 THEN job_status
              WHEN c.live > 0 THEN 'running'
              WHEN c.failed IS NOT NULL THEN 'failed'
              ELSE 'succeeded' END,
         CASE WHEN job_status = 'succeeded' AND c.live = 0 AND c.failed IS NOT NULL THEN c.failed ELSE job_error END,
         CASE WHEN job_status = 'succeeded' AND c.live > 0 THEN NULL
              ELSE greatest(job_finished, c.last_finished) END,
         c.live
    FROM (SELECT count(*) AS total,
                 count(*) FILTER (WHERE k.status IN ('waiting', 'pending', 'running')) AS live,
                 (array_agg(format('%s job %s %s after %s attempt(s): %s', k.function, k.id, k.status, k.attempts,
                                   coalesce(split_part(btrim(k.last_error), E'\n', 1), 'no error recorded'))
                            ORDER BY k.id) FILTER (WHERE k.status IN ('failed', 'cancelled')))[1] AS failed,
                 max(k.finished_at) AS last_finished
            FROM jobline.jobs k
           WHERE job_status = 'succeeded' AND k.parent_id = job_id) c
$$;

-- pg_cron's cron.job_run_details, as in 0011, with each run's status from job_outcome:
-- `starting` (its job waits), `running` (its job, or a job it queued, is not finished), then
-- `succeeded` or `failed`; `skipped` or `missed` for a tick that did not run. return_message: the
-- command's status (`SELECT 1`), `... ; N job(s) it queued not finished yet` while they run, the
-- first line of the error (a queued job's, naming it), or why a tick did not run.
CREATE OR REPLACE VIEW jobline.job_run_details WITH (security_barrier) AS
SELECT r.schedule_id AS jobid, r.id AS runid, NULL::integer AS job_pid,
       coalesce(CASE WHEN s.function = 'sql' THEN s.payload->>'database' END, current_database())::text AS database,
       s.username COLLATE "C" AS username,
       jobline.schedule_command(s.function, s.payload) AS command,
       CASE WHEN r.job_id IS NULL THEN r.status
            WHEN o.status IN ('waiting', 'pending') THEN 'starting'
            WHEN o.status IN ('running', 'succeeded', 'failed') THEN o.status
            ELSE 'failed' END AS status,
       CASE WHEN r.job_id IS NULL THEN r.message
            WHEN o.status = 'succeeded' THEN coalesce(j.result->>'status', left(j.result::text, 1000))
            WHEN o.status = 'running' AND j.status = 'succeeded'
              THEN format('%s; %s job(s) it queued not finished yet', coalesce(j.result->>'status', 'done'), o.live)
            ELSE split_part(btrim(o.error), E'\n', 1) END AS return_message,
       coalesce(j.started_at, r.created_at) AS start_time,
       CASE WHEN r.job_id IS NULL THEN r.created_at ELSE o.finished_at END AS end_time
  FROM jobline.schedule_runs r
  JOIN jobline.schedules s ON s.id = r.schedule_id
  LEFT JOIN jobline.jobs j ON j.id = r.job_id
  LEFT JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o ON true
 WHERE s.username = current_user OR (SELECT jobline.is_operator());

-- DELETE FROM jobline.job_run_details WHERE ... (pg_cron's way to keep the table small, which
-- pg_cron grants to every role) deletes those runs: the view shows a role only its own runs, so
-- only its own reach this trigger, which then deletes them as the table's owner. Their jobs stay
-- (and go with their retention).
CREATE FUNCTION jobline.job_run_details_delete() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
  DELETE FROM jobline.schedule_runs r WHERE r.id OPERATOR(pg_catalog.=) OLD.runid;
  RETURN OLD;
END $$;
REVOKE ALL ON FUNCTION jobline.job_run_details_delete() FROM PUBLIC;
CREATE TRIGGER job_run_details_delete INSTEAD OF DELETE ON jobline.job_run_details
  FOR EACH ROW EXECUTE FUNCTION jobline.job_run_details_delete();
GRANT DELETE ON jobline.job_run_details TO PUBLIC;

-- scheduled_tasks, as in 0011, with each task's status from job_outcome: `pending` while it or a
-- job it queued is not finished, `failed` when either failed.
CREATE OR REPLACE VIEW jobline.scheduled_tasks WITH (security_barrier) AS
SELECT j.id,
       j.function AS function_name,
       j.run_at AS scheduled_time,
       CASE WHEN o.status IN ('waiting', 'pending', 'running') THEN 'pending'
            WHEN o.status = 'succeeded' THEN 'completed'
            ELSE 'failed' END AS status
  FROM jobline.jobs j
  CROSS JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o
 WHERE j.username = current_user OR (SELECT jobline.is_operator());
