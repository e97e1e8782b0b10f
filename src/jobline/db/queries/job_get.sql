-- job_get: one job by id; with %(owner)s, only if that user owns it (NULL: any owner).
SELECT * FROM jobline.jobs WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s)
