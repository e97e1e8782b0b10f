-- job_archive: hide a finished job from default listings until retention removes it.
UPDATE jobline.jobs SET archived_at = coalesce(archived_at, now())
WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) AND status IN ('succeeded', 'failed', 'cancelled')
RETURNING *
