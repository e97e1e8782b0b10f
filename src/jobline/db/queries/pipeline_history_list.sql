-- pipeline_history_list: what happened to the run %(id)s and its steps, oldest first, at most
-- %(limit)s events. Uses pipeline_history_run_idx.
SELECT h.id, h.step, h.job_id, h.event, h.message, h.at
FROM jobline.pipeline_history h
WHERE h.run_id = %(id)s
ORDER BY h.id
LIMIT %(limit)s
