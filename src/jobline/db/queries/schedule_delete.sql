-- schedule_delete: remove schedule %(id)s and its runs (their jobs stay).
DELETE FROM jobline.schedules WHERE id = %(id)s RETURNING id
