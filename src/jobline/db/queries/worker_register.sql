-- worker_register: announce a worker and the functions it serves (upsert: ids are unique per
-- process, but a restarted process may reuse one in tests), and record those functions as
-- served in-process, so claim-next-task leaves their jobs to Python workers.
WITH local AS (
  INSERT INTO jobline.local_functions (function)
  SELECT unnest(%(functions)s::text[])
  ON CONFLICT (function) DO UPDATE SET last_seen_at = now()
)
INSERT INTO jobline.workers (id, hostname, pid, functions, queues)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(functions)s, %(queues)s)
ON CONFLICT (id) DO UPDATE
SET functions = excluded.functions, queues = excluded.queues, last_seen_at = now()
