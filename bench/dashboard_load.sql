-- bench/dashboard.py: 1,000,000 jobs over the last 7 days (the default retention of succeeded jobs),
-- 200 owners, 10 functions, 5 queues; 2% failed with attempts; the newest 2,000 live.
INSERT INTO jobline.jobs (function, payload, status, queue, priority, owner, run_at, attempts, max_attempts,
                          worker_id, lease_until, started_at, finished_at, result, last_error, created_at)
SELECT f.function, jsonb_build_object('n', g),
       s.status,
       (ARRAY['default','default','emails','reports','billing'])[1 + g % 5],
       0,
       CASE WHEN g % 10 = 0 THEN NULL ELSE 'user-' || (g % 200) END,
       c.created,
       CASE WHEN s.status IN ('pending','waiting') THEN 0 WHEN s.status = 'failed' THEN 3 ELSE 1 END,
       3,
       CASE WHEN s.status = 'running' THEN 'bench-worker' END,
       CASE WHEN s.status = 'running' THEN now() + interval '30 seconds' END,
       CASE WHEN s.status IN ('running','succeeded','failed') THEN c.created + interval '1 second' END,
       CASE WHEN s.status IN ('succeeded','failed','cancelled') THEN c.created + interval '2 seconds' END,
       CASE WHEN s.status = 'succeeded' AND f.function = 'http'
            THEN jsonb_build_object('status', 200, 'elapsed_ms', 40 + g % 300, 'url', 'https://api.example.com/hook', 'text', 'ok')
            WHEN s.status = 'succeeded' THEN jsonb_build_object('ok', true) END,
       CASE WHEN s.status = 'failed' THEN 'ValueError: bench failure ' || g END,
       c.created
FROM generate_series(1, 1000000) g
CROSS JOIN LATERAL (SELECT now() - (1000000 - g) * interval '0.6048 seconds' AS created) c
CROSS JOIN LATERAL (SELECT (ARRAY['send-email','resize-image','sync-crm','nightly-report','http','charge-card',
                                  'update-streaks','index-doc','notify-slack','cleanup'])[1 + (g * 7) % 10] AS function) f
CROSS JOIN LATERAL (SELECT CASE WHEN g > 1000000 - 2000 THEN (ARRAY['pending','pending','pending','running','waiting'])[1 + g % 5]
                                WHEN g % 50 = 0 THEN 'failed'
                                WHEN g % 333 = 0 THEN 'cancelled'
                                ELSE 'succeeded' END AS status) s;
UPDATE jobline.jobs SET depends_on = ARRAY[id - 1], deps_remaining = 1 WHERE status = 'waiting';
INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome, error)
SELECT id, a, 'bench-worker', started_at, finished_at, CASE WHEN status = 'failed' THEN 'failed' ELSE 'succeeded' END,
       CASE WHEN status = 'failed' THEN last_error END
FROM jobline.jobs, generate_series(1, attempts) a WHERE status IN ('succeeded', 'failed');
ANALYZE jobline.jobs; ANALYZE jobline.attempts;
