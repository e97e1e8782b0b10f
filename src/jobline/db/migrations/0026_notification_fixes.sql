-- 0026_notification_fixes: two fixes to 0020.
--
-- A user's webhook delivery is an `http` job the user owns and can read: it now keeps only the
-- status and timing of the answer (`keep_response` false), never its headers or body, so a user
-- cannot read what a host that the operator's egress policy allows answered to a URL they chose.
-- The operator's deliveries keep the whole response.
--
-- A schedule whose command queues jobs counted its run as still running when one of those jobs
-- failed before the command's own outcome was written, and nothing counted it again once it was:
-- the schedule missed its deactivation. The run whose child just failed now counts as failed.

CREATE OR REPLACE FUNCTION jobline.record_event(kind text, owner text, subject text, data jsonb DEFAULT '{}')
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
                            -- A user keeps only the status and timing of what their URL answered.
                            'keep_response', s.owner IS NULL,
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

CREATE OR REPLACE FUNCTION jobline.count_schedule_failure(job_id bigint, parent bigint) RETURNS void
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
    FROM (SELECT runs.status FROM (
            -- The run whose queued job failed just now has failed, even while its own job is still
            -- running (a command's child can fail before the command's outcome is written).
            SELECT r.id, CASE WHEN r.job_id = count_schedule_failure.parent THEN 'failed' ELSE o.status END AS status
              FROM jobline.schedule_runs r
              JOIN jobline.jobs j ON j.id = r.job_id
             CROSS JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o
             WHERE r.schedule_id = s.id
               AND r.created_at >= coalesce(s.failures_counted_since, '-infinity')) runs
           WHERE runs.status IN ('succeeded', 'failed')
           ORDER BY runs.id DESC
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
