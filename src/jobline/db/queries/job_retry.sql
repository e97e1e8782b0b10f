-- job_retry: a person gives a failed or cancelled job another run now, with fresh attempts.
UPDATE jobline.jobs
SET status = 'pending', run_at = now(), finished_at = NULL, archived_at = NULL,
    -- Attempt numbers continue (attempts rows keep the history); the job gets its budget again
    -- (jobline.retry_budget, migration 0021: snoozes are not part of it).
    max_attempts = jobline.retry_budget(id, attempts, max_attempts)
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status IN ('failed', 'cancelled')
RETURNING *
