-- limit_upsert: an operator sets the limit on %(scope)s %(target)s (per key or not): added, or
-- replaced whole. It becomes a runtime limit, which code reconciliation never touches again.
-- The next claim of its jobs enforces it. Uses the (scope, target, per_key) unique index.
INSERT INTO jobline.limits AS l (scope, target, per_key, concurrency, rate_count, rate_seconds, source)
VALUES (%(scope)s, %(target)s, %(per_key)s, %(concurrency)s, %(rate_count)s, %(rate_seconds)s, 'runtime')
ON CONFLICT (scope, target, per_key) DO UPDATE
SET concurrency = excluded.concurrency, rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds,
    source = 'runtime', updated_at = now()
RETURNING l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count, l.rate_seconds, l.source, l.updated_at
