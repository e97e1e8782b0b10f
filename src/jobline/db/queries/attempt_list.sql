-- attempt_list: the attempts of job %(job_id)s, in order.
SELECT * FROM jobline.attempts WHERE job_id = %(job_id)s ORDER BY attempt
