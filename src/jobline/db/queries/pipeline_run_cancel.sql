-- pipeline_run_cancel: cancel the unfinished steps of the run %(id)s with %(reason)s (NULL: a
-- default); returns how many (jobline.cancel_pipeline_run, migration 0021).
SELECT jobline.cancel_pipeline_run(%(id)s, %(reason)s::text) AS cancelled
