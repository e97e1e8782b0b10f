-- job_role_get: the role job %(id)s acts for (`username`; NULL for a job queued before roles
-- were recorded, by the operator), whether that role is jobline's operator
-- (jobline.role_is_operator), and the role this session is.
SELECT username, jobline.role_is_operator(username) AS operator, current_user AS session_role
FROM jobline.jobs WHERE id = %(id)s
