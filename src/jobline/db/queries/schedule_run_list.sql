-- schedule_run_list: the runs of schedule %(schedule_id)s (of %(owner)s, when given), newest
-- first, with the outcome of the work each run's job started (jobline.job_outcome); keyset
-- paging with %(before_id)s. Uses schedule_runs_recent_idx.
SELECT r.id, r.schedule_id, r.tick_at, r.status, r.job_id, r.message, r.created_at, o.status AS job_status,
       j.started_at, o.finished_at, j.result, o.error AS last_error
FROM jobline.schedule_runs r
JOIN jobline.schedules s ON s.id = r.schedule_id AND (%(owner)s::text IS NULL OR s.owner = %(owner)s)
LEFT JOIN jobline.jobs j ON j.id = r.job_id
LEFT JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o ON true
WHERE r.schedule_id = %(schedule_id)s AND (%(before_id)s::bigint IS NULL OR r.id < %(before_id)s)
ORDER BY r.id DESC
LIMIT %(limit)s
