-- pipeline_list: every recorded pipeline with its steps, and the runs of %(owner)s (NULL: of
-- everyone): how many, and the newest one's id and status. Uses pipeline_runs_pipeline_idx.
SELECT p.name, p.steps, p.updated_at,
       (SELECT count(*) FROM jobline.pipeline_runs r
         WHERE r.pipeline = p.name AND (%(owner)s::text IS NULL OR r.owner = %(owner)s)) AS runs,
       last.id AS last_run_id, last.status AS last_run_status, last.created_at AS last_run_at
FROM jobline.pipelines p
LEFT JOIN LATERAL (
  SELECT r.id, r.status, r.created_at FROM jobline.pipeline_runs r
   WHERE r.pipeline = p.name AND (%(owner)s::text IS NULL OR r.owner = %(owner)s)
   ORDER BY r.id DESC LIMIT 1) last ON true
ORDER BY p.name
