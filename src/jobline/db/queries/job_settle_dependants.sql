-- job_settle_dependants: cancel dependants of %(failed_ids)s, release those of %(succeeded_ids)s
-- (see jobline.settle_dependants in migration 0001); returns how many became pending.
SELECT jobline.settle_dependants(%(succeeded_ids)s::bigint[], %(failed_ids)s::bigint[])
