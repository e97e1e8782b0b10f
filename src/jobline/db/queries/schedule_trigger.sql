-- schedule_trigger: run schedule %(id)s (of %(owner)s, when given) once now, outside its tick
-- ledger (jobline.trigger_schedule); returns the new job's id, nothing when there is no such
-- schedule of that owner.
SELECT jobline.trigger_schedule(s.id) FROM jobline.schedules s
WHERE s.id = %(id)s AND (%(owner)s::text IS NULL OR s.owner = %(owner)s)
