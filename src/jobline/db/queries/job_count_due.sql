-- job_count_due: how many jobs of %(functions)s are due now, and how many of those or of
-- waiting jobs remain unfinished (for `jobline process` to know when it is done).
SELECT count(*) FILTER (WHERE status = 'pending' AND run_at <= now()) AS due,
       count(*) FILTER (WHERE status = 'running') AS running
FROM jobline.jobs
WHERE function = ANY(%(functions)s::text[]) AND status IN ('pending', 'running')
