-- job_insert: enqueue one job that has no dependency and no unique key (one round trip).
-- The statement-level trigger jobs_notify_insert wakes idle workers on commit. Returns only
-- what the database decided; the caller knows the rest.
INSERT INTO jobline.jobs (function, payload, run_at, queue, priority, owner, max_attempts)
VALUES (%(function)s, %(payload)s::jsonb, coalesce(%(run_at)s::timestamptz, now()), %(queue)s,
        %(priority)s, %(owner)s, %(max_attempts)s)
RETURNING id, run_at, created_at
