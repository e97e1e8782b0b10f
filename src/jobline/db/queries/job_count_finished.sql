-- job_count_finished: jobs that finished (succeeded, failed, cancelled) in [%(since)s,
-- %(until)s) (of %(owner)s; NULL: every owner), counted per bucket of %(bucket_seconds)s
-- seconds (its start, aligned to the epoch), function and status. Archived jobs count: they
-- finished all the same. Walks jobs_finished_idx over the range only, so its cost follows the
-- throughput of the range, not the size of the table (the caller caches closed hours).
SELECT to_timestamp(floor(extract(epoch FROM finished_at) / %(bucket_seconds)s) * %(bucket_seconds)s) AS bucket,
       function, status, count(*) AS n
FROM jobline.jobs
WHERE status IN ('succeeded', 'failed', 'cancelled')
  AND finished_at >= %(since)s AND finished_at < %(until)s
  AND (%(owner)s::text IS NULL OR owner = %(owner)s)
GROUP BY 1, 2, 3
ORDER BY 1, 2, 3
