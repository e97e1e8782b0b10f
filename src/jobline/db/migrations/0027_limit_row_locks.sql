-- 0027_limit_row_locks: a claim under flow-control limits serialises on the limits' own rows
-- (FOR NO KEY UPDATE) instead of advisory locks.
--
-- Any role that can connect may take any advisory lock, and the limits' keys were their small,
-- sequential ids: a plain role, or a user's `sql` job, holding pg_advisory_lock(1785950019, id)
-- stalled every claim of that limit's jobs for as long as it liked. Locking a row of
-- jobline.limits needs UPDATE on it, which only jobline's own role has. The argument of 0019
-- holds as it was: a claimer that waited for the row starts its counting statement after the
-- previous holder committed, and a commit is visible before its row locks are released. In id
-- order, as before, so two claimers never wait for each other in a cycle. `jobline limits set`
-- and `rm` wait for a claim in progress (a millisecond), and it for them. Also through
-- transaction-mode poolers, as the upkeep round's row (0022).
CREATE OR REPLACE FUNCTION jobline.limits_take(functions text[], queues text[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ids bigint[];
BEGIN
  ids := ARRAY(SELECT l.id FROM jobline.limits l
               WHERE CASE l.scope WHEN 'function' THEN functions IS NULL OR l.target = ANY(functions)
                                  ELSE queues IS NULL OR l.target = ANY(queues) END
               ORDER BY l.id);
  IF cardinality(ids) = 0 THEN
    RETURN NULL;  -- no lock at all: the claims of unlimited functions stay as they were
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'jobline: a claim under flow-control limits must run in READ COMMITTED, not %',
      current_setting('transaction_isolation') USING ERRCODE = '25000';
  END IF;
  -- Rows are locked in the order the sort returns them. A limit removed meanwhile is not locked,
  -- and the claim's count (limit_room) no longer sees it either.
  PERFORM 1 FROM jobline.limits l WHERE l.id = ANY(ids) ORDER BY l.id FOR NO KEY UPDATE;
  RETURN ids;
END $$;
