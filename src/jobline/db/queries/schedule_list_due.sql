-- schedule_list_due: up to %(limit)s active schedules that are due at %(now)s (the database's
-- clock when NULL), or new and not yet planned (next_run_at NULL), with that clock.
-- Uses schedules_due_idx.
SELECT id, name, expression, timezone, next_run_at, changed_at, catch_up, catch_up_max,
       coalesce(%(now)s::timestamptz, now()) AS now
FROM jobline.schedules
WHERE active AND (next_run_at IS NULL OR next_run_at <= coalesce(%(now)s::timestamptz, now()))
ORDER BY next_run_at NULLS FIRST
LIMIT %(limit)s
