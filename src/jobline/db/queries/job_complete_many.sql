-- job_complete_many: record a batch of attempt outcomes from %(worker_id)s in one statement:
-- the jobs' new state and one jobline.attempts row each, with its error message and traceback
-- (times are the worker's, as Unix seconds, because floats are the cheapest to send).
-- Fenced on (status = 'running', worker_id, attempts): an attempt whose lease expired (and
-- was rescued, or cancelled by a person) matches nothing, so its late report changes nothing.
-- Then settles the dependants of the jobs that reached a final state. The statement is
-- jobline.complete_jobs (0026), which keeps it on the primary key. One round trip, autocommit.
SELECT * FROM jobline.complete_jobs(%(worker_id)s, %(ids)b::bigint[], %(attempts)b::int[], %(statuses)b::text[],
                                    %(retry_in)b::float8[], %(results)b::jsonb[], %(errors)b::text[],
                                    %(tracebacks)b::text[], %(outcomes)b::text[], %(started_at)b::float8[],
                                    %(finished_at)b::float8[])
