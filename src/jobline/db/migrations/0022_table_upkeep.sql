-- 0022_table_upkeep: keep jobline's busiest tables and their indexes from growing for good.
--
-- Every job is inserted, updated two or three times and deleted by retention, so jobline.jobs
-- and jobline.attempts are mostly dead rows unless vacuumed often. With autovacuum's defaults a
-- table is vacuumed once a fifth of it is dead: for a table of a million jobs that is 200,000
-- dead rows, and dead entries in jobs_due_idx that every claim walks. These settings vacuum at
-- 1% plus 1,000 rows, analyze at 2%, and let the vacuum go ten times faster than the default
-- cost limit. They apply only where autovacuum runs; where it is off, the workers' maintenance
-- vacuums these tables itself (runtime/maintenance.py, Maintenance.upkeep).
ALTER TABLE jobline.jobs SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                              autovacuum_vacuum_insert_scale_factor = 0.05, autovacuum_analyze_scale_factor = 0.02,
                              autovacuum_vacuum_cost_limit = 2000);
ALTER TABLE jobline.attempts SET (autovacuum_vacuum_scale_factor = 0.01, autovacuum_vacuum_threshold = 1000,
                                  autovacuum_vacuum_insert_scale_factor = 0.05,
                                  autovacuum_analyze_scale_factor = 0.02, autovacuum_vacuum_cost_limit = 2000);

-- When the upkeep last ran: one process claims each round by moving ran_at (upkeep_claim.sql), a
-- row rather than an advisory lock so that it also works through transaction-mode poolers.
CREATE TABLE jobline.upkeep (
  one     boolean     PRIMARY KEY DEFAULT true CHECK (one),
  ran_at  timestamptz NOT NULL DEFAULT '-infinity'
);
INSERT INTO jobline.upkeep DEFAULT VALUES;
