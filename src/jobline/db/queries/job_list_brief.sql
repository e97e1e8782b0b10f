-- job_list_brief: id, function and status of the jobs %(ids)s (of %(owner)s; NULL: every owner)
-- that exist: a job's dependencies as its page lists them. Primary key.
SELECT id, function, status FROM jobline.jobs
WHERE id = ANY(%(ids)s::bigint[]) AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY id
