-- job_list_by_error: job_list (its filters and columns) for the jobs whose last error holds the
-- text %(error)s (case-insensitive; no pattern characters), through jobs_error_idx (partial:
-- last_error IS NOT NULL, id DESC), so it walks only jobs that have an error. Each row says
-- whether a live worker (seen within %(live_seconds)s) serves its function.
SELECT j.*,
       EXISTS (SELECT 1 FROM jobline.workers w
               WHERE j.function = ANY(w.functions)
                 AND w.last_seen_at > now() - make_interval(secs => %(live_seconds)s)) AS served
FROM jobline.jobs j
WHERE (%(statuses)s::text[] IS NULL OR j.status = ANY(%(statuses)s::text[]))
  AND (%(function)s::text IS NULL OR j.function = %(function)s)
  AND (%(queue)s::text IS NULL OR j.queue = %(queue)s)
  AND (%(owner)s::text IS NULL OR j.owner = %(owner)s)
  AND (%(created_after)s::timestamptz IS NULL OR j.created_at >= %(created_after)s)
  AND (%(created_before)s::timestamptz IS NULL OR j.created_at < %(created_before)s)
  AND (%(before_id)s::bigint IS NULL OR j.id < %(before_id)s)
  AND (%(include_archived)s OR j.archived_at IS NULL)
  AND j.last_error IS NOT NULL AND strpos(lower(j.last_error), lower(%(error)s)) > 0
ORDER BY j.id DESC
LIMIT %(limit)s
