-- task_claim_many_limited: task_claim_many under the flow-control limits %(limit_ids)s, which
-- the caller locked earlier in this transaction (limit_take): jobline.claim_tasks_limited (0025),
-- whose rule for admitting jobs is the in-process claim's (jobline.limits_admit, 0019).
-- statement_timestamp() is after the lock: starts and leases are stamped with it.
SELECT * FROM jobline.claim_tasks_limited(%(worker_id)s, %(owner)s, %(task_types)s::text[], %(limit)s,
                                          %(lease_seconds)s, %(limit_ids)s::bigint[], statement_timestamp())
