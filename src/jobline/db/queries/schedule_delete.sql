-- schedule_delete: remove schedule %(id)s (of %(owner)s, when given) and its runs (their jobs stay).
DELETE FROM jobline.schedules WHERE id = %(id)s AND (%(owner)s::text IS NULL OR owner = %(owner)s) RETURNING id
