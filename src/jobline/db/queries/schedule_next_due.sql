-- schedule_next_due: seconds from %(now)s (the database's clock when NULL) until the next
-- active schedule is due; NULL when there is none. @restart schedules are not due at a time
-- (schedule_list_due). Uses schedules_due_idx.
SELECT extract(epoch FROM min(next_run_at) - coalesce(%(now)s::timestamptz, now()))::float8
FROM jobline.schedules WHERE active AND NOT jobline.cron_is_restart(expression)
