-- schedule_list_due: up to %(limit)s active schedules that are due at %(now)s (the database's
-- clock when NULL), or new and not yet planned (next_run_at NULL), with that clock and the
-- server's start (%(started_at)s, or pg_postmaster_start_time()). An @restart schedule fires at
-- server starts, not at times: it is due when new, or when the server started after the start
-- it was last planned for (its next_run_at; see schedule.plan_restart).
-- Uses schedules_due_idx.
SELECT id, name, expression, timezone, next_run_at, changed_at, catch_up, catch_up_max,
       coalesce(%(now)s::timestamptz, now()) AS now,
       coalesce(%(started_at)s::timestamptz, pg_postmaster_start_time()) AS started_at
FROM jobline.schedules
WHERE active AND (next_run_at IS NULL OR next_run_at <= coalesce(%(now)s::timestamptz, now()))
  AND (next_run_at IS NULL OR NOT jobline.cron_is_restart(expression)
       OR next_run_at < coalesce(%(started_at)s::timestamptz, pg_postmaster_start_time()))
ORDER BY next_run_at NULLS FIRST
LIMIT %(limit)s
