-- limit_list: the flow-control limits (0019), functions first, then queues, by target. With
-- %(owner)s (a user), only the limits on a function or queue of one of that user's jobs: a user
-- never learns the names of other tenants' functions or queues. jobline.limits holds a few rows;
-- a user's jobs are found through jobs_owner_idx, stopping at the first match per limit.
SELECT l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count, l.rate_seconds, l.source, l.updated_at
FROM jobline.limits l
WHERE %(owner)s::text IS NULL
   OR EXISTS (SELECT 1 FROM jobline.jobs j
              WHERE j.owner = %(owner)s AND l.target = CASE l.scope WHEN 'function' THEN j.function ELSE j.queue END)
ORDER BY l.scope, l.target, l.per_key
