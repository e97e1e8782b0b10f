-- job_get: one job by id.
SELECT * FROM jobline.jobs WHERE id = %(id)s
