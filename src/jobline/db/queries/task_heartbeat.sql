-- task_heartbeat: extend the lease %(worker_id)s holds on job %(id)s by %(lease_seconds)s
-- seconds from now; nothing if the lease was lost (rescued, cancelled) or, for a user
-- (%(owner)s), the job is not theirs.
UPDATE jobline.jobs
SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND status = 'running' AND worker_id = %(worker_id)s
RETURNING lease_until
