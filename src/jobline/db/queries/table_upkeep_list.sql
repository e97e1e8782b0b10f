-- table_upkeep_list: jobline's busiest tables %(tables)s with their live and dead rows (the
-- cumulative statistics, a second or so behind) and whether autovacuum looks after them: on for
-- the server and not switched off for the table.
SELECT c.relname AS name, s.n_live_tup AS live, s.n_dead_tup AS dead,
       current_setting('autovacuum')::boolean
         -- off, false, no or 0, however the option was written
         AND coalesce((SELECT o.option_value::boolean FROM pg_options_to_table(c.reloptions) o
                        WHERE o.option_name = 'autovacuum_enabled'), true) AS autovacuum
FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname = 'jobline' AND s.relname = ANY(%(tables)s)
ORDER BY c.relname
