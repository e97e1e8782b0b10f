-- job_insert: enqueue one job that has no dependency and no unique key (one round trip).
-- The statement-level trigger jobs_notify_insert wakes idle workers on commit. Returns only
-- what the database decided; the caller knows the rest. %(trace_context)s: the enqueuing span's
-- propagation carrier as JSON text, or NULL when the caller does not trace (jobline/tracing.py).
INSERT INTO jobline.jobs (function, payload, run_at, queue, priority, owner, max_attempts, trace_context,
                          concurrency_key)
VALUES (%(function)s, %(payload)s::jsonb, coalesce(%(run_at)s::timestamptz, now()), %(queue)s,
        %(priority)s, %(owner)s, %(max_attempts)s, %(trace_context)s::jsonb, %(concurrency_key)s)
RETURNING id, run_at, created_at
