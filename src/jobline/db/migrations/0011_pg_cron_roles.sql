-- 0011_pg_cron_roles: pg_cron's role model, and the rest of pg_cron's SQL interface.
--
-- A role with USAGE ON SCHEMA jobline schedules, lists, alters and unschedules its own jobs and
-- sees no one else's; jobline's operator (a superuser, or the owner of schema jobline and the
-- roles that have its privileges) sees and manages all. Every schedule and every job records the
-- role it acts for (`username`, pg_cron's name, current_user when it was made), and a worker runs
-- a SQL command as that role, never with its own privileges (Store.sql_run says how).
--
-- Why row-level security and functions that run as their caller: the caller's identity is
-- current_user, and only a function that runs as its caller sees it (a SECURITY DEFINER function
-- sees its owner; pg_cron, in C, reads it before switching). So a plain role gets privileges on
-- the tables behind the functions it may call, and policies bound to its name decide which rows
-- they reach, whether it calls the functions or writes to the tables itself. The views run with
-- their owner's privileges, which bypass the policies (and PostgreSQL 13 and 14 have no
-- security_invoker views), so they filter on current_user themselves, as security barriers.
--
-- What a plain role may do, and nothing more: its own SQL schedules (jobline.schedule,
-- unschedule, alter_job; schedule_in_database stays the operator's to grant, as in pg_cron);
-- queue HTTP calls (jobline.http_post, http_get, http_delete) and SQL commands (jobline.enqueue
-- of `sql` or `http`), which run as itself and never see the operator's secrets; read its own
-- schedules, runs, jobs and responses. Not: other functions, depends_on, an owner, another role.
--
-- Also: expressions as pg_cron takes them (`$` for the last day of the month, `@restart`, a step
-- no larger than its field's range), pg_cron's error texts, and the schedule stored as written.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

-- is_operator: whether the current role sees and manages everything: a superuser, the owner of
-- schema jobline, or a role that has the owner's privileges. Policies call it as an InitPlan,
-- `(SELECT jobline.is_operator())`, so it runs once per statement, not per row.
CREATE FUNCTION jobline.is_operator() RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT pg_catalog.pg_has_role(n.nspowner, 'USAGE')
    FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'jobline'
$$;

-- role_is_operator: the same question about another role (NULL, a job queued before roles were
-- recorded, counts as the operator's: only the operator could queue jobs then). The http
-- function asks it before filling in a secret.
CREATE FUNCTION jobline.role_is_operator(role text) RETURNS boolean
LANGUAGE sql STABLE AS $$
  SELECT role IS NULL
      OR (EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname OPERATOR(pg_catalog.=) role)
          AND pg_catalog.pg_has_role(role, n.nspowner, 'USAGE'))
    FROM pg_catalog.pg_namespace n WHERE n.nspname OPERATOR(pg_catalog.=) 'jobline'
$$;

-- -- Who: the role each schedule and job acts for --------------------------------------------------

-- Existing schedules belong to the role that migrates (who made them, as far as anyone knows).
ALTER TABLE jobline.schedules ADD COLUMN username text;
UPDATE jobline.schedules SET username = current_user;
ALTER TABLE jobline.schedules ALTER COLUMN username SET DEFAULT current_user,
                              ALTER COLUMN username SET NOT NULL;
-- Names are unique per role, as pg_cron's (jobname, username): another role's 'nightly' is
-- another job, and a taken name reveals nothing. The operator's CLI, API and code all act as
-- the role jobline connects as, so between them a name is as unique as it was.
ALTER TABLE jobline.schedules DROP CONSTRAINT schedules_name_key;
ALTER TABLE jobline.schedules ADD CONSTRAINT schedules_name_username_key UNIQUE (name, username);

-- Existing jobs keep NULL: queued by the operator, run as the worker's own role, as before.
-- (No default on ADD COLUMN: current_user is not a constant, and the table would be rewritten.)
ALTER TABLE jobline.jobs ADD COLUMN username text;
ALTER TABLE jobline.jobs ALTER COLUMN username SET DEFAULT current_user;

-- -- Row-level security ----------------------------------------------------------------------------
-- The owner and superusers bypass policies, so the workers' statements (the claim, completions)
-- are planned and run exactly as before. The operator policies are for roles that have the
-- owner's privileges without being it.

ALTER TABLE jobline.schedules ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedules_operator ON jobline.schedules
  USING ((SELECT jobline.is_operator())) WITH CHECK ((SELECT jobline.is_operator()));
-- A plain role's schedules run SQL, as itself, for no API user.
CREATE POLICY schedules_own ON jobline.schedules
  USING (username = current_user)
  WITH CHECK (username = current_user AND function = 'sql' AND owner IS NULL);
GRANT SELECT, INSERT, UPDATE, DELETE ON jobline.schedules TO PUBLIC;

ALTER TABLE jobline.schedule_runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY schedule_runs_operator ON jobline.schedule_runs
  USING ((SELECT jobline.is_operator())) WITH CHECK ((SELECT jobline.is_operator()));
-- The runs of the schedules the role sees (that subquery is under schedules' policies). Plain
-- roles read runs through jobline.job_run_details; this holds if the operator grants more.
CREATE POLICY schedule_runs_own ON jobline.schedule_runs FOR SELECT
  USING (EXISTS (SELECT FROM jobline.schedules s WHERE s.id = schedule_id));

ALTER TABLE jobline.jobs ENABLE ROW LEVEL SECURITY;
CREATE POLICY jobs_operator ON jobline.jobs
  USING ((SELECT jobline.is_operator())) WITH CHECK ((SELECT jobline.is_operator()));
CREATE POLICY jobs_own_read ON jobline.jobs FOR SELECT USING (username = current_user);
-- A plain role queues SQL commands and HTTP calls that act for itself, in their first state:
-- nothing it writes can look claimed, finished, or another role's.
CREATE POLICY jobs_own_insert ON jobline.jobs FOR INSERT
  WITH CHECK (username = current_user AND function IN ('sql', 'http') AND owner IS NULL AND depends_on IS NULL
              AND status = 'pending' AND attempts = 0 AND deps_remaining = 0 AND worker_id IS NULL
              AND lease_until IS NULL AND started_at IS NULL AND finished_at IS NULL AND result IS NULL
              AND last_error IS NULL AND archived_at IS NULL);
GRANT SELECT, INSERT ON jobline.jobs TO PUBLIC;

-- -- Expressions, as pg_cron takes them --------------------------------------------------------------

-- cron_field_values, as in 0002 (released, so replaced here), except that a step may not exceed
-- the field's largest value, as in pg_cron (`*/60` minutes, `*/5000000000`); cron.py's
-- _check_steps has the same rule.
CREATE OR REPLACE FUNCTION jobline.cron_field_values(term text, field integer) RETURNS integer[]
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  field_name constant text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[field];
  low constant integer := (ARRAY[0, 0, 1, 1, 0])[field];
  high constant integer := (ARRAY[59, 23, 31, 12, 7])[field];
  part text;
  head text;
  tail text;
  step integer;
  items integer[];
  result integer[] := '{}';
BEGIN
  IF term = '*' THEN
    RETURN array(SELECT generate_series(low, high));
  END IF;
  IF position(',' IN term) > 0 THEN
    FOREACH part IN ARRAY string_to_array(term, ',') LOOP
      result := result || jobline.cron_field_values(part, field);
    END LOOP;
    RETURN result;
  END IF;
  IF field = 5 AND position('L' IN term) > 0 THEN
    head := left(term, -1);
    IF head !~ '^[0-9]+$' THEN
      RAISE EXCEPTION 'Bad %', field_name;
    END IF;
    RETURN ARRAY[jobline.cron_value(head, field)];
  END IF;
  IF field = 5 AND position('#' IN term) > 0 THEN
    head := split_part(term, '#', 1);
    tail := substr(term, length(head) + 2);
    IF tail !~ '^[0-9]+$' OR tail::numeric NOT BETWEEN 1 AND 5 THEN
      RAISE EXCEPTION 'Bad %', field_name;
    END IF;
    RETURN ARRAY[jobline.cron_value(head, field)];
  END IF;
  IF position('/' IN term) > 0 THEN
    head := split_part(term, '/', 1);
    tail := substr(term, length(head) + 2);
    IF tail !~ '^[0-9]+$' OR tail::numeric = 0 OR tail::numeric > high THEN
      RAISE EXCEPTION 'Bad %', field_name;
    END IF;
    step := tail::integer;
    items := jobline.cron_field_values(head, field);
    IF items = ARRAY[-1000] OR items = ARRAY[-1001] THEN
      RETURN items;
    END IF;
    IF cardinality(items) = 1 THEN  -- 'n/step' runs from n to the end of the range
      RETURN array(SELECT generate_series(items[1], high, step));
    END IF;
    RETURN array(SELECT v FROM (SELECT v, row_number() OVER (ORDER BY v) AS n
                                  FROM (SELECT DISTINCT unnest(items) AS v) d) o
                  WHERE (o.n - 1) % step = 0 ORDER BY v);
  END IF;
  IF position('-' IN term) > 0 THEN
    head := split_part(term, '-', 1);
    tail := substr(term, length(head) + 2);
    IF jobline.cron_value(tail, field) < jobline.cron_value(head, field) THEN
      RAISE EXCEPTION 'Bad %', field_name;
    END IF;
    RETURN array(SELECT generate_series(jobline.cron_value(head, field), jobline.cron_value(tail, field)));
  END IF;
  IF field = 3 AND term = 'LW' THEN
    RETURN ARRAY[-1001];
  END IF;
  IF field = 3 AND term = 'L' THEN
    RETURN ARRAY[-1000];
  END IF;
  RETURN ARRAY[jobline.cron_value(term, field)];
END $$;

-- cron_is_restart: whether an expression is pg_cron's @restart (or @reboot): once per start of
-- the PostgreSQL server (schedule.plan_restart), never at a time.
CREATE FUNCTION jobline.cron_is_restart(expression text) RETURNS boolean
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT lower(btrim(expression)) IN ('@restart', '@reboot')
$$;

-- check_cron, as in 0002, and also: `@restart` and `@reboot`; `$` as the whole day-of-month
-- field, the last day of the month (as `L`), as pg_cron has it.
CREATE OR REPLACE FUNCTION jobline.check_cron(expression text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  normal text := regexp_replace(btrim(coalesce(expression, '')), '\s+', ' ', 'g');
  fields text[];
  names constant text[] := ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'];
  days integer[];
  months integer[];
  seconds text;
BEGIN
  IF normal = '' THEN
    RAISE EXCEPTION 'the cron expression is empty' USING ERRCODE = '22023';
  END IF;
  IF jobline.cron_is_restart(normal) THEN
    RETURN;
  END IF;
  seconds := substring(normal FROM '(?i)^([0-9]+) seconds?$');
  IF seconds IS NOT NULL THEN
    IF seconds::numeric NOT BETWEEN 1 AND 59 THEN
      RAISE EXCEPTION 'interval %: seconds must be 1 to 59 (use a cron expression for longer periods)',
        quote_literal(expression) USING ERRCODE = '22023';
    END IF;
    RETURN;
  END IF;
  normal := CASE lower(normal)
    WHEN '@yearly' THEN '0 0 1 1 *' WHEN '@annually' THEN '0 0 1 1 *' WHEN '@monthly' THEN '0 0 1 * *'
    WHEN '@weekly' THEN '0 0 * * 0' WHEN '@daily' THEN '0 0 * * *' WHEN '@midnight' THEN '0 0 * * *'
    WHEN '@hourly' THEN '0 * * * *' ELSE upper(normal) END;
  fields := string_to_array(normal, ' ');
  IF cardinality(fields) <> 5 THEN
    RAISE EXCEPTION 'invalid cron expression %: Wrong number of fields: expected 5 fields (minute hour day-of-month month day-of-week), got %',
      quote_literal(expression), cardinality(fields) USING ERRCODE = '22023';
  END IF;
  IF fields[3] = '$' THEN
    fields[3] := 'L';
  END IF;
  FOR i IN 1..5 LOOP
    BEGIN
      IF i = 3 THEN
        days := jobline.cron_field_values(fields[i], i);
      ELSIF i = 4 THEN
        months := jobline.cron_field_values(fields[i], i);
      ELSE
        PERFORM jobline.cron_field_values(fields[i], i);
      END IF;
    EXCEPTION WHEN raise_exception THEN
      RAISE EXCEPTION 'invalid cron expression %: % (% field %)', quote_literal(expression), SQLERRM,
        names[i], quote_literal(fields[i]) USING ERRCODE = '22023';
    END;
  END LOOP;
  -- As cronsim: when both day fields must match, a day past the longest chosen month never comes.
  IF (left(fields[3], 1) = '*' OR left(fields[5], 1) = '*')
     AND (SELECT min(d) FROM unnest(days) d) > 29
     AND (SELECT min(d) FROM unnest(days) d) > (SELECT max((ARRAY[31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31])[m])
                                                 FROM unnest(months) m) THEN
    RAISE EXCEPTION 'invalid cron expression %: Bad day-of-month (day-of-month field %)',
      quote_literal(expression), quote_literal(fields[3]) USING ERRCODE = '22023';
  END IF;
END $$;

-- check_schedule: check_cron with pg_cron's words, `invalid schedule: <expression>` and its hint
-- (SQLSTATE 22023), and jobline's reason in the DETAIL.
CREATE FUNCTION jobline.check_schedule(schedule text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  PERFORM jobline.check_cron(schedule);
EXCEPTION WHEN invalid_parameter_value THEN
  RAISE EXCEPTION 'invalid schedule: %', schedule
    USING ERRCODE = '22023', DETAIL = SQLERRM,
          HINT = 'Use cron format (e.g. 5 4 * * *), or interval format ''[1-59] seconds''';
END $$;

-- -- Enqueue for a role ------------------------------------------------------------------------------

-- enqueue, as in 0001, with one more argument: `username`, the role the job acts for (default
-- the caller). Only the operator may name another role (a scheduler does, for each tick), or
-- queue anything but `sql` and `http`, with an owner or with dependencies: a plain role's job is
-- its own, and the policy on jobline.jobs holds the same rule for direct INSERTs.
DROP FUNCTION jobline.enqueue(text, jsonb, timestamptz, text, integer, text, integer, bigint[], text);
CREATE FUNCTION jobline.enqueue(
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

  INSERT INTO jobline.jobs AS j (function, payload, run_at, queue, priority, owner, max_attempts,
                                 depends_on, deps_remaining, unique_key, status, finished_at, last_error,
                                 username)
  VALUES (enqueue.function_name, enqueue.payload, coalesce(enqueue.run_at, now()), enqueue.queue,
          enqueue.priority, enqueue.owner, enqueue.max_attempts,
          enqueue.depends_on, remaining, enqueue.unique_key, new_status,
          CASE WHEN new_status = 'cancelled' THEN now() END,
          CASE WHEN new_status = 'cancelled' THEN 'a job it depends on failed or was cancelled' END,
          acting)
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

-- fire_schedule, as in 0002, except that each tick's job acts for the schedule's role, and an
-- @restart schedule's tick is the server's start (the scheduler plans it: schedule.plan_restart).
CREATE OR REPLACE FUNCTION jobline.fire_schedule(target bigint, seen_next timestamptz, seen_changed timestamptz,
                                                 ticks timestamptz[], missed_at timestamptz, missed_note text,
                                                 next_tick timestamptz)
RETURNS TABLE (tick_at timestamptz, status text, job_id bigint)
LANGUAGE plpgsql AS $$
DECLARE
  s jobline.schedules;
  live_id bigint;
  live_status text;
  tick timestamptz;
  run_id bigint;
  previous bigint;
BEGIN
  UPDATE jobline.schedules sc SET next_run_at = next_tick
   WHERE sc.id = target AND sc.active
     AND sc.next_run_at IS NOT DISTINCT FROM seen_next AND sc.changed_at = seen_changed
  RETURNING sc.* INTO s;
  IF NOT FOUND THEN
    RETURN;  -- another scheduler fired it, or it was changed or paused meanwhile
  END IF;

  IF missed_at IS NOT NULL THEN
    INSERT INTO jobline.schedule_runs AS r (schedule_id, tick_at, status, message)
    VALUES (target, missed_at, 'missed', missed_note)
    ON CONFLICT DO NOTHING;
    tick_at := missed_at; status := 'missed'; job_id := NULL;
    RETURN NEXT;
  END IF;

  IF s.overlap = 'skip' AND cardinality(ticks) > 0 THEN
    -- Only the latest runs can be live: a schedule that does not overlap starts one at a time.
    SELECT j.id, j.status INTO live_id, live_status
      FROM (SELECT r.job_id FROM jobline.schedule_runs r
             WHERE r.schedule_id = target AND r.job_id IS NOT NULL
             ORDER BY r.id DESC LIMIT 10) recent
      JOIN jobline.jobs j ON j.id = recent.job_id
     WHERE j.status IN ('waiting', 'pending', 'running')
     ORDER BY j.id LIMIT 1;
  END IF;

  FOREACH tick IN ARRAY ticks LOOP
    IF live_id IS NOT NULL THEN
      INSERT INTO jobline.schedule_runs AS r (schedule_id, tick_at, status, message)
      VALUES (target, tick, 'skipped', format('job %s of an earlier run was still %s (overlap: skip)', live_id, live_status))
      ON CONFLICT DO NOTHING;
      tick_at := tick; status := 'skipped'; job_id := NULL;
      RETURN NEXT;
      CONTINUE;
    END IF;
    INSERT INTO jobline.schedule_runs AS r (schedule_id, tick_at, status) VALUES (target, tick, 'created')
    ON CONFLICT DO NOTHING
    RETURNING r.id INTO run_id;
    CONTINUE WHEN run_id IS NULL;  -- the tick already has its run
    job_id := jobline.enqueue(s.function, s.payload, tick, s.queue, s.priority, s.owner, s.max_attempts,
                              CASE WHEN s.overlap = 'skip' AND previous IS NOT NULL THEN ARRAY[previous] END,
                              username => s.username);
    UPDATE jobline.schedule_runs r SET job_id = fire_schedule.job_id WHERE r.id = run_id;
    previous := job_id;
    tick_at := tick; status := 'created';
    RETURN NEXT;
  END LOOP;
END $$;

-- trigger_schedule, as in 0002, the job acting for the schedule's role.
CREATE OR REPLACE FUNCTION jobline.trigger_schedule(target bigint) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  s jobline.schedules;
  run_id bigint;
  new_job bigint;
BEGIN
  SELECT * INTO s FROM jobline.schedules WHERE id = target;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'no schedule with id %', target USING ERRCODE = 'P0002';
  END IF;
  INSERT INTO jobline.schedule_runs (schedule_id, status) VALUES (target, 'triggered') RETURNING id INTO run_id;
  new_job := jobline.enqueue(s.function, s.payload, now(), s.queue, s.priority, s.owner, s.max_attempts,
                             username => s.username);
  UPDATE jobline.schedule_runs SET job_id = new_job WHERE id = run_id;
  RETURN new_job;
END $$;

-- -- pg_cron's functions -------------------------------------------------------------------------------

-- check_job_target: pg_cron's checks on where and as whom a job runs, with its messages: `role`
-- exists, `database` exists, and the role (default the caller) may connect to it.
CREATE FUNCTION jobline.check_job_target(role text, database text) RETURNS void
LANGUAGE plpgsql STABLE AS $$
BEGIN
  IF role IS NOT NULL AND NOT EXISTS (SELECT FROM pg_catalog.pg_roles r WHERE r.rolname = role) THEN
    RAISE EXCEPTION 'role "%" does not exist', role USING ERRCODE = '42704';
  END IF;
  IF database IS NOT NULL THEN
    IF NOT EXISTS (SELECT FROM pg_catalog.pg_database d WHERE d.datname = database) THEN
      RAISE EXCEPTION 'database "%" does not exist', database USING ERRCODE = '3D000';
    END IF;
    IF NOT has_database_privilege(coalesce(role, current_user), database, 'CONNECT') THEN
      RAISE EXCEPTION 'User % does not have CONNECT privilege on %', coalesce(role, current_user), database
        USING ERRCODE = '42501';
    END IF;
  END IF;
END $$;

-- sql_payload: the `sql` function's payload for a command run in `database` (kept only when it
-- is not jobline's own).
CREATE FUNCTION jobline.sql_payload(command text, database text) RETURNS jsonb
LANGUAGE sql STABLE AS $$
  SELECT jsonb_build_object('command', command)
      || CASE WHEN database IS NULL OR database = current_database() THEN '{}'::jsonb
              ELSE jsonb_build_object('database', database) END
$$;

-- schedule(job_name, schedule, command): create, or replace the expression and command of, the
-- caller's schedule of that name (pg_cron's semantics; another role's of the same name is
-- another job); returns its id. The expression is stored as written.
CREATE OR REPLACE FUNCTION jobline.schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  id bigint;
BEGIN
  IF NOT jobline.is_valid_name(job_name, 200) THEN
    RAISE EXCEPTION 'jobline.schedule: job_name % is not a valid name', quote_nullable(job_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  PERFORM jobline.check_schedule(schedule);
  PERFORM jobline.check_command(command, 'jobline.schedule');
  INSERT INTO jobline.schedules AS s (name, expression, function, payload)
  VALUES (job_name, schedule, 'sql', jsonb_build_object('command', command))
  ON CONFLICT (name, username) DO UPDATE
    SET expression = excluded.expression, function = 'sql', payload = excluded.payload,
        source = 'runtime', next_run_at = NULL, changed_at = now()
  RETURNING s.id INTO id;
  RETURN id;
END $$;

-- schedule(schedule, command): pg_cron's nameless form; a new schedule each call.
CREATE OR REPLACE FUNCTION jobline.schedule(schedule text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  id bigint;
BEGIN
  PERFORM jobline.check_schedule(schedule);
  PERFORM jobline.check_command(command, 'jobline.schedule');
  INSERT INTO jobline.schedules (expression, function, payload)
  VALUES (schedule, 'sql', jsonb_build_object('command', command))
  RETURNING schedules.id INTO id;
  RETURN id;
END $$;

-- schedule_in_database: pg_cron's, for the operator (EXECUTE is revoked from PUBLIC below, as
-- pg_cron does; grant it to whom you trust). The command runs in `database` (a worker connects
-- there with jobline's own credentials), as `username` (default the caller). Naming another role
-- takes a superuser or jobline's owner. On a name the role already has, the expression, command
-- and database are replaced, as pg_cron does (not `active`).
CREATE FUNCTION jobline.schedule_in_database(job_name text, schedule text, command text, database text,
                                             username text DEFAULT NULL, active boolean DEFAULT true)
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  id bigint;
  role text := coalesce(schedule_in_database.username, current_user);
BEGIN
  IF NOT jobline.is_valid_name(job_name, 200) THEN
    RAISE EXCEPTION 'jobline.schedule_in_database: job_name % is not a valid name', quote_nullable(job_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  PERFORM jobline.check_schedule(schedule);
  PERFORM jobline.check_command(command, 'jobline.schedule_in_database');
  IF role <> current_user AND NOT jobline.is_operator() THEN
    RAISE EXCEPTION 'must be superuser to create a job for another role' USING ERRCODE = '42501',
      DETAIL = 'Only a superuser or the owner of schema jobline may schedule a command to run as another role.';
  END IF;
  IF database IS NULL THEN
    RAISE EXCEPTION 'jobline.schedule_in_database: database is NULL' USING ERRCODE = '22004';
  END IF;
  PERFORM jobline.check_job_target(role, database);
  INSERT INTO jobline.schedules AS s (name, expression, function, payload, active, username)
  VALUES (job_name, schedule, 'sql', jobline.sql_payload(command, database), coalesce(schedule_in_database.active, true),
          role)
  ON CONFLICT ON CONSTRAINT schedules_name_username_key DO UPDATE
    SET expression = excluded.expression, function = 'sql', payload = excluded.payload,
        source = 'runtime', next_run_at = NULL, changed_at = now()
  RETURNING s.id INTO id;
  RETURN id;
END $$;
REVOKE ALL ON FUNCTION jobline.schedule_in_database(text, text, text, text, text, boolean) FROM PUBLIC;

-- schedule_exists: whether any role has a schedule with this id (as its owner sees the table).
-- unschedule(job_id) tells "not yours" from "no such job", as pg_cron does; it reveals no more
-- than that.
CREATE FUNCTION jobline.schedule_exists(job_id bigint) RETURNS boolean
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
  SELECT EXISTS (SELECT FROM jobline.schedules s WHERE s.id OPERATOR(pg_catalog.=) job_id)
$$;

-- unschedule(job_name): the caller's own schedule of that name, as in pg_cron (even for the
-- operator, who reaches others' by id).
CREATE OR REPLACE FUNCTION jobline.unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM jobline.schedules WHERE name = job_name AND username = current_user;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'could not find valid entry for job ''%''', job_name USING ERRCODE = 'P0002';
  END IF;
  RETURN true;
END $$;

-- unschedule(job_id): one of the caller's (the operator: anyone's); another role's is refused as
-- pg_cron refuses it, with SQLSTATE 42501.
CREATE OR REPLACE FUNCTION jobline.unschedule(job_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM jobline.schedules WHERE id = job_id;
  IF NOT FOUND THEN
    IF jobline.schedule_exists(job_id) THEN
      RAISE EXCEPTION 'permission denied for table job' USING ERRCODE = '42501',
        DETAIL = format('Job %s belongs to another role; only that role, a superuser or the owner of schema jobline may unschedule it.', job_id);
    END IF;
    RAISE EXCEPTION 'could not find valid entry for job %', job_id USING ERRCODE = 'P0002';
  END IF;
  RETURN true;
END $$;

-- alter_job: pg_cron's, with its checks in its order: a new `username` takes a superuser (or
-- jobline's owner) and must exist; a new `database` must exist and let the job's role connect
-- (the command then runs there); an expression is checked; nothing to change is refused; a job
-- the caller cannot see is one that "does not exist or you don't own it". Resuming does not
-- catch up on the ticks of the pause.
CREATE OR REPLACE FUNCTION jobline.alter_job(job_id bigint, schedule text DEFAULT NULL, command text DEFAULT NULL,
                                  database text DEFAULT NULL, username text DEFAULT NULL,
                                  active boolean DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  s jobline.schedules;
  new_command text;
  new_database text;
BEGIN
  IF alter_job.username IS NOT NULL THEN
    IF NOT jobline.is_operator() THEN
      RAISE EXCEPTION 'must be superuser to alter username' USING ERRCODE = '42501',
        DETAIL = 'Only a superuser or the owner of schema jobline may make a job run as another role.';
    END IF;
    PERFORM jobline.check_job_target(alter_job.username, NULL);
  END IF;
  IF alter_job.database IS NOT NULL THEN
    PERFORM jobline.check_job_target(NULL, alter_job.database);  -- exists; CONNECT is checked below
  END IF;
  IF alter_job.schedule IS NOT NULL THEN
    PERFORM jobline.check_schedule(alter_job.schedule);
  END IF;
  IF alter_job.command IS NOT NULL THEN
    PERFORM jobline.check_command(alter_job.command, 'jobline.alter_job');
  END IF;
  IF num_nonnulls(alter_job.schedule, alter_job.command, alter_job.database, alter_job.username,
                  alter_job.active) = 0 THEN
    RAISE EXCEPTION 'no updates specified' USING ERRCODE = '22023',
      HINT = 'You must specify at least one job attribute to change when calling alter_job';
  END IF;

  SELECT * INTO s FROM jobline.schedules sc WHERE sc.id = alter_job.job_id FOR UPDATE;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Job % does not exist or you don''t own it', alter_job.job_id USING ERRCODE = 'P0002';
  END IF;
  IF alter_job.database IS NOT NULL THEN
    IF alter_job.command IS NULL AND s.function <> 'sql' THEN
      RAISE EXCEPTION 'jobline.alter_job: job % runs the function %, not a SQL command; only a SQL command runs in another database',
        alter_job.job_id, quote_literal(s.function) USING ERRCODE = '22023';
    END IF;
    PERFORM jobline.check_job_target(coalesce(alter_job.username, s.username), alter_job.database);
  END IF;
  new_command := coalesce(alter_job.command, CASE WHEN s.function = 'sql' THEN s.payload->>'command' END);
  new_database := coalesce(alter_job.database, CASE WHEN s.function = 'sql' THEN s.payload->>'database' END);

  UPDATE jobline.schedules sc
     SET expression = coalesce(alter_job.schedule, sc.expression),
         function = CASE WHEN new_command IS NULL THEN sc.function ELSE 'sql' END,
         payload = CASE WHEN new_command IS NULL THEN sc.payload ELSE jobline.sql_payload(new_command, new_database) END,
         username = coalesce(alter_job.username, sc.username),
         active = coalesce(alter_job.active, sc.active),
         source = 'runtime',
         next_run_at = CASE WHEN alter_job.schedule IS NOT NULL OR (alter_job.active AND NOT sc.active) THEN NULL
                            ELSE sc.next_run_at END,
         changed_at = CASE WHEN alter_job.schedule IS NOT NULL OR (alter_job.active AND NOT sc.active) THEN now()
                           ELSE sc.changed_at END
   WHERE sc.id = alter_job.job_id;
END $$;

-- -- Views: each role sees its own, the operator all -------------------------------------------------

-- pg_cron's cron.job, with its columns; `username` is the role the command runs as, `database`
-- where it runs.
CREATE OR REPLACE VIEW jobline.job WITH (security_barrier) AS
SELECT s.id AS jobid, s.expression AS schedule, jobline.schedule_command(s.function, s.payload) AS command,
       'localhost'::text AS nodename, coalesce(inet_server_port(), 5432) AS nodeport,
       coalesce(CASE WHEN s.function = 'sql' THEN s.payload->>'database' END, current_database())::text AS database,
       s.username COLLATE "C" AS username, s.active, s.name AS jobname
  FROM jobline.schedules s
 WHERE s.username = current_user OR (SELECT jobline.is_operator());
GRANT SELECT ON jobline.job TO PUBLIC;

-- pg_cron's cron.job_run_details, as in 0002, each role seeing the runs of its own schedules.
CREATE OR REPLACE VIEW jobline.job_run_details WITH (security_barrier) AS
SELECT r.schedule_id AS jobid, r.id AS runid, NULL::integer AS job_pid,
       coalesce(CASE WHEN s.function = 'sql' THEN s.payload->>'database' END, current_database())::text AS database,
       s.username COLLATE "C" AS username,
       jobline.schedule_command(s.function, s.payload) AS command,
       CASE WHEN r.job_id IS NULL THEN r.status
            WHEN j.status IN ('waiting', 'pending') THEN 'starting'
            WHEN j.status IN ('running', 'succeeded') THEN j.status
            ELSE 'failed' END AS status,
       CASE WHEN r.job_id IS NULL THEN r.message
            WHEN j.status = 'succeeded' THEN coalesce(j.result->>'status', left(j.result::text, 1000))
            ELSE split_part(btrim(j.last_error), E'\n', 1) END AS return_message,
       coalesce(j.started_at, r.created_at) AS start_time,
       CASE WHEN r.job_id IS NULL THEN r.created_at ELSE j.finished_at END AS end_time
  FROM jobline.schedule_runs r
  JOIN jobline.schedules s ON s.id = r.schedule_id
  LEFT JOIN jobline.jobs j ON j.id = r.job_id
 WHERE s.username = current_user OR (SELECT jobline.is_operator());
GRANT SELECT ON jobline.job_run_details TO PUBLIC;

-- _http_response, as in 0009, each role seeing the responses to its own calls.
CREATE OR REPLACE VIEW jobline._http_response WITH (security_barrier) AS
SELECT j.id,
       (r.result->>'status')::integer AS status_code,
       r.result->'headers'->>'content-type' AS content_type,
       (SELECT jsonb_object_agg(coalesce(r.result->'header_names'->>h.key, h.key), h.value)
          FROM jsonb_each(r.result->'headers') h) AS headers,
       nullif(CASE WHEN r.result ? 'text' THEN r.result->>'text'
                   WHEN jsonb_typeof(r.result->'body') = 'string' THEN r.result->>'body'
                   -- results written before 0009 keep no text: their JSON, written again
                   WHEN jsonb_typeof(r.result->'body') <> 'null' THEN (r.result->'body')::text
              END, '') AS content,
       coalesce((r.result->>'timed_out')::boolean, false) AS timed_out,
       CASE WHEN r.result ? 'status' THEN NULL
            ELSE coalesce(r.result->>'error', split_part(btrim(j.last_error), E'\n', 1), j.status) END AS error_msg,
       j.finished_at AS created
  FROM jobline.jobs j
  -- A cancelled call shows why it was cancelled, not a response an earlier attempt got.
  CROSS JOIN LATERAL (SELECT CASE WHEN j.status <> 'cancelled' THEN j.result END AS result) r
 WHERE j.function = 'http' AND j.status IN ('succeeded', 'failed', 'cancelled')
   AND (j.username = current_user OR (SELECT jobline.is_operator()));
GRANT SELECT ON jobline._http_response TO PUBLIC;

-- scheduled_tasks, as in 0001: the operator's view of every job (no grant to PUBLIC), filtered
-- like the others in case one is given.
CREATE OR REPLACE VIEW jobline.scheduled_tasks WITH (security_barrier) AS
SELECT id,
       function AS function_name,
       run_at AS scheduled_time,
       CASE WHEN status IN ('waiting', 'pending', 'running') THEN 'pending'
            WHEN status = 'succeeded' THEN 'completed'
            ELSE 'failed' END AS status
  FROM jobline.jobs
 WHERE username = current_user OR (SELECT jobline.is_operator());

-- What only workers and schedulers call: not for plain roles (who lack the table privileges
-- these need anyway).
REVOKE ALL ON FUNCTION jobline.claim_jobs(text, text[], text[], integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.settle_dependants(bigint[], bigint[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.fire_schedule(bigint, timestamptz, timestamptz, timestamptz[], timestamptz, text,
                                             timestamptz) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.trigger_schedule(bigint) FROM PUBLIC;
