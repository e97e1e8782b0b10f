-- job_retry: a person gives a failed or cancelled job another run now, with fresh attempts.
UPDATE jobline.jobs
SET status = 'pending', run_at = now(), finished_at = NULL, archived_at = NULL,
    -- Attempt numbers continue (attempts rows keep the history); the job gets its budget again.
    max_attempts = least(attempts + max_attempts, 1000)
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status IN ('failed', 'cancelled')
RETURNING *
