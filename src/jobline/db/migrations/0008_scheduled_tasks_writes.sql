-- 0008_scheduled_tasks_writes: writes to seed 000's jobline.scheduled_tasks go through the same
-- checks as every other enqueue. As a plain view of jobline.jobs it was automatically
-- updatable, so `INSERT INTO jobline.scheduled_tasks (function_name) VALUES ('')` stored a job
-- that jobline.enqueue would have refused (an empty name, a newline in it).
-- Applied by migrate.py inside one transaction, under pg_advisory_xact_lock.

-- An INSERT (seed 000's own log_scheduled_task writes one) enqueues the task with jobline.enqueue,
-- which checks the name and wakes the workers; `status`, if given, must be 'pending'.
CREATE FUNCTION jobline.scheduled_tasks_write() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  IF TG_OP = 'INSERT' THEN
    IF NEW.status IS NOT NULL AND NEW.status <> 'pending' THEN
      RAISE EXCEPTION 'jobline.scheduled_tasks: a new task is pending, got status %', quote_literal(NEW.status)
        USING ERRCODE = '22023', HINT = 'leave status out; workers set it as the task runs';
    END IF;
    NEW.id := jobline.enqueue(NEW.function_name, '{}', coalesce(NEW.scheduled_time, now()));
    NEW.scheduled_time := coalesce(NEW.scheduled_time, now());
    NEW.status := 'pending';
    RETURN NEW;
  END IF;
  -- Workers set the status as tasks run, and jobline's commands steer them; a direct UPDATE or
  -- DELETE would bypass both (and the attempts' history).
  RAISE EXCEPTION 'jobline.scheduled_tasks: % is not allowed: workers set a task''s status as it runs', TG_OP
    USING ERRCODE = '0A000',
          HINT = 'steer a task with `jobline jobs retry|cancel|run-now|archive ID` or the HTTP API';
END $$;

CREATE TRIGGER scheduled_tasks_write INSTEAD OF INSERT OR UPDATE OR DELETE ON jobline.scheduled_tasks
  FOR EACH ROW EXECUTE FUNCTION jobline.scheduled_tasks_write();
