-- limit_reconcile_many: make the database match the limits an App declares in code, as
-- schedule_reconcile_many does for schedules. Declared limits are added, or updated when they
-- changed; a limit an operator set at run time on the same (scope, target, per_key) is never
-- touched and is reported as shadowed. Code limits on %(owned_functions)s and %(owned_queues)s
-- (the App's functions and their queues) that are no longer declared are removed.
WITH declared AS (
  SELECT * FROM unnest(%(scopes)s::text[], %(targets)s::text[], %(per_keys)s::boolean[], %(concurrencies)s::int[],
                       %(rate_counts)s::int[], %(rate_seconds)s::float8[])
    AS d(scope, target, per_key, concurrency, rate_count, rate_seconds)
), written AS (
  INSERT INTO jobline.limits AS l (scope, target, per_key, concurrency, rate_count, rate_seconds, source)
  SELECT scope, target, per_key, concurrency, rate_count, rate_seconds, 'code' FROM declared
  ON CONFLICT (scope, target, per_key) DO UPDATE
  SET concurrency = excluded.concurrency, rate_count = excluded.rate_count, rate_seconds = excluded.rate_seconds,
      updated_at = now()
  WHERE l.source = 'code'
    AND (l.concurrency, l.rate_count, l.rate_seconds)
        IS DISTINCT FROM (excluded.concurrency, excluded.rate_count, excluded.rate_seconds)
  RETURNING l.scope, l.target, l.per_key, CASE WHEN l.xmax = 0 THEN 'added' ELSE 'updated' END AS change
), removed AS (
  DELETE FROM jobline.limits l
  WHERE l.source = 'code'
    AND ((l.scope = 'function' AND l.target = ANY(%(owned_functions)s::text[]))
         OR (l.scope = 'queue' AND l.target = ANY(%(owned_queues)s::text[])))
    AND NOT EXISTS (SELECT 1 FROM declared d
                    WHERE (d.scope, d.target, d.per_key) = (l.scope, l.target, l.per_key))
  RETURNING l.scope, l.target, l.per_key, 'removed' AS change
)
SELECT scope, target, per_key, change FROM written
UNION ALL SELECT scope, target, per_key, change FROM removed
UNION ALL SELECT l.scope, l.target, l.per_key, 'shadowed' FROM jobline.limits l JOIN declared d
          ON (d.scope, d.target, d.per_key) = (l.scope, l.target, l.per_key) WHERE l.source = 'runtime'
