-- pipeline_run_retry: run the failed or cancelled steps of the run %(id)s again, keeping what
-- the others made; returns how many (jobline.retry_pipeline_run, migration 0021).
SELECT jobline.retry_pipeline_run(%(id)s) AS steps
