-- 0002_schedules: cron schedules, the ledger of their ticks, and pg_cron's SQL interface.
-- Next ticks are computed in Python (cron.py, cronsim): PostgreSQL cannot, without pg_cron.
-- SQL only validates expressions, so that SQL callers get the same refusals as Python ones.

CREATE TABLE jobline.schedules (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name          text UNIQUE,             -- NULL: pg_cron's nameless form, addressed by id
  expression    text        NOT NULL,    -- as written: cron fields, a macro, or 'N seconds'
  timezone      text        NOT NULL DEFAULT 'UTC',
  -- The target: each tick enqueues this function with this payload (a SQL command is the
  -- built-in `sql` function with {"command": ...}).
  function      text        NOT NULL,
  payload       jsonb       NOT NULL DEFAULT '{}',
  owner         text,
  queue         text        NOT NULL DEFAULT 'default',
  priority      integer     NOT NULL DEFAULT 0 CHECK (priority BETWEEN -1000 AND 1000),
  max_attempts  integer     NOT NULL DEFAULT 3 CHECK (max_attempts BETWEEN 1 AND 1000),
  active        boolean     NOT NULL DEFAULT true,
  -- skip: a tick finds an earlier run still waiting, pending or running, and is recorded as
  -- skipped. allow: runs may overlap.
  overlap       text        NOT NULL DEFAULT 'skip' CHECK (overlap IN ('skip', 'allow')),
  -- After downtime: latest runs the most recent missed tick once; none runs nothing late;
  -- all runs up to catch_up_max of them. What is not run is recorded as missed.
  catch_up      text        NOT NULL DEFAULT 'latest' CHECK (catch_up IN ('latest', 'none', 'all')),
  catch_up_max  integer     NOT NULL DEFAULT 10 CHECK (catch_up_max BETWEEN 1 AND 1000),
  -- code: declared in an App and reconciled when a worker starts; runtime: made by the CLI,
  -- SQL or Python at run time, and never touched by reconciliation.
  source        text        NOT NULL DEFAULT 'runtime' CHECK (source IN ('runtime', 'code')),
  -- The next tick to fire, a UTC instant. NULL after a change: a scheduler computes the first
  -- tick after changed_at. changed_at is also the version a scheduler's write is fenced on.
  next_run_at   timestamptz,
  changed_at    timestamptz NOT NULL DEFAULT now(),
  created_at    timestamptz NOT NULL DEFAULT now()
);

-- The schedulers' scan: what is due, or new.
CREATE INDEX schedules_due_idx ON jobline.schedules (next_run_at NULLS FIRST) WHERE active;

-- One row per tick (and per manual trigger), like pg_cron's job_run_details.
CREATE TABLE jobline.schedule_runs (
  id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  schedule_id  bigint      NOT NULL REFERENCES jobline.schedules (id) ON DELETE CASCADE,
  tick_at      timestamptz,          -- the tick's UTC instant; NULL for a manual trigger
  -- created: the tick's job (see the job for how it went); triggered: a manual run's job;
  -- skipped: an earlier run was still live (overlap = skip); missed: ticks not run after downtime
  status       text        NOT NULL CHECK (status IN ('created', 'triggered', 'skipped', 'missed')),
  job_id       bigint,
  message      text,
  created_at   timestamptz NOT NULL DEFAULT now(),
  -- Exactly one run per schedule and tick, however many schedulers run. A run and its job are
  -- written in one transaction (fire_schedule), so a scheduler killed in between leaves neither.
  UNIQUE (schedule_id, tick_at)
);
CREATE INDEX schedule_runs_recent_idx ON jobline.schedule_runs (schedule_id, id DESC);
CREATE INDEX schedule_runs_job_idx ON jobline.schedule_runs (job_id) WHERE job_id IS NOT NULL;

-- Schedulers LISTEN here; a schedule that is new or changed (next_run_at NULL) wakes them.
CREATE FUNCTION jobline.notify_schedules() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('jobline_schedules', '');
  RETURN NULL;
END $$;

CREATE TRIGGER schedules_notify AFTER INSERT OR UPDATE OF next_run_at, active ON jobline.schedules
  FOR EACH ROW WHEN (NEW.next_run_at IS NULL AND NEW.active) EXECUTE FUNCTION jobline.notify_schedules();

-- cron_field_values: the values one field of a cron expression allows (field 1 minute, 2 hour,
-- 3 day-of-month, 4 month, 5 day-of-week), parsed exactly as cronsim parses it, so that SQL and
-- Python accept the same expressions. L is -1000 and LW -1001 (day-of-month); day-of-week 'nL'
-- and 'n#k' count as weekday n. Raises 'Bad <field>' as cronsim does.
CREATE FUNCTION jobline.cron_field_values(term text, field integer) RETURNS integer[]
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
    IF tail !~ '^[0-9]+$' OR tail::numeric = 0 THEN
      RAISE EXCEPTION 'Bad %', field_name;
    END IF;
    step := least(tail::numeric, 1000)::integer;  -- any step past the range gives one value
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

-- cron_value: one number (or month / weekday name) of a cron field, checked against its range.
CREATE FUNCTION jobline.cron_value(term text, field integer) RETURNS integer
LANGUAGE plpgsql IMMUTABLE AS $$
DECLARE
  field_name constant text := (ARRAY['minute', 'hour', 'day-of-month', 'month', 'day-of-week'])[field];
  named integer;
BEGIN
  IF field = 4 THEN
    named := array_position('{JAN,FEB,MAR,APR,MAY,JUN,JUL,AUG,SEP,OCT,NOV,DEC}'::text[], term);
    IF named IS NOT NULL THEN RETURN named; END IF;
  ELSIF field = 5 THEN
    named := array_position('{SUN,MON,TUE,WED,THU,FRI,SAT}'::text[], term);
    IF named IS NOT NULL THEN RETURN named - 1; END IF;
  END IF;
  IF term !~ '^[0-9]+$' OR term::numeric NOT BETWEEN (ARRAY[0, 0, 1, 1, 0])[field] AND (ARRAY[59, 23, 31, 12, 7])[field] THEN
    RAISE EXCEPTION 'Bad %', field_name;
  END IF;
  RETURN term::integer;
END $$;

-- check_cron: refuse an expression that Python's Cron.parse would refuse, with its message
-- (SQLSTATE 22023). Accepts the five standard fields, the @-macros and pg_cron's 'N seconds'.
CREATE FUNCTION jobline.check_cron(expression text) RETURNS void
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

-- fire_schedule: a scheduler's write for one due schedule, in one transaction. It moves the
-- schedule's next_run_at from `seen_next` to `next_tick`, fenced on what the scheduler read
-- (next_run_at and changed_at): of several schedulers that computed the same plan, only the
-- first changes anything, and the others return no rows. Then it records the ticks that
-- catch-up did not run as one row (at the first of them, with the scheduler's note), and gives each tick in `ticks` its run and its job, or records it as skipped while an
-- earlier run is live (overlap = skip). Catch-up runs of a non-overlapping schedule are chained
-- with depends_on, so they run one after another.
CREATE FUNCTION jobline.fire_schedule(target bigint, seen_next timestamptz, seen_changed timestamptz,
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
                              CASE WHEN s.overlap = 'skip' AND previous IS NOT NULL THEN ARRAY[previous] END);
    UPDATE jobline.schedule_runs r SET job_id = fire_schedule.job_id WHERE r.id = run_id;
    previous := job_id;
    tick_at := tick; status := 'created';
    RETURN NEXT;
  END LOOP;
END $$;

-- trigger_schedule: run a schedule once now, outside its tick ledger (tick_at NULL), recorded
-- like any other run. Returns the job's id.
CREATE FUNCTION jobline.trigger_schedule(target bigint) RETURNS bigint
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
  new_job := jobline.enqueue(s.function, s.payload, now(), s.queue, s.priority, s.owner, s.max_attempts);
  UPDATE jobline.schedule_runs SET job_id = new_job WHERE id = run_id;
  RETURN new_job;
END $$;

-- pg_cron's interface. Commands are SQL, run by a worker as the built-in `sql` function, in UTC.

-- check_command: refuse a command a tick could not enqueue (empty, or a payload over 1 MiB,
-- jobline.enqueue's limit), now rather than at every tick.
CREATE FUNCTION jobline.check_command(command text, caller text) RETURNS void
LANGUAGE plpgsql IMMUTABLE AS $$
BEGIN
  IF command IS NULL OR btrim(command) = '' THEN
    RAISE EXCEPTION '%: command is empty', caller USING ERRCODE = '22023';
  END IF;
  IF octet_length(jsonb_build_object('command', command)::text) > 1048576 THEN
    RAISE EXCEPTION '%: command is larger than 1 MiB', caller USING ERRCODE = '22023';
  END IF;
END $$;

-- schedule(job_name, schedule, command): create, or replace the schedule and command of the
-- schedule with that name (pg_cron's semantics); returns its id.
CREATE FUNCTION jobline.schedule(job_name text, schedule text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  id bigint;
BEGIN
  IF NOT jobline.is_valid_name(job_name, 200) THEN
    RAISE EXCEPTION 'jobline.schedule: job_name % is not a valid name', quote_nullable(job_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  PERFORM jobline.check_cron(schedule);
  PERFORM jobline.check_command(command, 'jobline.schedule');
  INSERT INTO jobline.schedules AS s (name, expression, function, payload)
  VALUES (job_name, btrim(schedule), 'sql', jsonb_build_object('command', command))
  ON CONFLICT (name) DO UPDATE
    SET expression = excluded.expression, function = 'sql', payload = excluded.payload,
        source = 'runtime', next_run_at = NULL, changed_at = now()
  RETURNING s.id INTO id;
  RETURN id;
END $$;

-- schedule(schedule, command): pg_cron's nameless form; a new schedule each call.
CREATE FUNCTION jobline.schedule(schedule text, command text) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
  id bigint;
BEGIN
  PERFORM jobline.check_cron(schedule);
  PERFORM jobline.check_command(command, 'jobline.schedule');
  INSERT INTO jobline.schedules (expression, function, payload)
  VALUES (btrim(schedule), 'sql', jsonb_build_object('command', command))
  RETURNING schedules.id INTO id;
  RETURN id;
END $$;

CREATE FUNCTION jobline.unschedule(job_name text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM jobline.schedules WHERE name = job_name;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'could not find valid entry for job ''%''', job_name USING ERRCODE = 'P0002';
  END IF;
  RETURN true;
END $$;

CREATE FUNCTION jobline.unschedule(job_id bigint) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
  DELETE FROM jobline.schedules WHERE id = job_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'could not find valid entry for job %', job_id USING ERRCODE = 'P0002';
  END IF;
  RETURN true;
END $$;

-- alter_job: pg_cron's signature. jobline runs commands in its own database as its own user, so
-- another database or username is refused rather than ignored. Resuming does not catch up on
-- the ticks of the pause.
CREATE FUNCTION jobline.alter_job(job_id bigint, schedule text DEFAULT NULL, command text DEFAULT NULL,
                                  database text DEFAULT NULL, username text DEFAULT NULL,
                                  active boolean DEFAULT NULL) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
  IF database IS NOT NULL AND database <> current_database() THEN
    RAISE EXCEPTION 'jobline.alter_job: commands run in database %, not %', current_database(), database
      USING ERRCODE = '22023';
  END IF;
  IF username IS NOT NULL AND username <> current_user THEN
    RAISE EXCEPTION 'jobline.alter_job: commands run as %, not %', current_user, username USING ERRCODE = '22023';
  END IF;
  IF schedule IS NOT NULL THEN
    PERFORM jobline.check_cron(schedule);
  END IF;
  IF command IS NOT NULL THEN
    PERFORM jobline.check_command(command, 'jobline.alter_job');
  END IF;
  UPDATE jobline.schedules s
     SET expression = coalesce(btrim(alter_job.schedule), s.expression),
         function = CASE WHEN alter_job.command IS NULL THEN s.function ELSE 'sql' END,
         payload = CASE WHEN alter_job.command IS NULL THEN s.payload
                        ELSE jsonb_build_object('command', alter_job.command) END,
         active = coalesce(alter_job.active, s.active),
         source = 'runtime',
         next_run_at = CASE WHEN alter_job.schedule IS NOT NULL OR (alter_job.active AND NOT s.active) THEN NULL
                            ELSE s.next_run_at END,
         changed_at = CASE WHEN alter_job.schedule IS NOT NULL OR (alter_job.active AND NOT s.active) THEN now()
                           ELSE s.changed_at END
   WHERE s.id = alter_job.job_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'could not find valid entry for job %', job_id USING ERRCODE = 'P0002';
  END IF;
END $$;

-- The command a schedule runs, as SQL: the `sql` built-in's command itself, or the enqueue
-- that a tick performs.
CREATE FUNCTION jobline.schedule_command(function text, payload jsonb) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
  SELECT CASE WHEN function = 'sql' AND payload ? 'command' THEN payload->>'command'
              ELSE format('SELECT jobline.enqueue(%L, %L)', function, payload) END
$$;

-- pg_cron's cron.job, with its columns.
CREATE VIEW jobline.job AS
SELECT s.id AS jobid, s.expression AS schedule, jobline.schedule_command(s.function, s.payload) AS command,
       'localhost'::text AS nodename, coalesce(inet_server_port(), 5432) AS nodeport,
       current_database()::text AS database, current_user::text AS username, s.active, s.name AS jobname
  FROM jobline.schedules s;

-- pg_cron's cron.job_run_details, with its columns. A run's status follows its job: starting
-- (waiting or pending), running, succeeded or failed (failed or cancelled); ticks that did not
-- run are skipped or missed. return_message is the SQL command's status, the result, or the
-- first line of the error.
CREATE VIEW jobline.job_run_details AS
SELECT r.schedule_id AS jobid, r.id AS runid, NULL::integer AS job_pid,
       current_database()::text AS database, current_user::text AS username,
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
  LEFT JOIN jobline.jobs j ON j.id = r.job_id;
