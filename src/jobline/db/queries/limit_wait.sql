-- limit_wait: for a worker of %(functions)s in %(queues)s whose claim came back short, the
-- seconds until a job held back by a full limit may be admitted ('Infinity': only when a job
-- finishes), or NULL when no limit in its scope is full (see jobline.limits_wait, 0019).
SELECT jobline.limits_wait(%(functions)s::text[], %(queues)s::text[]) AS wait
