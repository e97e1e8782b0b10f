-- job_oldest_due: the age in seconds of the oldest due pending job (of %(owner)s; NULL: every
-- owner), NULL when none is due. jobs_due_idx (jobs_owner_due_idx for a user).
SELECT extract(epoch FROM coalesce(%(now)s::timestamptz, now()) - min(run_at))::float8 AS seconds
FROM jobline.jobs
WHERE status = 'pending' AND run_at <= coalesce(%(now)s::timestamptz, now())
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
