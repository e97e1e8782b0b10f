-- pipeline_start: start a run of the pipeline %(name)s with %(payload)s for %(owner)s (NULL: no
-- owner), through jobline.start_pipeline (migration 0021), the one place that creates runs.
SELECT jobline.start_pipeline(%(name)s, %(payload)s::jsonb, %(owner)s::text) AS id
