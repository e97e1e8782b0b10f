-- job_copy_many: bulk enqueue of simple jobs (no dependency, no unique key) by COPY, the
-- fastest way into PostgreSQL; the statement-level insert trigger still notifies once.
COPY jobline.jobs (id, function, payload, run_at, queue, priority, owner, max_attempts) FROM STDIN
