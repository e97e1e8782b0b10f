-- job_count_live: jobs waiting, pending and running (of %(owner)s; NULL: every owner), counted by
-- function and status; unarchived only. One branch per status, so each walks its status's
-- partial index (jobs_due_idx, jobs_lease_idx, jobs_waiting_deps_idx) and never the finished
-- jobs, which are most of the table.
SELECT l.function, l.status, count(*) AS n FROM (
  SELECT function, status FROM jobline.jobs
   WHERE status = 'pending' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  UNION ALL
  SELECT function, status FROM jobline.jobs
   WHERE status = 'running' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  UNION ALL
  SELECT function, status FROM jobline.jobs
   WHERE status = 'waiting' AND (%(owner)s::text IS NULL OR owner = %(owner)s)
) l
GROUP BY l.function, l.status
ORDER BY l.function, l.status
