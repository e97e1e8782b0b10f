-- job_insert_many: enqueue many jobs that share everything but their payload, in one statement
-- (bulk enqueue sends one of these per group of alike jobs). The payloads are a text array of
-- JSON objects, sent in binary. Rows are inserted in payload order, so their ids ascend in it.
-- The statement-level trigger jobs_notify_insert wakes idle workers once, on commit.
INSERT INTO jobline.jobs (function, payload, run_at, queue, priority, owner, max_attempts)
SELECT %(function)s, p.payload::jsonb, coalesce(%(run_at)s::timestamptz, now()), %(queue)s, %(priority)s,
       %(owner)s, %(max_attempts)s
FROM unnest(%(payloads)b::text[]) WITH ORDINALITY AS p(payload, n)
ORDER BY p.n
RETURNING id
