-- limit_list: every flow-control limit (0019), functions first, then queues, by target.
-- jobline.limits holds a few rows; no index needed beyond its primary key.
SELECT l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count, l.rate_seconds, l.source, l.updated_at
FROM jobline.limits l
ORDER BY l.scope, l.target, l.per_key
