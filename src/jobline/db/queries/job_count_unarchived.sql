-- job_count_unarchived: unarchived jobs (of %(owner)s; NULL: every owner), counted by function
-- and status. It reads every unarchived job, finished ones included (most of the table: 0.4 s
-- at 1,000,000 jobs), so only GET /api/stats uses it; /metrics counts with job_count_live.
SELECT function, status, count(*) AS n FROM jobline.jobs
WHERE archived_at IS NULL AND (%(owner)s::text IS NULL OR owner = %(owner)s)
GROUP BY function, status
ORDER BY function, status
