-- limit_delete: remove the limit on %(scope)s %(target)s (per key or not); its starts log is
-- pruned by maintenance (limit_start_prune). Returns the removed row, none if there was none.
DELETE FROM jobline.limits l
WHERE l.scope = %(scope)s AND l.target = %(target)s AND l.per_key = %(per_key)s
RETURNING l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count, l.rate_seconds, l.source, l.updated_at
