-- schedule_trigger: run schedule %(id)s once now, outside its tick ledger (jobline.trigger_schedule);
-- returns the new job's id.
SELECT jobline.trigger_schedule(%(id)s)
