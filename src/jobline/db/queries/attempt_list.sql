-- attempt_list: the attempts of job %(job_id)s, in order; with %(owner)s, only if that user owns
-- the job (NULL: any owner).
SELECT a.* FROM jobline.attempts a
WHERE a.job_id = %(job_id)s
  AND (%(owner)s::text IS NULL
       OR EXISTS (SELECT 1 FROM jobline.jobs j WHERE j.id = a.job_id AND j.owner = %(owner)s))
ORDER BY a.attempt
