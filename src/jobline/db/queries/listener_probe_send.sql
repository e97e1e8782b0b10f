-- listener_probe_send: notify %(channel)s, the private channel a notifier has just begun to
-- LISTEN on. Sent through the pool, not on the listening connection: a session notifies itself
-- within its own statement even behind a transaction-mode pooler, which would prove nothing.
SELECT pg_notify(%(channel)s, '')
