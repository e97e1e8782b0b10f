-- job_reserve_ids: take %(count)s ids from the jobs sequence, so bulk enqueue can COPY rows
-- with known ids and return them without RETURNING.
SELECT nextval(pg_get_serial_sequence('jobline.jobs', 'id')) FROM generate_series(1, %(count)s)
