-- schedule_set_active: pause or resume schedule %(id)s (of %(owner)s, when given). Resuming starts its ticks again from
-- now (the ticks of the pause are not caught up), by clearing next_run_at.
UPDATE jobline.schedules
SET active = %(active)s,
    next_run_at = CASE WHEN %(active)s AND NOT active THEN NULL ELSE next_run_at END,
    changed_at = CASE WHEN %(active)s AND NOT active THEN now() ELSE changed_at END
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
RETURNING *
