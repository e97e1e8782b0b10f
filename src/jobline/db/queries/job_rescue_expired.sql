-- job_rescue_expired: take back up to %(limit)s running jobs whose lease expired (their worker
-- died or froze): retry them now, or fail them when their attempts are used up. The lost
-- attempt is recorded. Uses jobs_lease_idx. SKIP LOCKED: many rescuers may run at once.
-- "Retried while attempts remain" is retry.retries, written here in SQL because the rescue is
-- one set-based statement; tests/db/test_core_queries.py checks that the two agree.
-- Returns each job's id, new status, function and queue (the last two for worker metrics).
WITH expired AS (
  SELECT id, worker_id, attempts, started_at, lease_until FROM jobline.jobs
  WHERE status = 'running' AND lease_until < now()
  ORDER BY lease_until
  LIMIT %(limit)s
  FOR UPDATE SKIP LOCKED
), rescued AS (
  UPDATE jobline.jobs j
  SET status = CASE WHEN j.attempts >= j.max_attempts THEN 'failed' ELSE 'pending' END,
      run_at = now(),
      finished_at = CASE WHEN j.attempts >= j.max_attempts THEN now() END,
      -- A remote claim's worker_id is its lease token, the claimant's alone to know: not named.
      last_error = format('attempt %%s was lost: worker %%s stopped renewing its lease (expired at %%s)',
                          e.attempts, CASE WHEN e.worker_id LIKE 'remote:%%' THEN 'remote' ELSE e.worker_id END,
                          e.lease_until),
      worker_id = NULL,
      lease_until = NULL
  FROM expired e
  WHERE j.id = e.id
  RETURNING j.id, j.status, j.last_error, j.function, j.queue
), recorded AS (
  INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
  SELECT e.id, e.attempts, e.worker_id, e.started_at, now(), 'lost', r.last_error
  FROM expired e JOIN rescued r ON r.id = e.id
  ON CONFLICT DO NOTHING
), woken AS (
  SELECT pg_notify('jobline_jobs', '') WHERE EXISTS (SELECT 1 FROM rescued WHERE status = 'pending')
)
SELECT r.id, r.status, r.function, r.queue, (SELECT count(*) FROM woken) AS notified FROM rescued r
