-- limit_take: lock, for the rest of the caller's transaction, the limits that can apply to a
-- remote claim of %(task_types)s (NULL: any function) from any queue, and return their ids
-- (NULL: none applies, and the claim is task_claim_many as before). See jobline.limits_take (0019).
SELECT jobline.limits_take(%(task_types)s::text[], NULL) AS limit_ids
