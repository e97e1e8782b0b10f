-- pipeline_run_list: runs newest first, up to %(limit)s, older than %(before_id)s (the cursor),
-- filtered by %(pipeline)s, %(status)s and %(owner)s (each NULL: any), with how many of their
-- steps succeeded. Uses the primary key, or pipeline_runs_owner_idx / pipeline_runs_pipeline_idx.
SELECT r.id, r.pipeline, r.owner, r.status, r.payload, r.created_at, r.finished_at,
       jsonb_array_length(r.steps) AS steps,
       (SELECT count(*) FROM jobline.jobs j WHERE j.pipeline_run_id = r.id AND j.status = 'succeeded') AS succeeded
FROM jobline.pipeline_runs r
WHERE (%(owner)s::text IS NULL OR r.owner = %(owner)s)
  AND (%(pipeline)s::text IS NULL OR r.pipeline = %(pipeline)s)
  AND (%(status)s::text IS NULL OR r.status = %(status)s)
  AND (%(before_id)s::bigint IS NULL OR r.id < %(before_id)s)
ORDER BY r.id DESC
LIMIT %(limit)s
