-- queue_pause: pause the queue %(queue)s (again: the reason is replaced, paused_at kept). No
-- claim takes its jobs until queue_resume.
INSERT INTO jobline.queue_pauses (queue, reason) VALUES (%(queue)s, %(reason)s)
ON CONFLICT (queue) DO UPDATE SET reason = EXCLUDED.reason
RETURNING queue, paused_at, reason
