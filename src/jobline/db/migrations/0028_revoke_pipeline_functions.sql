-- 0028_revoke_pipeline_functions: 0021's internal pipeline functions are jobline's own, as its
-- other internal functions are. A plain role was already stopped by the tables' permissions;
-- now it is stopped at the function too.
REVOKE ALL ON FUNCTION jobline.start_pipeline(text, jsonb, text, bigint) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.pipeline_run_finished(bigint, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.retry_budget(bigint, integer, integer) FROM PUBLIC;
