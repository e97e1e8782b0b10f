-- worker_list: the workers seen within %(live_seconds)s (their heartbeat, last_seen_at), with
-- the functions and queues each serves and how many jobs it holds now (jobs_lease_idx).
SELECT w.id, w.hostname, w.pid, w.functions, w.queues, w.started_at, w.last_seen_at,
       (SELECT count(*) FROM jobline.jobs j WHERE j.status = 'running' AND j.worker_id = w.id) AS running
FROM jobline.workers w
WHERE w.last_seen_at > now() - make_interval(secs => %(live_seconds)s)
ORDER BY w.started_at, w.id
