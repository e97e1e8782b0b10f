-- job_list_http: calls of the built-in `http` function (of %(owner)s; NULL: every owner), newest
-- first, keyset-paged with %(before_id)s, %(limit)s of them: the call (payload's method and url,
-- never its headers or body, which may hold secret references), its state, attempts and what
-- its last attempt left in the result (status, elapsed_ms, an excerpt of the body, or the error).
-- jobs_http_idx for every owner, jobs_http_owner_idx for one (partial: function = 'http'); not
-- prepared, so that the plan sees which.
SELECT id, status, owner, attempts, max_attempts, created_at, finished_at, last_error,
       payload->>'method' AS method, payload->>'url' AS url,
       (result->>'status')::int AS status_code, (result->>'elapsed_ms')::float8 AS elapsed_ms,
       left(coalesce(result->>'text', CASE WHEN result ? 'body' THEN (result->'body')::text END,
                     result->>'error'), %(excerpt)s) AS excerpt
FROM jobline.jobs
WHERE function = 'http'
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
  AND (%(before_id)s::bigint IS NULL OR id < %(before_id)s)
ORDER BY id DESC
LIMIT %(limit)s
