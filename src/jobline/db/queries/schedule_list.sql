-- schedule_list: every schedule (of %(owner)s, when given) with its latest run (and that run's
-- job), by name then id. The job's status, error and end are the outcome of the work it started
-- (jobline.job_outcome): a job that succeeded by queueing HTTP calls is `running` until they end.
SELECT s.*, r.id AS run_id, r.tick_at AS run_tick_at, r.status AS run_status, r.job_id AS run_job_id,
       r.message AS run_message, r.created_at AS run_created_at, o.status AS run_job_status,
       j.started_at AS run_started_at, o.finished_at AS run_finished_at, j.result AS run_result,
       o.error AS run_last_error
FROM jobline.schedules s
LEFT JOIN LATERAL (SELECT * FROM jobline.schedule_runs r WHERE r.schedule_id = s.id ORDER BY r.id DESC LIMIT 1) r
  ON true
LEFT JOIN jobline.jobs j ON j.id = r.job_id
LEFT JOIN LATERAL jobline.job_outcome(j.id, j.status, j.last_error, j.finished_at) o ON true
WHERE %(owner)s::text IS NULL OR s.owner = %(owner)s
ORDER BY s.name NULLS LAST, s.id
