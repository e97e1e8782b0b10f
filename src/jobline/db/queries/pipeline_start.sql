-- pipeline_start: start a run of the pipeline %(name)s with %(payload)s for %(owner)s (NULL: no
-- owner), through jobline.start_pipeline (migration 0021), the one place that creates runs;
-- %(parent)s: the running job that starts it (a schedule's tick), or NULL.
SELECT jobline.start_pipeline(%(name)s, %(payload)s::jsonb, %(owner)s::text, %(parent)s::bigint) AS id
