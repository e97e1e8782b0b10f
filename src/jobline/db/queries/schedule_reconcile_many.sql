-- schedule_reconcile_many: make the database match the schedules an App declares in code.
-- Declared schedules are added, or updated when their definition changed (a new expression or
-- zone restarts their ticks; a pause made at run time is kept). Schedules made at run time are
-- never touched: a declared name that one of them holds is reported as shadowed. Code schedules
-- of %(owned_functions)s (the App's own functions) that are no longer declared are removed.
-- Names are unique per role: code schedules are this session's role's (`username`'s default),
-- and other roles' schedules of the same names are theirs.
WITH declared AS (
  SELECT * FROM unnest(%(names)s::text[], %(expressions)s::text[], %(timezones)s::text[], %(functions)s::text[],
                       %(payloads)s::jsonb[], %(owners)s::text[], %(queues)s::text[], %(priorities)s::int[],
                       %(max_attempts)s::int[], %(overlaps)s::text[], %(catch_ups)s::text[], %(catch_up_maxes)s::int[],
                       %(max_consecutive_failures)s::int[])
    AS d(name, expression, timezone, function, payload, owner, queue, priority, max_attempts, overlap, catch_up,
         catch_up_max, max_consecutive_failures)
), written AS (
  INSERT INTO jobline.schedules AS s (name, expression, timezone, function, payload, owner, queue, priority,
                                      max_attempts, overlap, catch_up, catch_up_max, source,
                                      max_consecutive_failures)
  SELECT name, expression, timezone, function, payload, owner, queue, priority, max_attempts, overlap, catch_up,
         catch_up_max, 'code', max_consecutive_failures
  FROM declared
  ON CONFLICT (name, username) DO UPDATE
  SET expression = excluded.expression, timezone = excluded.timezone, function = excluded.function,
      payload = excluded.payload, owner = excluded.owner, queue = excluded.queue, priority = excluded.priority,
      max_attempts = excluded.max_attempts, overlap = excluded.overlap, catch_up = excluded.catch_up,
      catch_up_max = excluded.catch_up_max, max_consecutive_failures = excluded.max_consecutive_failures,
      next_run_at = CASE WHEN (s.expression, s.timezone) = (excluded.expression, excluded.timezone)
                         THEN s.next_run_at END,
      changed_at = CASE WHEN (s.expression, s.timezone) = (excluded.expression, excluded.timezone)
                        THEN s.changed_at ELSE now() END
  WHERE s.source = 'code'
    AND (s.expression, s.timezone, s.function, s.payload, s.owner, s.queue, s.priority, s.max_attempts,
         s.overlap, s.catch_up, s.catch_up_max, s.max_consecutive_failures)
        IS DISTINCT FROM (excluded.expression, excluded.timezone, excluded.function, excluded.payload,
                          excluded.owner, excluded.queue, excluded.priority, excluded.max_attempts,
                          excluded.overlap, excluded.catch_up, excluded.catch_up_max,
                          excluded.max_consecutive_failures)
  RETURNING s.name, CASE WHEN s.xmax = 0 THEN 'added' ELSE 'updated' END AS change
), removed AS (
  DELETE FROM jobline.schedules s
  WHERE s.source = 'code' AND s.username = current_user AND s.function = ANY(%(owned_functions)s::text[])
    AND s.name <> ALL(%(names)s::text[])
  RETURNING s.name, 'removed' AS change
)
SELECT name, change FROM written
UNION ALL SELECT name, change FROM removed
UNION ALL SELECT s.name, 'shadowed' FROM jobline.schedules s JOIN declared d ON d.name = s.name
          WHERE s.source = 'runtime' AND s.username = current_user
