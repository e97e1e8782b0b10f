-- 0019_flow_control: concurrency and rate limits, enforced by the claim across every worker
-- process on every machine (issue 11, section 4; docs/concepts/flow-control.md).
--
-- A limit is a row of jobline.limits: for the jobs of one function or of one queue (optionally
-- separately for each concurrency_key), at most `concurrency` running at once and/or at most
-- `rate_count` starts within any `rate_seconds` window. Jobs over a limit stay pending, spend
-- no attempt, and are claimed as soon as a slot or the window frees.
--
-- Why this is correct under concurrent claimers (READ COMMITTED):
-- A statement's snapshot is taken when the statement starts. Had the claim counted running jobs
-- and claimed in one statement, two claimers could both count N-1 running and both admit the
-- last slot: each sees the other's claim only after it commits, and SKIP LOCKED means neither
-- ever waits for the other. So a claim of jobs under a limit takes two statements in one
-- transaction:
--   1. jobline.limits_take() takes pg_advisory_xact_lock on every limit that can apply to the
--      jobs this claimer may take (in id order, so two claimers never deadlock). Every claimer
--      that can take a job under limit L takes L's lock: a function limit's lock is taken by
--      every claim whose functions include it, a queue limit's by every claim that may take jobs
--      of that queue (queues NULL or naming it), and the remote claim takes the locks of every
--      function limit in its task types (all of them without task types) and every queue limit.
--   2. The claim itself, in a later statement (a VOLATILE function gives each statement a fresh
--      snapshot), counts running jobs and recent starts and claims within what is left.
-- A claimer that waited for the lock starts its counting statement after the previous holder
-- committed, and a commit is visible before its locks are released (CommitTransaction ends the
-- transaction in the proc array before releasing locks), so it counts every job the previous
-- holder admitted. What else can change the counts between the two statements only lowers them
-- (a job finishing, a lease being rescued), which can make a claim admit fewer than it could,
-- never more. The operator's `jobline jobs run ID` (job_claim_one) is a manual override and
-- does not count against limits. The claim refuses a REPEATABLE READ or SERIALIZABLE caller on
-- the limited path, whose single snapshot would make the count stale.
--
-- Rate limits are a sliding log: every start under a rate limit is a row of limit_starts, so
-- "at most N starts in any window of P seconds" holds exactly (a fixed window lets 2N through
-- around its edge). Starts are stamped with clock_timestamp() taken after the lock, so the
-- serialised claimers stamp in commit order; admitting only while fewer than N starts lie in
-- (t - P, t] at each start t bounds every window: for a window (a - P, a], its latest start s
-- saw every earlier start of the window in (s - P, s]. maintenance prunes starts older than
-- their limit's window.
--
-- What it costs: claims whose functions and queues have no limit keep 0018's statement and plan
-- (jobline.claim_jobs_free, walked in jobs_due_idx order), after one lookup in jobline.limits,
-- a table of a few rows. Limited claims serialise on their limits' locks (each holds it for one
-- claim, about a millisecond) and scan up to 2 x lim candidates, skipping (limit, key) pairs that
-- are full, locking only the ones they claim. bench/flow.py measures both (bench/README.md, "Flow control").

ALTER TABLE jobline.jobs ADD COLUMN concurrency_key text;

-- A key is shared by every owner's jobs (a per-key limit counts them together), so only the
-- operator sets one: a plain role that could name a key could hold another role's slot. As in
-- 0012, plus that rule.
DROP POLICY jobs_own_insert ON jobline.jobs;
CREATE POLICY jobs_own_insert ON jobline.jobs FOR INSERT
  WITH CHECK (username = current_user AND function IN ('sql', 'http') AND owner IS NULL AND depends_on IS NULL
              AND status = 'pending' AND attempts = 0 AND deps_remaining = 0 AND worker_id IS NULL
              AND lease_until IS NULL AND started_at IS NULL AND finished_at IS NULL AND result IS NULL
              AND last_error IS NULL AND archived_at IS NULL AND concurrency_key IS NULL
              AND (parent_id IS NULL OR jobline.job_acts_for(parent_id, current_user)));

CREATE TABLE jobline.limits (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  scope         text        NOT NULL CHECK (scope IN ('function', 'queue')),
  target        text        NOT NULL CHECK (jobline.is_valid_name(target, 200)),
  per_key       boolean     NOT NULL DEFAULT false,
  concurrency   integer     CHECK (concurrency BETWEEN 1 AND 100000),
  rate_count    integer     CHECK (rate_count BETWEEN 1 AND 1000000),
  rate_seconds  double precision CHECK (rate_seconds BETWEEN 0.001 AND 86400),
  -- code: declared in an App, reconciled when a worker or `jobline serve` starts;
  -- runtime: set by an operator (CLI, HTTP), never touched by reconciliation.
  source        text        NOT NULL DEFAULT 'runtime' CHECK (source IN ('code', 'runtime')),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (scope, target, per_key),
  CHECK (concurrency IS NOT NULL OR rate_count IS NOT NULL),
  CHECK ((rate_count IS NULL) = (rate_seconds IS NULL)),
  CHECK (scope <> 'queue' OR length(target) <= 100)
);

-- The sliding log of starts under rate limits. No foreign key: an operator removing a limit
-- must not make a claim in flight fail; maintenance prunes the rows of removed limits.
CREATE TABLE jobline.limit_starts (
  limit_id    bigint      NOT NULL,
  key         text,
  started_at  timestamptz NOT NULL
);
CREATE INDEX limit_starts_window_idx ON jobline.limit_starts (limit_id, started_at);

-- limits_take: the ids of the limits that can apply to a claim of `functions` (NULL: any
-- function, as the remote claim without task types) from `queues` (NULL: any queue), locked for
-- the rest of the transaction (see the top of this file); NULL when none applies.
CREATE FUNCTION jobline.limits_take(functions text[], queues text[]) RETURNS bigint[]
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  ids bigint[];
  one bigint;
BEGIN
  ids := ARRAY(SELECT l.id FROM jobline.limits l
               WHERE CASE l.scope WHEN 'function' THEN functions IS NULL OR l.target = ANY(functions)
                                  ELSE queues IS NULL OR l.target = ANY(queues) END
               ORDER BY l.id);
  IF cardinality(ids) = 0 THEN
    RETURN NULL;
  END IF;
  IF current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'jobline: a claim under flow-control limits must run in READ COMMITTED, not %',
      current_setting('transaction_isolation') USING ERRCODE = '25000';
  END IF;
  FOREACH one IN ARRAY ids LOOP  -- in id order: two claimers never wait for each other in a cycle
    PERFORM pg_advisory_xact_lock(1785950019, (one % 2147483647)::integer);
  END LOOP;
  RETURN ids;
END $$;

-- limit_room: for each (limit, key) of `limit_ids` with jobs running or starts in its window at
-- `at`, how many more jobs it admits now (room, <= 0 when full) and, when its rate is used up,
-- when its window next frees a start. A (limit, key) not listed has its whole capacity.
-- Running jobs are read through jobs_lease_idx (status = 'running'), starts through
-- limit_starts_window_idx.
CREATE FUNCTION jobline.limit_room(limit_ids bigint[], at timestamptz)
RETURNS TABLE (limit_id bigint, key text, room bigint, opens_at timestamptz)
LANGUAGE sql STABLE AS $$
  WITH lm AS MATERIALIZED (
    SELECT l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count, l.rate_seconds
    FROM jobline.limits l WHERE l.id = ANY(limit_ids)
  ), used AS (
    SELECT lm.id, CASE WHEN lm.per_key THEN r.concurrency_key END AS key, count(*) AS running, 0 AS started,
           NULL::timestamptz AS oldest
    FROM lm JOIN jobline.jobs r
      ON r.status = 'running' AND (CASE lm.scope WHEN 'function' THEN r.function ELSE r.queue END) = lm.target
    WHERE lm.concurrency IS NOT NULL
    GROUP BY 1, 2
    UNION ALL
    SELECT lm.id, s.key, 0, count(*), min(s.started_at)
    FROM lm JOIN jobline.limit_starts s
      ON s.limit_id = lm.id AND s.started_at > at - make_interval(secs => lm.rate_seconds)
    WHERE lm.rate_count IS NOT NULL
    GROUP BY 1, 2
  )
  SELECT lm.id, u.key,
         least(lm.concurrency - sum(u.running), lm.rate_count - sum(u.started))::bigint,
         CASE WHEN lm.rate_count <= sum(u.started) THEN max(u.oldest) + make_interval(secs => lm.rate_seconds) END
  FROM used u JOIN lm ON lm.id = u.id
  GROUP BY lm.id, u.key, lm.concurrency, lm.rate_count, lm.rate_seconds
$$;

-- limits_admit: the rule itself, shared by the in-process and the remote claim. Of the
-- candidates (pending jobs in claim order: their ids, functions, queues and concurrency keys),
-- the first `lim` that every applicable limit admits: a job is refused when, among the
-- candidates of one (limit, key), its rank exceeds the room left. Ranks count candidates another
-- limit refuses too, so overlapping limits can admit fewer than they might in one claim, never
-- more. The room is limit_room's as the caller read it after taking the limits' locks
-- (room_limits, room_keys, room_left: one element per (limit, key) in use, keys coalesced to '';
-- any other pair has its whole capacity). It is passed in because the caller needs it first, to
-- skip full pairs while scanning, and counting twice cost a third of a limited claim. Records
-- the admitted jobs' starts under rate limits at `at`; the caller claims the ids returned, in
-- their order (one it finds taken meanwhile was of no limit's, or its start is logged for
-- nothing: the log errs on the safe side). Keys are compared as coalesce(key, '') so the joins
-- hash (a key is never '' through jobline; one inserted by hand shares NULL's bucket).
CREATE FUNCTION jobline.limits_admit(ids bigint[], functions text[], queues text[], keys text[], lim integer,
                                     limit_ids bigint[], at timestamptz, room_limits bigint[], room_keys text[],
                                     room_left bigint[])
-- Hash joins: the planner takes the CTEs for one row each and would compare every candidate with
-- every (limit, key) in use (a million comparisons for 1,000 keys).
RETURNS bigint[] LANGUAGE sql VOLATILE SET enable_nestloop = off AS $$
  WITH lm AS MATERIALIZED (
    SELECT l.id, l.scope, l.target, l.per_key, l.concurrency, l.rate_count
    FROM jobline.limits l WHERE l.id = ANY(limit_ids)
  ), c AS MATERIALIZED (
    SELECT * FROM unnest(ids, functions, queues, keys) WITH ORDINALITY AS c(id, function, queue, key, ord)
  ), applies AS MATERIALIZED (
    SELECT c.id, c.ord, lm.id AS limit_id, CASE WHEN lm.per_key THEN coalesce(c.key, '') ELSE '' END AS key,
           least(lm.concurrency, lm.rate_count) AS capacity, lm.rate_count IS NOT NULL AS rated
    FROM c JOIN lm ON lm.target = CASE lm.scope WHEN 'function' THEN c.function ELSE c.queue END
  ), room AS MATERIALIZED (
    SELECT * FROM unnest(room_limits, room_keys, room_left) AS r(limit_id, key, room)
  ), refused AS (
    SELECT a.id FROM (
      SELECT applies.*, row_number() OVER (PARTITION BY applies.limit_id, applies.key ORDER BY applies.ord) AS rank
      FROM applies) a
    LEFT JOIN room r ON r.limit_id = a.limit_id AND r.key = a.key
    WHERE a.rank > coalesce(r.room, a.capacity)
  ), admitted AS (
    SELECT c.id, c.ord FROM c WHERE NOT EXISTS (SELECT 1 FROM refused WHERE refused.id = c.id) ORDER BY c.ord LIMIT lim
  ), logged AS (
    INSERT INTO jobline.limit_starts (limit_id, key, started_at)
    SELECT a.limit_id, CASE WHEN lm.per_key THEN c.key END, at
    FROM applies a JOIN admitted USING (id) JOIN c USING (id) JOIN lm ON lm.id = a.limit_id WHERE a.rated
  )
  SELECT ARRAY(SELECT admitted.id FROM admitted ORDER BY admitted.ord)
$$;

-- limits_wait: for a claimer of `functions` in `queues` whose claim came back short, the seconds
-- until a job held back by a full limit may be admitted: until the earliest window of a used-up
-- rate frees a start, or 'Infinity' when only concurrency is full (a job must finish first).
-- NULL when no limit in its scope is full: the claim was short for want of due jobs.
CREATE FUNCTION jobline.limits_wait(functions text[], queues text[]) RETURNS double precision
LANGUAGE plpgsql STABLE AS $$
-- PL/pgSQL, not SQL: it asks after every short claim, and most workers have no limit at all. Its
-- plans are kept for the session, and without a limit in scope it stops at one lookup (as a SQL
-- function it planned limit_room on every call: 0.7 ms per call against 0.14 ms for SELECT 1).
DECLARE
  ids bigint[];
BEGIN
  ids := ARRAY(SELECT l.id FROM jobline.limits l
               WHERE CASE l.scope WHEN 'function' THEN functions IS NULL OR l.target = ANY(functions)
                                  ELSE queues IS NULL OR l.target = ANY(queues) END);
  IF cardinality(ids) = 0 THEN
    RETURN NULL;
  END IF;
  RETURN (SELECT CASE WHEN count(*) = 0 THEN NULL
                      WHEN min(r.opens_at) IS NULL THEN 'Infinity'::double precision
                      ELSE greatest(0, extract(epoch FROM min(r.opens_at) - clock_timestamp()))::double precision END
          FROM jobline.limit_room(ids, clock_timestamp()) r
          WHERE r.room <= 0);
END $$;

-- claim_jobs_free: 0018's claim_jobs unchanged, for claims no limit applies to (the fast path).
CREATE FUNCTION jobline.claim_jobs_free(worker text, functions text[], queues text[], lim integer,
                                        lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
  WITH due AS (
    SELECT j.id FROM jobline.jobs j
    WHERE j.status = 'pending'
      AND j.run_at <= now()
      AND j.function = ANY(functions)
      AND (queues IS NULL OR j.queue = ANY(queues))
      AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
           OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT lim
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running',
        attempts = j.attempts + 1,
        worker_id = worker,
        lease_until = now() + make_interval(secs => lease_seconds),
        started_at = now()
    WHERE j.id = ANY(ARRAY(SELECT due.id FROM due))
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
              j.priority, j.run_at
  )
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;

-- claim_jobs_limited: the claim under limits `limit_ids` (already locked by limits_take) at
-- `at`. The same walk of jobs_due_idx as claim_jobs_free, skipping the jobs of full (limit,
-- key) pairs (hashed: whole limits by target, per-key ones by target and key),
-- over up to 2 x lim candidates, of which limits_admit picks the ones to claim. Only those are
-- locked (SKIP LOCKED, re-checking that they are still pending): locking every candidate made
-- a claim of 500 lock 2,000 rows. No other claimer can take a job under these limits meanwhile
-- (it would need their locks); one of no limit's may be taken, and is skipped. Started and
-- leased from `at`, the time the starts are logged with.
CREATE FUNCTION jobline.claim_jobs_limited(worker text, functions text[], queues text[], lim integer,
                                           lease_seconds double precision, limit_ids bigint[], at timestamptz)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb)
LANGUAGE sql SET enable_sort = off SET enable_bitmapscan = off SET enable_seqscan = off SET jit = off AS $$
  WITH room AS MATERIALIZED (
    SELECT r.limit_id, coalesce(r.key, '') AS key, r.room, l.scope, l.target, NOT l.per_key AS whole
    FROM jobline.limit_room(limit_ids, at) r JOIN jobline.limits l ON l.id = r.limit_id
  ), full_ AS MATERIALIZED (
    SELECT * FROM room WHERE room.room <= 0
  ), due AS MATERIALIZED (
    SELECT j.id, j.function, j.queue, j.concurrency_key, j.priority, j.run_at FROM jobline.jobs j
    WHERE j.status = 'pending'
      AND j.run_at <= at
      AND j.function = ANY(functions)
      AND (queues IS NULL OR j.queue = ANY(queues))
      AND (j.queue <> ALL(ARRAY(SELECT p.queue FROM jobline.queue_pauses p))
           OR (j.id, j.attempts) IN (SELECT e.job_id, e.attempts FROM jobline.queue_pause_exemptions e))
      -- NOT IN over non-null values: hashed subplans, however many pairs are full.
      AND j.function NOT IN (SELECT f.target FROM full_ f WHERE f.whole AND f.scope = 'function')
      AND j.queue NOT IN (SELECT f.target FROM full_ f WHERE f.whole AND f.scope = 'queue')
      AND (j.function, coalesce(j.concurrency_key, '')) NOT IN (
            SELECT f.target, f.key FROM full_ f WHERE NOT f.whole AND f.scope = 'function')
      AND (j.queue, coalesce(j.concurrency_key, '')) NOT IN (
            SELECT f.target, f.key FROM full_ f WHERE NOT f.whole AND f.scope = 'queue')
    ORDER BY j.priority DESC, j.run_at, j.id
    LIMIT lim::bigint * 2
  ), admitted AS (
    -- The candidates' arrays in claim order: aggregated from the sorted rows (one sort, not one
    -- per array).
    SELECT jobline.limits_admit(d.due_ids, d.due_functions, d.due_queues, d.due_keys, lim, limit_ids, at,
                                ARRAY(SELECT room.limit_id FROM room), ARRAY(SELECT room.key FROM room),
                                ARRAY(SELECT room.room FROM room)) AS ids
    FROM (SELECT array_agg(o.id) AS due_ids, array_agg(o.function) AS due_functions,
                 array_agg(o.queue) AS due_queues, array_agg(o.concurrency_key) AS due_keys
          FROM (SELECT * FROM due ORDER BY due.priority DESC, due.run_at, due.id) o) d
  ), locked AS (
    -- The status is read from the row as locked (its latest version), not filtered in the scan:
    -- a filter on status would make the planner walk the partial jobs_due_idx for these ids.
    SELECT j.id, j.status FROM jobline.jobs j
    WHERE j.id = ANY((SELECT admitted.ids FROM admitted)::bigint[])
    FOR UPDATE SKIP LOCKED
  ), claimed AS (
    UPDATE jobline.jobs j
    SET status = 'running',
        attempts = j.attempts + 1,
        worker_id = worker,
        lease_until = at + make_interval(secs => lease_seconds),
        started_at = at
    WHERE j.id = ANY(ARRAY(SELECT locked.id FROM locked WHERE locked.status = 'pending'))
    RETURNING j.id, j.function, j.payload, j.attempts, j.max_attempts, j.queue, j.owner, j.trace_context,
              j.priority, j.run_at
  )
  SELECT c.id, c.function, c.payload, c.attempts, c.max_attempts, c.queue, c.owner, c.trace_context
  FROM claimed c ORDER BY c.priority DESC, c.run_at, c.id
$$;

-- claim_jobs: as in 0018 (same arguments, same rows), now in two statements when a limit
-- applies: limits_take locks the limits, then claim_jobs_limited counts and claims with a
-- snapshot taken after the lock. Without a limit, claim_jobs_free runs as before.
CREATE OR REPLACE FUNCTION jobline.claim_jobs(worker text, functions text[], queues text[], lim integer,
                                              lease_seconds double precision)
RETURNS TABLE (id bigint, function text, payload jsonb, attempts integer, max_attempts integer,
               queue text, owner text, trace_context jsonb)
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
  limit_ids bigint[];
BEGIN
  limit_ids := jobline.limits_take(functions, queues);
  IF limit_ids IS NULL THEN
    RETURN QUERY SELECT * FROM jobline.claim_jobs_free(worker, functions, queues, lim, lease_seconds);
  ELSE
    RETURN QUERY SELECT * FROM jobline.claim_jobs_limited(worker, functions, queues, lim, lease_seconds,
                                                          limit_ids, clock_timestamp());
  END IF;
END $$;

-- A job's concurrency key from SQL: jobline.enqueue() of 0012 with one more defaulted argument
-- (existing calls, positional or named, keep working). Dropped and created again, since a new
-- argument makes a new function; the body is 0012's plus the key's check and column (which only
-- the operator may set, as the policy above says).
DROP FUNCTION jobline.enqueue(text, jsonb, timestamptz, text, integer, text, integer, bigint[], text, text);

CREATE FUNCTION jobline.enqueue(
  function_name   text,
  payload         jsonb       DEFAULT '{}',
  run_at          timestamptz DEFAULT now(),
  queue           text        DEFAULT 'default',
  priority        integer     DEFAULT 0,
  owner           text        DEFAULT NULL,
  max_attempts    integer     DEFAULT 3,
  depends_on      bigint[]    DEFAULT NULL,
  unique_key      text        DEFAULT NULL,
  username        text        DEFAULT NULL,
  concurrency_key text        DEFAULT NULL
) RETURNS bigint LANGUAGE plpgsql AS $$
#variable_conflict use_column
DECLARE
  dep_statuses text[];
  missing bigint[];
  remaining integer := 0;
  new_status text := 'pending';
  job_id bigint;
  acting text := coalesce(enqueue.username, current_user);
  running_job text := current_setting('jobline.parent_job', true);
  parent bigint;
BEGIN
  IF NOT jobline.is_valid_name(enqueue.function_name, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: function_name % is not a valid name', quote_nullable(enqueue.function_name)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  -- The policies on jobline.jobs hold this rule; here it is said in words. Who may UPDATE
  -- jobline.jobs (the operator) is the cheapest question that tells the operator from a plain
  -- role, and only what a plain role may not do asks it: the operator's enqueue stays as fast.
  IF (acting <> current_user OR enqueue.owner IS NOT NULL OR enqueue.depends_on IS NOT NULL
      OR enqueue.concurrency_key IS NOT NULL OR enqueue.function_name NOT IN ('sql', 'http'))
     AND NOT has_table_privilege('jobline.jobs', 'UPDATE') THEN
    RAISE EXCEPTION 'jobline.enqueue: role % may queue only its own sql and http jobs, without owner, depends_on or concurrency_key',
      quote_ident(current_user)
      USING ERRCODE = '42501',
            HINT = 'jobline''s operator (a superuser or the owner of schema jobline) may queue any function, for any role';
  END IF;
  IF enqueue.payload IS NULL OR jsonb_typeof(enqueue.payload) <> 'object' THEN
    RAISE EXCEPTION 'jobline.enqueue: payload must be a JSON object'
      USING ERRCODE = '22023';
  END IF;
  IF octet_length(enqueue.payload::text) > 1048576 THEN
    RAISE EXCEPTION 'jobline.enqueue: payload is larger than 1 MiB' USING ERRCODE = '22023';
  END IF;
  IF enqueue.owner IS NOT NULL AND NOT jobline.is_valid_name(enqueue.owner, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: owner % is not a valid name', quote_literal(enqueue.owner) USING ERRCODE = '22023';
  END IF;
  IF enqueue.unique_key IS NOT NULL AND NOT jobline.is_valid_name(enqueue.unique_key, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: unique_key % is not a valid name', quote_literal(enqueue.unique_key) USING ERRCODE = '22023';
  END IF;
  IF enqueue.concurrency_key IS NOT NULL AND NOT jobline.is_valid_name(enqueue.concurrency_key, 200) THEN
    RAISE EXCEPTION 'jobline.enqueue: concurrency_key % is not a valid name', quote_literal(enqueue.concurrency_key)
      USING ERRCODE = '22023', HINT = '1 to 200 characters, no control characters, no surrounding spaces';
  END IF;
  IF NOT jobline.is_valid_name(enqueue.queue, 100) THEN
    RAISE EXCEPTION 'jobline.enqueue: queue % is not a valid name', quote_nullable(enqueue.queue) USING ERRCODE = '22023';
  END IF;
  IF enqueue.priority IS NULL OR enqueue.priority NOT BETWEEN -1000 AND 1000 THEN
    RAISE EXCEPTION 'jobline.enqueue: priority must be between -1000 and 1000, got %', enqueue.priority USING ERRCODE = '22023';
  END IF;
  IF enqueue.max_attempts IS NULL OR enqueue.max_attempts NOT BETWEEN 1 AND 1000 THEN
    RAISE EXCEPTION 'jobline.enqueue: max_attempts must be between 1 and 1000, got %', enqueue.max_attempts USING ERRCODE = '22023';
  END IF;
  IF enqueue.depends_on IS NOT NULL AND cardinality(enqueue.depends_on) > 0 THEN
    -- FOR SHARE waits for a dependency that is finishing right now, so its completion either
    -- happened before (we see the final status) or will release this row after we commit.
    SELECT array_agg(d.status) INTO dep_statuses
      FROM (SELECT j.status FROM jobline.jobs j WHERE j.id = ANY(enqueue.depends_on) FOR SHARE) d;
    missing := array(SELECT unnest(enqueue.depends_on)
                     EXCEPT SELECT j.id FROM jobline.jobs j WHERE j.id = ANY(enqueue.depends_on));
    IF cardinality(missing) > 0 THEN
      RAISE EXCEPTION 'jobline.enqueue: depends_on names jobs that do not exist: %', missing USING ERRCODE = '23503';
    END IF;
    depends_on := array(SELECT DISTINCT unnest(enqueue.depends_on) ORDER BY 1);
    remaining := cardinality(array_remove(dep_statuses, 'succeeded'));
    IF dep_statuses && ARRAY['failed', 'cancelled'] THEN
      new_status := 'cancelled';
    ELSIF remaining > 0 THEN
      new_status := 'waiting';
    END IF;
  ELSE
    depends_on := NULL;
  END IF;
  -- Queued by the command of a running `sql` job (Store.sql_run names it): its child, if it acts
  -- for the same role (a job queued before roles were recorded: for the operator). A plain role
  -- sees only its own jobs here.
  IF running_job ~ '^[0-9]{1,18}$' THEN
    SELECT j.id INTO parent FROM jobline.jobs j
     WHERE j.id = running_job::bigint AND j.status = 'running' AND coalesce(j.username, acting) = acting;
  END IF;

  INSERT INTO jobline.jobs AS j (function, payload, run_at, queue, priority, owner, max_attempts,
                                 depends_on, deps_remaining, unique_key, status, finished_at, last_error,
                                 username, parent_id, concurrency_key)
  VALUES (enqueue.function_name, enqueue.payload, coalesce(enqueue.run_at, now()), enqueue.queue,
          enqueue.priority, enqueue.owner, enqueue.max_attempts,
          enqueue.depends_on, remaining, enqueue.unique_key, new_status,
          CASE WHEN new_status = 'cancelled' THEN now() END,
          CASE WHEN new_status = 'cancelled' THEN 'a job it depends on failed or was cancelled' END,
          acting, parent, enqueue.concurrency_key)
  ON CONFLICT (function, coalesce(owner, ''), unique_key)
    WHERE unique_key IS NOT NULL AND status IN ('waiting', 'pending', 'running')
    DO NOTHING
  RETURNING j.id INTO job_id;

  IF job_id IS NULL THEN
    SELECT j.id INTO job_id FROM jobline.jobs j
     WHERE j.function = enqueue.function_name AND coalesce(j.owner, '') = coalesce(enqueue.owner, '')
       AND j.unique_key = enqueue.unique_key AND j.status IN ('waiting', 'pending', 'running');
  END IF;
  RETURN job_id;
END $$;

-- Internal to workers and the API, as claim_jobs is (0011).
REVOKE ALL ON FUNCTION jobline.claim_jobs_free(text, text[], text[], integer, double precision) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.claim_jobs_limited(text, text[], text[], integer, double precision, bigint[], timestamptz)
  FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.limits_take(text[], text[]) FROM PUBLIC;
REVOKE ALL ON FUNCTION jobline.limits_admit(bigint[], text[], text[], text[], integer, bigint[], timestamptz, bigint[],
                                           text[], bigint[]) FROM PUBLIC;
