-- job_cancel: a person cancels a job that has not finished. A running attempt's later report
-- is fenced out (status is no longer 'running'); its worker notices at its next heartbeat.
UPDATE jobline.jobs
SET status = 'cancelled', finished_at = now(), worker_id = NULL, lease_until = NULL,
    last_error = coalesce(%(reason)s, 'cancelled by a person')
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status IN ('waiting', 'pending', 'running')
RETURNING *
