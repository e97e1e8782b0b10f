-- schedule_upsert: add a schedule made at run time (CLI, Python, HTTP); with %(replace)s, a
-- schedule of the same name is replaced (its ticks start again from now), but for a user
-- (%(scope)s) only one that user owns. Names are unique per role, as in pg_cron, and the
-- schedule acts for this session's role (`username`'s default); a user's come here as
-- '<owner>/<name>' (schedule.owned_name), so they meet only that user's own, but a name of that
-- form made by the service for another owner must still not be taken over. Otherwise nothing is
-- returned and the caller reports the conflict. Nameless schedules are always added.
INSERT INTO jobline.schedules AS s (name, expression, timezone, function, payload, owner, queue, priority,
                                    max_attempts, overlap, catch_up, catch_up_max, active, source,
                                    max_consecutive_failures)
VALUES (%(name)s, %(expression)s, %(timezone)s, %(function)s, %(payload)s::jsonb, %(owner)s, %(queue)s,
        %(priority)s, %(max_attempts)s, %(overlap)s, %(catch_up)s, %(catch_up_max)s, %(active)s, 'runtime',
        %(max_consecutive_failures)s)
ON CONFLICT (name, username) DO UPDATE
SET expression = excluded.expression, timezone = excluded.timezone, function = excluded.function,
    payload = excluded.payload, owner = excluded.owner, queue = excluded.queue, priority = excluded.priority,
    max_attempts = excluded.max_attempts, overlap = excluded.overlap, catch_up = excluded.catch_up,
    catch_up_max = excluded.catch_up_max, active = excluded.active, source = 'runtime',
    max_consecutive_failures = excluded.max_consecutive_failures,
    next_run_at = NULL, changed_at = now()
WHERE %(replace)s AND (%(scope)s::text IS NULL OR s.owner = %(scope)s)
RETURNING *
