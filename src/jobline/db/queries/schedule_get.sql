-- schedule_get: one schedule by name, or by id (%(id)s, when the reference is a number); a
-- name wins over an id, so a schedule named '42' is still reachable by its name. With %(owner)s,
-- only that user's schedules (NULL: any owner), and the user's own name for %(ref)s
-- (%(owned)s, '<owner>/<ref>') wins over a global one. Names are unique per role (as pg_cron's
-- jobs are); of several roles' schedules of one name, this session's own wins, then the oldest.
SELECT * FROM jobline.schedules
WHERE (name = %(owned)s OR name = %(ref)s OR id = %(id)s::bigint) AND (%(owner)s::text IS NULL OR owner = %(owner)s)
ORDER BY name = %(owned)s DESC NULLS LAST, name = %(ref)s DESC NULLS LAST, username = current_user DESC, id
LIMIT 1
