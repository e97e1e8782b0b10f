-- job_complete_many: record a batch of attempt outcomes from %(worker_id)s in one statement:
-- the jobs' new state and one jobline.attempts row each, with its error message and traceback
-- (times are the worker's, as Unix seconds, because floats are the cheapest to send).
-- Fenced on (status = 'running', worker_id, attempts): an attempt whose lease expired (and
-- was rescued, or cancelled by a person) matches nothing, so its late report changes nothing.
-- Then settles the dependants of the jobs that reached a final state. settle_dependants runs
-- after `done` is complete (it aggregates it) and, being a volatile function, with fresh
-- snapshots: so it sees a dependant whose enqueue (holding FOR SHARE on the dependency) made
-- our UPDATE wait. One statement, one round trip, autocommit.
WITH outcome AS (
  SELECT * FROM unnest(%(ids)b::bigint[], %(attempts)b::int[], %(statuses)b::text[],
                       %(retry_in)b::float8[], %(results)b::jsonb[], %(errors)b::text[],
                       %(tracebacks)b::text[], %(outcomes)b::text[], %(started_at)b::float8[],
                       %(finished_at)b::float8[])
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
  WHERE j.id = o.id AND j.status = 'running' AND j.worker_id = %(worker_id)s AND j.attempts = o.attempt
  RETURNING j.id, j.status
), recorded AS (
  INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error, traceback)
  SELECT o.id, o.attempt, %(worker_id)s, to_timestamp(o.started_at), to_timestamp(o.finished_at), o.outcome, o.error,
         o.traceback
  FROM outcome o JOIN done d ON d.id = o.id
), settled AS (
  SELECT jobline.settle_dependants(
           coalesce(array_agg(id) FILTER (WHERE status = 'succeeded'), '{}'),
           coalesce(array_agg(id) FILTER (WHERE status IN ('failed', 'cancelled')), '{}')) AS released
  FROM done
)
SELECT d.id, d.status FROM done d, settled
