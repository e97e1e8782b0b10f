-- pipeline_run_steps: the jobs of the run %(id)s, one per step (a step whose job retention
-- removed has none). Uses jobs_pipeline_run_idx.
SELECT j.id AS job_id, j.step, j.function, j.status, j.attempts, j.max_attempts, j.result, j.last_error,
       j.depends_on, j.run_at, j.started_at, j.finished_at, j.created_at
FROM jobline.jobs j
WHERE j.pipeline_run_id = %(id)s
ORDER BY j.id
