-- job_list_dependants: the jobs that depend on job %(id)s (of %(owner)s; NULL: every owner), in
-- any state, by id; at most %(limit)s. jobs_dependants_idx (GIN over depends_on).
SELECT id, function, status FROM jobline.jobs
WHERE depends_on @> ARRAY[%(id)s::bigint] AND depends_on IS NOT NULL
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY id
LIMIT %(limit)s
