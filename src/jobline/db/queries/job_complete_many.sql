-- job_complete_many: record a batch of attempt outcomes from %(worker_id)s in one statement:
-- the jobs' new state and one jobline.attempts row each.
-- Fenced on (status = 'running', worker_id, attempts): an attempt whose lease expired (and
-- was rescued, or cancelled by a person) matches nothing, so its late report changes nothing.
-- Returns the jobs actually updated, so the caller settles dependants only for those.
WITH outcome AS (
  SELECT * FROM unnest(%(ids)s::bigint[], %(attempts)s::int[], %(statuses)s::text[],
                       %(retry_in)s::float8[], %(results)s::jsonb[], %(errors)s::text[],
                       %(outcomes)s::text[], %(started_at)s::timestamptz[], %(finished_at)s::timestamptz[])
    AS o(id, attempt, status, retry_in, result, error, outcome, started_at, finished_at)
), done AS (
  UPDATE jobline.jobs j
  SET status = o.status,
      run_at = CASE WHEN o.status = 'pending' THEN now() + make_interval(secs => o.retry_in) ELSE j.run_at END,
      result = o.result,
      last_error = coalesce(o.error, j.last_error),
      finished_at = CASE WHEN o.status = 'pending' THEN NULL ELSE now() END,
      worker_id = NULL,
      lease_until = NULL
  FROM outcome o
  WHERE j.id = o.id AND j.status = 'running' AND j.worker_id = %(worker_id)s AND j.attempts = o.attempt
  RETURNING j.id, j.status
), recorded AS (
  INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
  SELECT o.id, o.attempt, %(worker_id)s, o.started_at, o.finished_at, o.outcome, o.error
  FROM outcome o JOIN done d ON d.id = o.id
)
SELECT id, status FROM done
