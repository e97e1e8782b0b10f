-- 0020_notifications: events (a job failed for good, a schedule deactivated itself, a function
-- keeps failing, a pipeline run finished), their record, webhook subscriptions delivered by the
-- durable `http` function, and schedules that pause themselves after N failed runs in a row.
--
-- One entry point records an event and fans it out: jobline.record_event(kind, owner, subject,
-- data). The database raises job.failed, schedule.deactivated and function.failing itself, from
-- one row trigger on jobline.jobs that every path to `failed` goes through (a worker's batch
-- completion, the rescue of an expired lease, a remote task's fail, a timeout); the pipelines
-- feature raises pipeline.succeeded and pipeline.failed by calling record_event.
--
-- Cost: the trigger's WHEN clause is all a job that succeeds pays. A final failure pays one
-- subtransaction (so that nothing here can make a completion fail), an insert per event and per
-- matching subscription, and two index probes.
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

-- event_kinds: the kinds of event there are. notifications.py (EVENT_KINDS) has the same list;
-- tests/db/test_notification_sql.py checks that they agree.
CREATE FUNCTION jobline.event_kinds() RETURNS text[]
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT ARRAY['job.failed', 'schedule.deactivated', 'function.failing', 'pipeline.succeeded', 'pipeline.failed']
$$;

-- The record of events: what a user reads of their own (owner), operators of all. owner NULL:
-- an event for operators only (function.failing; a schedule or job of no user).
CREATE TABLE jobline.notifications (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  kind        text        NOT NULL,
  owner       text,
  subject     text,       -- what it is about, as text: 'job 42', a schedule's name, a function
  data        jsonb       NOT NULL DEFAULT '{}',
  created_at  timestamptz NOT NULL DEFAULT now()
);
-- A user's listing, newest first (the service's walks the primary key).
CREATE INDEX notifications_owner_idx ON jobline.notifications (owner, id DESC) WHERE owner IS NOT NULL;
-- "Is this function's alert already raised in the window?" (function.failing).
CREATE INDEX notifications_subject_idx ON jobline.notifications (kind, subject, created_at);
-- Retention (notification_prune).
CREATE INDEX notifications_created_idx ON jobline.notifications (created_at);

-- Webhook subscriptions. owner NULL: the operator's, which receives every event; otherwise a
-- user's, which receives that user's events. events NULL: every kind. The URL and headers may
-- hold secret references: {{secret:NAME}} in the operator's, {{owner_secret:NAME}} in a user's
-- (operations/notifications.py checks them; record_event never delivers a user's subscription
-- that names an operator's secret, should one be written past that check).
CREATE TABLE jobline.notification_subscriptions (
  id          bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  owner       text        CHECK (owner IS NULL OR jobline.is_valid_name(owner, 200)),
  url         text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
  events      text[]      CHECK (events IS NULL OR (cardinality(events) > 0 AND events <@ jobline.event_kinds())),
  headers     jsonb       NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(headers) = 'object'),
  created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX notification_subscriptions_owner_idx ON jobline.notification_subscriptions (owner);

-- function.failing's threshold: `failures` final failures of one function within `window_seconds`.
-- One row, written by the processes that run maintenance from JOBLINE_ALERT_FAILURES and
-- JOBLINE_ALERT_WINDOW (alert_setting_update); these defaults are Settings' too.
CREATE TABLE jobline.alert_settings (
  id              boolean PRIMARY KEY DEFAULT true CHECK (id),
  failures        integer NOT NULL DEFAULT 5 CHECK (failures BETWEEN 1 AND 100000),
  window_seconds  double precision NOT NULL DEFAULT 600 CHECK (window_seconds BETWEEN 1 AND 2592000)
);
INSERT INTO jobline.alert_settings DEFAULT VALUES;

-- A function's recent final failures, counted when one more happens (function.failing). Partial:
-- only failed rows are in it, so a job that succeeds never touches it.
CREATE INDEX jobs_failed_function_idx ON jobline.jobs (function, finished_at) WHERE status = 'failed';

-- record_event: record an event and queue its delivery to each matching subscription, as one
-- durable `http` job each (retries, backoff and the egress policy of the built-in), in the
-- caller's transaction. Returns the event's id.
-- - kind: one of jobline.event_kinds(); owner: the user it concerns (NULL: operators only);
--   subject: what it is about (at most 500 characters); data: a JSON object of at most 64 KiB.
-- - A delivery POSTs {"id", "kind", "owner", "subject", "data", "created_at"} with the header
--   Idempotency-Key: jobline-notification-<event id>-<subscription id>, the same on every
--   attempt; the job's unique_key is that key too, so no event is queued twice to one receiver.
-- - The body is sent as written, never searched for secret references (`literal_body`): event
--   data holds text users wrote (a job's error), which must not pull in a secret.
-- - A user's delivery is that user's job (owner), so {{owner_secret:NAME}} is theirs; the
--   operator's has no owner.
-- - Deliveries do not raise job.failed when they fail (on_job_failed): a dead receiver would
--   otherwise feed itself events.
CREATE FUNCTION jobline.record_event(kind text, owner text, subject text, data jsonb DEFAULT '{}')
RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
  event_id bigint;
  event_at timestamptz;
BEGIN
  IF kind IS NULL OR NOT kind = ANY(jobline.event_kinds()) THEN
    RAISE EXCEPTION 'jobline.record_event: unknown event kind %; known: %', quote_nullable(kind),
      array_to_string(jobline.event_kinds(), ', ') USING ERRCODE = '22023';
  END IF;
  IF owner IS NOT NULL AND NOT jobline.is_valid_name(owner, 200) THEN
    RAISE EXCEPTION 'jobline.record_event: owner % is not a valid name', quote_literal(owner) USING ERRCODE = '22023';
  END IF;
  IF subject IS NOT NULL AND (length(subject) > 500 OR subject ~ '[[:cntrl:]]') THEN
    RAISE EXCEPTION 'jobline.record_event: subject must be at most 500 characters without control characters'
      USING ERRCODE = '22023';
  END IF;
  IF data IS NULL OR jsonb_typeof(data) <> 'object' THEN
    RAISE EXCEPTION 'jobline.record_event: data must be a JSON object' USING ERRCODE = '22023';
  END IF;
  IF octet_length(data::text) > 65536 THEN
    RAISE EXCEPTION 'jobline.record_event: data is larger than 64 KiB' USING ERRCODE = '22023';
  END IF;

  INSERT INTO jobline.notifications AS n (kind, owner, subject, data)
  VALUES (record_event.kind, record_event.owner, record_event.subject, record_event.data)
  RETURNING n.id, n.created_at INTO event_id, event_at;

  INSERT INTO jobline.jobs (function, payload, owner, max_attempts, unique_key)
  SELECT 'http',
         jsonb_build_object('url', s.url, 'method', 'POST', 'headers', s.headers, 'timeout_ms', 10000,
                            'idempotency_key', k.key, 'literal_body', true,
                            'body', jsonb_build_object('id', event_id, 'kind', record_event.kind,
                                                       'owner', record_event.owner, 'subject', record_event.subject,
                                                       'data', record_event.data, 'created_at', event_at)),
         s.owner, 5, k.key
    FROM jobline.notification_subscriptions s
   CROSS JOIN LATERAL (SELECT format('jobline-notification-%s-%s', event_id, s.id) AS key) k
   WHERE (s.owner IS NULL OR s.owner = record_event.owner)
     AND (s.events IS NULL OR record_event.kind = ANY(s.events))
     -- The secrets rule (DESIGN section 4): an operator's secret only where the operator wrote it.
     AND (s.owner IS NULL OR strpos(s.url || s.headers::text, '{{secret:') = 0)
  ON CONFLICT DO NOTHING;
  RETURN event_id;
END $$;
-- The operator's (workers, schedulers, the pipelines feature), not a plain role's.
REVOKE ALL ON FUNCTION jobline.record_event(text, text, text, jsonb) FROM PUBLIC;

-- -- Deactivation: a schedule pauses itself after N failed runs in a row --------------------------

-- max_consecutive_failures: NULL never. deactivated_at / deactivated_reason: when and why it
-- paused itself (cleared when it is resumed). failures_counted_since: runs before it (its last
-- resume) do not count, so a resumed schedule gets N runs again.
ALTER TABLE jobline.schedules
  ADD COLUMN max_consecutive_failures integer CHECK (max_consecutive_failures BETWEEN 1 AND 1000),
  ADD COLUMN deactivated_at timestamptz,
  ADD COLUMN deactivated_reason text,
  ADD COLUMN failures_counted_since timestamptz;

-- Resuming, by any path (jobline cron resume, the API, alter_job(active := true), a replace),
-- clears the reason and starts the count again.
CREATE FUNCTION jobline.schedule_resumed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  NEW.deactivated_at := NULL;
  NEW.deactivated_reason := NULL;
  NEW.failures_counted_since := now();
  RETURN NEW;
END $$;

CREATE TRIGGER schedules_resumed BEFORE UPDATE OF active ON jobline.schedules
  FOR EACH ROW WHEN (NEW.active AND NOT OLD.active) EXECUTE FUNCTION jobline.schedule_resumed();

-- count_schedule_failure: job `job_id` failed for good; if it is the job of a schedule's run (or
-- a job that such a job's SQL command queued: `parent`, 0012), and that schedule has a
-- max_consecutive_failures of N, deactivate it when its N latest finished runs (since its last
-- resume) all failed, and raise schedule.deactivated to its owner. A run's outcome is
-- jobline.job_outcome's (a run whose command queued an HTTP call that failed, failed); runs that
-- were cancelled or are not finished are passed over. Retries exhausted, timeouts and lost
-- leases all end a job `failed`, so all count.
CREATE FUNCTION jobline.count_schedule_failure(job_id bigint, parent bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
  run_schedule bigint;
  s jobline.schedules;
  failed integer;
  finished integer;
  local_name text;
BEGIN
  SELECT r.schedule_id INTO run_schedule FROM jobline.schedule_runs r
   WHERE r.job_id = count_schedule_failure.job_id OR (parent IS NOT NULL AND r.job_id = parent)
   LIMIT 1;
  IF run_schedule IS NULL THEN
    RETURN;
  END IF;
  SELECT * INTO s FROM jobline.schedules sc
   WHERE sc.id = run_schedule AND sc.active AND sc.max_consecutive_failures IS NOT NULL;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  SELECT count(*) FILTER (WHERE latest.status = 'failed'), count(*) INTO failed, finished
    FROM (SELECT o.status FROM jobline.schedule_runs r
            JOIN jobline.jobs j ON j.id = r.job_id
           CROSS JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o
           WHERE r.schedule_id = s.id AND o.status IN ('succeeded', 'failed')
             AND r.created_at >= coalesce(s.failures_counted_since, '-infinity')
           ORDER BY r.id DESC
           LIMIT s.max_consecutive_failures) latest;
  IF finished < s.max_consecutive_failures OR failed < finished THEN
    RETURN;
  END IF;
  -- WHERE active: of two failures finishing at once, one deactivates it and raises the event.
  UPDATE jobline.schedules sc
     SET active = false, deactivated_at = now(),
         deactivated_reason = format('%s runs in a row failed (max_consecutive_failures %s); the last, job %s: %s',
                                     failed, s.max_consecutive_failures, coalesce(parent, job_id),
                                     coalesce(left(split_part(btrim((SELECT j.last_error FROM jobline.jobs j
                                                                     WHERE j.id = count_schedule_failure.job_id)),
                                                              E'\n', 1), 300), 'no error recorded'))
   WHERE sc.id = s.id AND sc.active
  RETURNING sc.* INTO s;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  -- A user sees their own schedule's name without its '<owner>/' prefix (schedule.name_seen_by).
  local_name := CASE WHEN s.owner IS NOT NULL AND left(s.name, length(s.owner) + 1) = s.owner || '/'
                          AND strpos(substr(s.name, length(s.owner) + 2), '/') = 0
                     THEN substr(s.name, length(s.owner) + 2) ELSE s.name END;
  PERFORM jobline.record_event('schedule.deactivated', s.owner, coalesce(local_name, '#' || s.id),
                               jsonb_build_object('schedule_id', s.id, 'name', local_name,
                                                  'reason', s.deactivated_reason, 'failures', failed,
                                                  'job_id', coalesce(parent, job_id),
                                                  'deactivated_at', s.deactivated_at));
END $$;
REVOKE ALL ON FUNCTION jobline.count_schedule_failure(bigint, bigint) FROM PUBLIC;

-- on_job_failed: a job failed for good. Raises job.failed to its owner (and operators),
-- deactivates its schedule when due (above), and raises function.failing to operators when its function
-- reached the threshold of alert_settings within the window, unless that alert is already raised
-- in the window. pg_try_advisory_xact_lock: of two transactions that reach the threshold at once,
-- one raises it and the other passes (no wait, no deadlock between batches).
-- Everything is in one exception block: whatever goes wrong here (a subscription written past
-- the checks, a full disk of notifications) is a warning in the server log, never a failed
-- completion, so a worker's batch is always recorded.
CREATE FUNCTION jobline.on_job_failed() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  threshold jobline.alert_settings;
  recent integer;
  error_text text;
BEGIN
  IF NEW.function = 'http' AND NEW.unique_key LIKE 'jobline-notification-%' THEN
    RETURN NULL;  -- a delivery: its failure is its own record (see record_event)
  END IF;
  BEGIN
    error_text := left(NEW.last_error, 2000);
    PERFORM jobline.record_event('job.failed', NEW.owner, 'job ' || NEW.id,
                                 jsonb_build_object('job_id', NEW.id, 'function', NEW.function, 'queue', NEW.queue,
                                                    'attempts', NEW.attempts, 'max_attempts', NEW.max_attempts,
                                                    'error', error_text, 'finished_at', NEW.finished_at));
    PERFORM jobline.count_schedule_failure(NEW.id, NEW.parent_id);
    SELECT * INTO threshold FROM jobline.alert_settings;
    SELECT count(*) INTO recent
      FROM (SELECT FROM jobline.jobs j
             WHERE j.function = NEW.function AND j.status = 'failed'
               AND j.finished_at > now() - make_interval(secs => threshold.window_seconds)
               AND NOT (j.function = 'http' AND coalesce(j.unique_key LIKE 'jobline-notification-%', false))
             LIMIT threshold.failures) f;
    IF recent >= threshold.failures
       AND pg_try_advisory_xact_lock(hashtextextended('jobline.function.failing:' || NEW.function, 0))
       AND NOT EXISTS (SELECT FROM jobline.notifications n
                        WHERE n.kind = 'function.failing' AND n.subject = NEW.function
                          AND n.created_at > now() - make_interval(secs => threshold.window_seconds)) THEN
      PERFORM jobline.record_event('function.failing', NULL, NEW.function,
                                   jsonb_build_object('function', NEW.function, 'failures', recent,
                                                      'window_seconds', threshold.window_seconds,
                                                      'last_job_id', NEW.id, 'last_error', error_text));
    END IF;
  EXCEPTION WHEN OTHERS THEN
    RAISE WARNING 'jobline: the notifications of job % were not recorded: %', NEW.id, SQLERRM;
  END;
  RETURN NULL;
END $$;
REVOKE ALL ON FUNCTION jobline.on_job_failed() FROM PUBLIC;

-- Only the WHEN test runs for a job that does not fail (the hot path of succeeding jobs).
CREATE TRIGGER jobs_failed AFTER UPDATE OF status ON jobline.jobs
  FOR EACH ROW WHEN (NEW.status = 'failed' AND OLD.status IS DISTINCT FROM 'failed')
  EXECUTE FUNCTION jobline.on_job_failed();

-- set_max_consecutive_failures: SQL's way to set it (pg_cron's alter_job keeps pg_cron's
-- signature, which scripts name in GRANT and REVOKE): pause schedule `job_id` after that many
-- failed runs in a row, 1 to 1000; NULL: never. Runs as its caller, so the policies on
-- jobline.schedules hold: a plain role reaches only its own schedules, as with alter_job.
CREATE FUNCTION jobline.set_max_consecutive_failures(job_id bigint, max_consecutive_failures integer)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
  IF set_max_consecutive_failures.max_consecutive_failures NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'jobline.set_max_consecutive_failures: max_consecutive_failures must be between 1 and 1000, or NULL for never; got %',
      set_max_consecutive_failures.max_consecutive_failures USING ERRCODE = '22023';
  END IF;
  UPDATE jobline.schedules sc SET max_consecutive_failures = set_max_consecutive_failures.max_consecutive_failures
   WHERE sc.id = set_max_consecutive_failures.job_id;
  IF NOT FOUND THEN
    RAISE EXCEPTION 'Job % does not exist or you don''t own it', set_max_consecutive_failures.job_id
      USING ERRCODE = 'P0002';
  END IF;
END $$;
