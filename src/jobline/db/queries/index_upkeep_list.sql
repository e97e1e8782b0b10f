-- index_upkeep_list: the B-tree indexes of jobline.jobs that hold only jobs of a live status
-- (their predicate is on status: jobs_due_idx, jobs_function_due_idx, jobs_lease_idx) with their
-- size and their entries as last counted by VACUUM or ANALYZE; and
-- the invalid indexes of jobline's tables that an interrupted REINDEX CONCURRENTLY leaves
-- behind (named *_ccnew or *_ccold), which cost every write until they are dropped; not while
-- an index of that table is being built (a rebuild in progress has such an index too).
SELECT i.relname AS name, pg_relation_size(i.oid) AS bytes, greatest(i.reltuples, 0)::bigint AS entries,
       NOT x.indisvalid AS leftover
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE n.nspname = 'jobline'
  -- Not a GIN index (whose reltuples counts rows, not entries) nor one that keeps history.
  AND ((t.relname = 'jobs' AND x.indisvalid AND i.relam = (SELECT oid FROM pg_am WHERE amname = 'btree')
        AND pg_get_expr(x.indpred, x.indrelid) ~ '^\(?status = ''(pending|running|waiting)''::text\)?$')
       OR (NOT x.indisvalid AND i.relname ~ '_cc(new|old)[0-9]*$'
           AND NOT EXISTS (SELECT FROM pg_stat_progress_create_index p WHERE p.relid = t.oid)))
ORDER BY i.relname
