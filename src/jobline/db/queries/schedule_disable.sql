-- schedule_disable: pause schedule %(id)s, whose expression the scheduler cannot use, unless it
-- changed since (%(seen_changed)s).
UPDATE jobline.schedules SET active = false WHERE id = %(id)s AND changed_at = %(seen_changed)s
