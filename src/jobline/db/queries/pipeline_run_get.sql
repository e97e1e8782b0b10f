-- pipeline_run_get: the run %(id)s; with %(owner)s, only if that user owns it. Primary key.
SELECT r.* FROM jobline.pipeline_runs r
WHERE r.id = %(id)s AND (%(owner)s::text IS NULL OR r.owner = %(owner)s)
