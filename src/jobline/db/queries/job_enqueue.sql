-- job_enqueue: enqueue one job through jobline.enqueue(), which owns the dependency and
-- unique-key rules; returns the new job's id, or that of the live job holding the unique key.
-- (The row itself cannot be returned by the same statement: a function's insert is not
-- visible to the query that calls it.)
SELECT jobline.enqueue(
  function_name => %(function)s::text, payload => %(payload)s::jsonb,
  run_at => %(run_at)s::timestamptz, queue => %(queue)s::text, priority => %(priority)s::int,
  owner => %(owner)s::text, max_attempts => %(max_attempts)s::int,
  depends_on => %(depends_on)s::bigint[], unique_key => %(unique_key)s::text,
  concurrency_key => %(concurrency_key)s::text)
