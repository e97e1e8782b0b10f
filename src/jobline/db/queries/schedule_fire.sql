-- schedule_fire: a scheduler's plan for one due schedule, written in one transaction by
-- jobline.fire_schedule (runs and jobs for %(ticks)s, the missed note, the next tick), fenced on
-- the next_run_at and changed_at it read. Returns the runs it wrote; none when another
-- scheduler was first.
SELECT * FROM jobline.fire_schedule(%(id)s, %(seen_next)s::timestamptz, %(seen_changed)s::timestamptz,
                                    %(ticks)s::timestamptz[], %(missed_at)s::timestamptz, %(missed_note)s::text,
                                    %(next_tick)s::timestamptz)
