-- job_claim_many: lease up to %(limit)s due jobs of %(functions)s (in %(queues)s, or any
-- queue when NULL) to %(worker_id)s for %(lease_seconds)s seconds; counts the attempt.
-- The statement lives in jobline.claim_jobs (migrations 0018, 0023, 0024), which pins its plan to
-- each served function's range of jobs_function_due_idx; see tests/db/test_core_queries.py.
SELECT * FROM jobline.claim_jobs(%(worker_id)s, %(functions)s::text[], %(queues)s::text[], %(limit)s,
                                 %(lease_seconds)s)
