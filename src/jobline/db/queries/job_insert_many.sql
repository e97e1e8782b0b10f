-- job_insert_many: enqueue many jobs that share everything but their payload, in one statement
-- (bulk enqueue sends one of these per group of alike jobs). The payloads are a text array of
-- JSON objects, sent in binary. Rows are inserted in payload order, so their ids ascend in it.
-- They share one %(trace_context)s too: the bulk enqueue's span (NULL when not tracing).
-- The statement-level trigger jobs_notify_insert wakes idle workers once, on commit.
INSERT INTO jobline.jobs (function, payload, run_at, queue, priority, owner, max_attempts, trace_context,
                          concurrency_key)
SELECT %(function)s, p.payload::jsonb, coalesce(%(run_at)s::timestamptz, now()), %(queue)s, %(priority)s,
       %(owner)s, %(max_attempts)s, %(trace_context)s::jsonb, %(concurrency_key)s
FROM unnest(%(payloads)b::text[]) WITH ORDINALITY AS p(payload, n)
ORDER BY p.n
RETURNING id
