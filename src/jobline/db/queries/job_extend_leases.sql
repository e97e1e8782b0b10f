-- job_extend_leases: the heartbeat. Extends the leases %(worker_id)s still holds on %(ids)s and
-- marks the worker alive; ids not returned were rescued or cancelled meanwhile.
WITH seen AS (
  UPDATE jobline.workers SET last_seen_at = now() WHERE id = %(worker_id)s
)
UPDATE jobline.jobs
SET lease_until = now() + make_interval(secs => %(lease_seconds)s)
WHERE id = ANY(%(ids)s::bigint[]) AND status = 'running' AND worker_id = %(worker_id)s
RETURNING id
