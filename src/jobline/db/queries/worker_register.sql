-- worker_register: announce a worker and the functions it serves (upsert: ids are unique per
-- process, but a restarted process may reuse one in tests).
INSERT INTO jobline.workers (id, hostname, pid, functions, queues)
VALUES (%(id)s, %(hostname)s, %(pid)s, %(functions)s, %(queues)s)
ON CONFLICT (id) DO UPDATE
SET functions = excluded.functions, queues = excluded.queues, last_seen_at = now()
