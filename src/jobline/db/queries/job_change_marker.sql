-- job_change_marker: a few numbers that change whenever jobs or schedules do, read every couple
-- of seconds while someone watches the dashboard (completions send no NOTIFY, so live updates
-- cannot wait for one). Each is one index probe: the newest job (primary key), the latest
-- finish (jobs_finished_idx), the running jobs and their latest start (jobs_lease_idx, a few),
-- the newest schedule run and the latest schedule change.
SELECT (SELECT max(id) FROM jobline.jobs) AS newest_job,
       (SELECT max(finished_at) FROM jobline.jobs WHERE status IN ('succeeded', 'failed', 'cancelled')) AS last_finish,
       (SELECT count(*) FROM jobline.jobs WHERE status = 'running') AS running,
       (SELECT max(lease_until) FROM jobline.jobs WHERE status = 'running') AS last_lease,
       (SELECT max(id) FROM jobline.schedule_runs) AS newest_run,
       (SELECT max(changed_at) FROM jobline.schedules) AS schedules_changed
