"""The SQL statements, one case each, with states set up by inserting rows."""

from __future__ import annotations

import re
import time

import psycopg
import pytest

from jobline.db import migrate
from jobline.db import queries as q
from jobline.db.store import Store
from jobline.errors import DatabaseError
from jobline.retry import retries
from role_support import roles_of


@pytest.fixture
async def bookkeeping(db_url):
    store = Store(db_url)
    await store.open()
    yield store
    await store.close()


def insert(sql, **columns) -> int:
    columns = {"function": "f", **columns}
    names = ", ".join(columns)
    marks = ", ".join(f"%({k})s" for k in columns)
    return sql(f"INSERT INTO jobline.jobs ({names}) VALUES ({marks}) RETURNING id", columns)[0][0]


def outcome(job_id, attempt, status="succeeded", outcome_="succeeded", error=None, result=None, retry_in=None):
    now = time.time()
    return {"ids": [job_id], "attempts": [attempt], "statuses": [status], "retry_in": [retry_in],
            "results": [result], "errors": [error], "tracebacks": [None], "outcomes": [outcome_], "started_at": [now], "finished_at": [now]}


async def test_job_claim_many_takes_priority_then_run_at_then_id(bookkeeping, sql):
    low = insert(sql, priority=0)
    high = insert(sql, priority=5)
    older = insert(sql, priority=0, run_at="2020-01-01T00:00:00Z")
    insert(sql, run_at="2999-01-01T00:00:00Z")           # not due
    insert(sql, function="other")                          # not ours
    insert(sql, queue="elsewhere")                         # not our queue
    rows = await bookkeeping.job_claim_many(worker_id="w", functions=["f"], queues=["default"], limit=10,
                                            lease_seconds=30)
    assert [r[0] for r in rows] == [high, older, low]
    state = sql("SELECT status, attempts, worker_id, lease_until > now() + interval '25 s' FROM jobline.jobs "
                "WHERE id = %s", [high])
    assert state == [("running", 1, "w", True)]


async def test_job_complete_many_ignores_a_stale_or_foreign_report(bookkeeping, sql):
    job_id = insert(sql, status="running", attempts=2, worker_id="w", lease_until="2999-01-01T00:00:00Z")
    assert await bookkeeping.job_complete_many("other-worker", outcome(job_id, 2)) == []
    assert await bookkeeping.job_complete_many("w", outcome(job_id, 1)) == []
    assert sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id]) == [("running",)]
    assert sql("SELECT count(*) FROM jobline.attempts") == [(0,)]
    assert await bookkeeping.job_complete_many("w", outcome(job_id, 2, result='{"ok": 1}')) == [(job_id, "succeeded")]
    assert sql("SELECT status, result, worker_id FROM jobline.jobs WHERE id = %s", [job_id]) == [
        ("succeeded", {"ok": 1}, None)]
    assert sql("SELECT attempt, worker_id, outcome FROM jobline.attempts") == [(2, "w", "succeeded")]


async def test_job_complete_many_releases_a_dependant_only_when_all_dependencies_succeed(bookkeeping, sql):
    a = insert(sql, status="running", attempts=1, worker_id="w")
    b = insert(sql, status="running", attempts=1, worker_id="w")
    waiting = insert(sql, status="waiting", depends_on=[a, b], deps_remaining=2)
    await bookkeeping.job_complete_many("w", outcome(a, 1))
    assert sql("SELECT status, deps_remaining FROM jobline.jobs WHERE id = %s", [waiting]) == [("waiting", 1)]
    await bookkeeping.job_complete_many("w", outcome(b, 1))
    assert sql("SELECT status, deps_remaining FROM jobline.jobs WHERE id = %s", [waiting]) == [("pending", 0)]


async def test_job_rescue_expired_retries_or_fails_and_spares_live_leases(bookkeeping, sql):
    retry = insert(sql, status="running", attempts=1, max_attempts=3, worker_id="dead",
                   lease_until="2000-01-01T00:00:00Z", started_at="2000-01-01T00:00:00Z")
    exhausted = insert(sql, status="running", attempts=3, max_attempts=3, worker_id="dead",
                       lease_until="2000-01-01T00:00:00Z", started_at="2000-01-01T00:00:00Z")
    dependant = insert(sql, status="waiting", depends_on=[exhausted], deps_remaining=1)
    decoy = insert(sql, status="running", attempts=1, worker_id="alive", lease_until="2999-01-01T00:00:00Z")
    rescued = await bookkeeping.job_rescue_expired()
    assert sorted(rescued) == [(retry, "pending", "f", "default"), (exhausted, "failed", "f", "default")]
    assert sql("SELECT status FROM jobline.jobs WHERE id IN (%s, %s) ORDER BY id", [decoy, dependant]) == [
        ("cancelled",), ("running",)]
    assert sql("SELECT job_id, outcome FROM jobline.attempts ORDER BY job_id") == [(retry, "lost"), (exhausted, "lost")]


async def test_the_rescue_retries_exactly_when_retry_retries_says_so(bookkeeping, sql):
    cases = [(attempts, most) for most in (1, 2, 3, 5) for attempts in range(1, most + 1)]
    ids = {insert(sql, status="running", attempts=attempts, max_attempts=most, worker_id="dead",
                  lease_until="2000-01-01T00:00:00Z", started_at="2000-01-01T00:00:00Z"): (attempts, most)
           for attempts, most in cases}
    rescued = {row[0]: row[1] for row in await bookkeeping.job_rescue_expired()}
    assert {job_id: status == "pending" for job_id, status in rescued.items()} == {
        job_id: retries(attempts, most) for job_id, (attempts, most) in ids.items()}


async def test_job_prune_finished_respects_retention_per_state(bookkeeping, sql):
    old = "2000-01-01T00:00:00Z"
    ok_old = insert(sql, status="succeeded", finished_at=old)
    failed_old = insert(sql, status="failed", finished_at=old)
    insert(sql, status="succeeded")
    insert(sql, status="pending")
    insert(sql, status="running", finished_at=old)
    sql("INSERT INTO jobline.attempts VALUES (%s, 1, 'w', now(), now(), 'succeeded', NULL)", [ok_old])
    day = 86400
    deleted = await bookkeeping.job_prune_finished(succeeded_seconds=day, failed_seconds=1e10,
                                                   cancelled_seconds=day)
    assert deleted == 1
    remaining = {i for (i,) in sql("SELECT id FROM jobline.jobs")}
    assert ok_old not in remaining and failed_old in remaining and len(remaining) == 4
    assert sql("SELECT count(*) FROM jobline.attempts") == [(0,)]


def test_sql_enqueue_with_every_option_and_its_errors(sql):
    dep = sql("SELECT jobline.enqueue('first')")[0][0]
    job_id = sql("""SELECT jobline.enqueue('second', '{"a": 1}', now() + interval '1 hour', 'q', 7, 'owner-1', 9,
                    ARRAY[%s]::bigint[], 'key-1')""", [dep])[0][0]
    row = sql("SELECT function, payload, queue, priority, owner, max_attempts, depends_on, unique_key, status "
              "FROM jobline.jobs WHERE id = %s", [job_id])[0]
    assert row == ("second", {"a": 1}, "q", 7, "owner-1", 9, [dep], "key-1", "waiting")
    assert sql("SELECT jobline.enqueue('second', owner => 'owner-1', unique_key => 'key-1')") == [(job_id,)]
    for bad, message in [("SELECT jobline.enqueue('x', depends_on => ARRAY[424242]::bigint[])", "do not exist"),
                         ("SELECT jobline.enqueue('x', '[1]')", "JSON object"),
                         ("SELECT jobline.enqueue('x', priority => 99999)", "priority"),
                         ("SELECT jobline.enqueue(' padded')", "not a valid name"),
                         ("SELECT jobline.enqueue('x', max_attempts => 0)", "max_attempts")]:
        with pytest.raises(psycopg.Error, match=message):
            sql(bad)
    assert sql("SELECT count(*) FROM jobline.jobs") == [(2,)]


def test_seed_000_task_log_reads_pending_completed_failed(sql):
    ids = [sql("SELECT jobline.log_scheduled_task(%s)", [name])[0][0]
           for name in ("daily-token-reset", "batch-ai-processor", "streak-updater")]
    sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE id = %s", [ids[0]])
    sql("UPDATE jobline.jobs SET status = 'cancelled' WHERE id = %s", [ids[1]])
    assert sql("SELECT id, function_name, status FROM jobline.scheduled_tasks ORDER BY id") == [
        (ids[0], "daily-token-reset", "completed"), (ids[1], "batch-ai-processor", "failed"),
        (ids[2], "streak-updater", "pending")]


def test_writes_to_the_task_log_take_the_checks_of_every_enqueue(sql):
    [(task_id,)] = sql("INSERT INTO jobline.scheduled_tasks (function_name, scheduled_time) "
                       "VALUES ('streak-updater', '2030-01-01T03:00:00Z') RETURNING id")
    assert sql("SELECT function, status, run_at::text FROM jobline.jobs WHERE id = %s", [task_id]) == [
        ("streak-updater", "pending", "2030-01-01 03:00:00+00")]
    for bad, message in (("''", "function_name '' is not a valid name"),
                         ("E'two\\nlines'", "is not a valid name")):
        with pytest.raises(psycopg.errors.InvalidParameterValue, match=message):
            sql(f"INSERT INTO jobline.scheduled_tasks (function_name) VALUES ({bad})")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="a new task is pending"):
        sql("INSERT INTO jobline.scheduled_tasks (function_name, status) VALUES ('x', 'completed')")
    for write in ("UPDATE jobline.scheduled_tasks SET status = 'completed'", "DELETE FROM jobline.scheduled_tasks"):
        with pytest.raises(psycopg.errors.FeatureNotSupported, match="workers set a task's status"):
            sql(write)
    assert sql("SELECT count(*), min(status) FROM jobline.jobs") == [(1, "pending")]


def test_process_scheduled_tasks_counts_due_jobs_and_wakes_workers(db_url, sql):
    sql("SELECT jobline.log_scheduled_task('a')")
    sql("SELECT jobline.enqueue('b', run_at => now() + interval '1 day')")
    with psycopg.connect(db_url, autocommit=True) as listener:
        listener.execute("LISTEN jobline_jobs")
        assert sql("SELECT jobline.process_scheduled_tasks()") == [(1,)]
        assert len(list(listener.notifies(timeout=5, stop_after=1))) == 1


def test_migrate_twice_is_a_no_op_and_status_lists_every_migration(db_url):
    assert migrate.migrate(db_url) == []
    assert [(m.version, m.applied_at is not None) for m in migrate.status(db_url)] == [
        (m.version, True) for m in migrate.available()]


def test_every_query_file_prepares(db_url):
    with psycopg.connect(db_url) as conn:
        for index, (name, text) in enumerate(sorted(q.ALL.items())):
            if text.lstrip("- \n").startswith("COPY") or "\nCOPY" in text:
                continue
            if re.search(r"jobline\.\{\w+\}", text):  # a utility statement on a named relation (VACUUM,
                continue                                 # REINDEX): not preparable; tests/runtime/test_upkeep.py runs them
            numbers: dict[str, int] = {}
            body = re.sub(r"%\((\w+)\)[sb]", lambda m: f"${numbers.setdefault(m[1], len(numbers) + 1)}", text)
            body = body.replace("%%", "%")
            conn.execute(f"PREPARE p{index} AS {body}".encode())


def prepare_claim(conn: psycopg.Connection, function: str) -> list[str]:
    """Prepare, as `claim`, the statement that the PL/pgSQL claim function `function` returns
    (RETURN QUERY ...; 0024), with its arguments as parameters, under the function's own planner
    settings, which plan it generically (plan_cache_mode, 0024), as the server runs it. Returns
    those settings."""
    source, settings, names, types = conn.execute(
        "SELECT prosrc, proconfig, proargnames[1:pronargs], string_to_array(oidvectortypes(proargtypes), ', ') "
        "FROM pg_proc WHERE proname = %s", [function]).fetchone()
    body = re.search(r"RETURN QUERY\s+(.*);\s*END\s*$", source, re.S)[1]
    for number, name in enumerate(names, 1):
        body = re.sub(rf"\b{name}\b", f"${number}", body)
    for setting in settings:
        name, value = setting.split("=")
        conn.execute(f"SET {name} = {value}")
    conn.execute("SET plan_cache_mode = force_generic_plan")
    conn.execute(f"PREPARE claim({', '.join(types)}) AS {body}")
    return settings


def buffers_touched(ran: str) -> int:
    """The buffers the whole statement read or found (its plan's first Buffers line)."""
    first = next(line for line in ran.splitlines() if "Buffers:" in line)
    return sum(int(n) for n in re.findall(r"(?:hit|read)=(\d+)", first))


@pytest.mark.parametrize("statistics", ["stale", "fresh"])
def test_a_claim_reads_each_served_functions_range_and_updates_by_key_whatever_the_statistics(db_url, statistics):
    """jobline.claim_jobs as the server runs it: its body, prepared with its own settings and
    planned generically (a function's plan is cached after five calls), with statistics of an
    empty table or fresh ones (ANALYZE, as autovacuum runs it), over 40,000 pending jobs of two
    functions. A claim of one of them, or of functions with no pending job, reads what it
    claims, never the other function's backlog (0023)."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        if statistics == "stale":
            conn.execute("ANALYZE jobline.jobs")
        conn.execute("INSERT INTO jobline.jobs (function) SELECT f FROM generate_series(1, 20000), "
                     "unnest('{f,g}'::text[]) f")
        if statistics == "fresh":
            conn.execute("ANALYZE jobline.jobs")
        # Claims no flow-control limit applies to run claim_jobs_free (0019, 0023).
        settings = prepare_claim(conn, "claim_jobs_free")
        plan = "\n".join(r[0] for r in conn.execute("EXPLAIN EXECUTE claim('w', '{f}', NULL, 10, 30)"))
        runs = {}
        for functions in ("{f}", "{f,sql,http,pipeline}", "{h,sql,http}"):
            with conn.transaction(force_rollback=True):
                runs[functions] = "\n".join(r[0] for r in conn.execute(
                    f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) EXECUTE claim('w', '{functions}', NULL, 10, 30)"))
    assert "Index Scan using jobs_function_due_idx" in plan and "jobs_due_idx" not in plan, plan
    assert "Index Scan using jobs_pkey" in plan and "Index Cond: (id = ANY" in plan, plan
    assert not re.search(r"Hash Join|Merge Join|Seq Scan", plan), plan
    # enable_sort = off prices a sort at 1e10, over jit_above_cost: without jit = off, a server
    # built with LLVM would JIT-compile every claim (190 ms each on PostgreSQL 15 here).
    assert "jit=off" in settings and "plan_cache_mode=force_generic_plan" in settings
    # The sorts are of candidates (at most `lim` per function) and of the claimed rows, into
    # claim order, never of the pending ones.
    assert sorted(line.strip() for line in plan.splitlines() if "Sort Key" in line) == [
        "Sort Key: c.priority DESC, c.run_at, c.id", "Sort Key: d.priority DESC, d.run_at, d.id"], plan
    # What it costs: the rows claimed and their index entries, not the 40,000 pending, also when
    # the served functions include some with no pending job, or all do.
    for functions, ran in runs.items():
        assert buffers_touched(ran) < 500, (functions, ran)
    assert "rows=10 " in runs["{f}"] and "rows=10 " in runs["{f,sql,http,pipeline}"]


@pytest.mark.parametrize("statistics", ["stale", "fresh"])
def test_a_limited_claim_reads_each_served_functions_range_and_touches_only_what_it_scans(db_url, statistics):
    """jobline.claim_jobs_limited (0019, 0024), planned as the server runs it, over 40,000 pending
    jobs of a function under a per-key concurrency limit and of one without: it reads the served
    function's range of jobs_function_due_idx in claim order, skips the full keys, and reads a
    few candidates, neither the backlog nor the other function's jobs."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        if statistics == "stale":
            conn.execute("ANALYZE jobline.jobs")
        conn.execute("INSERT INTO jobline.jobs (function, concurrency_key) SELECT f, 'k' || (i % 50) "
                     "FROM generate_series(1, 20000) i, unnest('{f,g}'::text[]) f")
        (limit_id,) = conn.execute("INSERT INTO jobline.limits (scope, target, per_key, concurrency) "
                                   "VALUES ('function', 'f', true, 2) RETURNING id").fetchone()
        if statistics == "fresh":
            conn.execute("ANALYZE jobline.jobs")
        settings = prepare_claim(conn, "claim_jobs_limited")
        call = f"EXECUTE claim('w', '{{f}}', NULL, 10, 30, '{{{limit_id}}}', clock_timestamp())"
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {call}"))
        with conn.transaction(force_rollback=True):
            ran = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {call}"))
    assert "Index Scan using jobs_function_due_idx" in plan and "jobs_due_idx" not in plan, plan
    assert "Index Scan using jobs_pkey" in plan and "Index Cond: (id = ANY" in plan, plan
    # jobline.jobs is read through indexes only: the due walk, the claimed ids, the running jobs
    # (limit_room, inlined; its joins are of the few rows of limits and their usage).
    reads = re.findall(r"(\w[\w ]*?) on jobs \w+", plan)
    assert reads and set(reads) <= {"Index Scan using jobs_function_due_idx", "Index Scan using jobs_pkey",
                                    "Index Scan using jobs_lease_idx", "Update"}, plan
    assert "Seq Scan" not in plan and "jit=off" in settings
    # Ten claimed (two per key of the first five keys), from forty candidates, not 40,000.
    assert "rows=10 " in ran and buffers_touched(ran) < 1500, ran


@pytest.mark.parametrize("statistics", ["stale", "fresh"])
@pytest.mark.parametrize("function", ["claim_tasks", "claim_tasks_limited"])
def test_a_remote_claim_reads_only_claimable_functions_or_the_users_own_jobs(db_url, statistics, function):
    """The remote claims (0025), planned as the server runs them, over 20,000 pending jobs of a
    function in-process workers serve, ahead in claim order, and 20,000 of a remote task type of
    bob's: the service key's claim, with or without task types, reads the claimable function's
    range of jobs_function_due_idx and never the in-process backlog; alice's reads her own jobs
    through jobs_owner_due_idx, never bob's. Under a limit (claim_tasks_limited) as well."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        if statistics == "stale":
            conn.execute("ANALYZE jobline.jobs")
        conn.execute("INSERT INTO jobline.local_functions (function) VALUES ('inprocess')")
        conn.execute("INSERT INTO jobline.jobs (function, priority) SELECT 'inprocess', 9 FROM generate_series(1, 20000)")
        conn.execute("INSERT INTO jobline.jobs (function, owner) SELECT 'render', 'bob' FROM generate_series(1, 20000)")
        conn.execute("INSERT INTO jobline.jobs (function, owner) SELECT 'render', 'alice' FROM generate_series(1, 10)")
        (limit_id,) = conn.execute("INSERT INTO jobline.limits (scope, target, concurrency) "
                                   "VALUES ('function', 'render', 100) RETURNING id").fetchone()
        if statistics == "fresh":
            conn.execute("ANALYZE jobline.jobs")
        prepare_claim(conn, function)
        limited = f", '{{{limit_id}}}', clock_timestamp()" if function == "claim_tasks_limited" else ""
        calls = {who: f"EXECUTE claim('w', {owner}, {types}, 10, 30{limited})"
                 for who, owner, types in (("service", "NULL", "NULL"), ("service, render", "NULL", "'{render}'"),
                                           ("alice", "'alice'", "NULL"))}
        plan = "\n".join(r[0] for r in conn.execute(f"EXPLAIN {calls['service']}"))
        runs = {}
        for who, call in calls.items():
            with conn.transaction(force_rollback=True):
                runs[who] = "\n".join(r[0] for r in conn.execute(f"EXPLAIN (ANALYZE, BUFFERS, COSTS OFF) {call}"))
                runs[who + " claimed"] = conn.execute(
                    "SELECT DISTINCT function, owner FROM jobline.jobs WHERE status = 'running'").fetchall()
    # jobline.jobs is read through indexes only (under a limit, limit_room's joins are of the
    # few rows of limits and their usage).
    reads = set(re.findall(r"(\w[\w ]*?) on jobs \w+", plan))
    assert reads >= {"Index Scan using jobs_function_due_idx", "Index Scan using jobs_owner_due_idx"}, plan
    assert reads <= {"Index Scan using jobs_function_due_idx", "Index Scan using jobs_owner_due_idx",
                     "Index Only Scan using jobs_function_due_idx", "Index Scan using jobs_pkey",
                     "Index Scan using jobs_lease_idx", "Update"}, plan
    assert "Seq Scan" not in plan, plan
    assert runs["service claimed"] == runs["service, render claimed"] == [("render", "bob")]
    assert runs["alice claimed"] == [("render", "alice")]
    for who in calls:
        assert "rows=10 " in runs[who] and buffers_touched(runs[who]) < 500, (who, runs[who])


async def test_a_missing_table_suggests_migrating_only_when_it_is_jobline_s(bookkeeping, empty_db_url):
    with pytest.raises(DatabaseError) as theirs:
        await bookkeeping.sql_run("SELECT * FROM public.orders_of_theirs")
    assert 'relation "public.orders_of_theirs" does not exist' in str(theirs.value)
    assert "jobline db migrate" not in str(theirs.value)
    unmigrated = Store(empty_db_url)
    await unmigrated.open()
    try:
        with pytest.raises(DatabaseError, match=r'relation "jobline\.jobs" does not exist; is the schema installed'):
            await unmigrated.job_get(1)
    finally:
        await unmigrated.close()


def test_a_plain_role_cannot_stall_a_limited_claim(db_url, sql):
    """A claim under a limit serialises on the limit's row (0027), which only jobline's own role may
    lock: a plain role's advisory lock on the limit's old key holds nothing back, and its attempt
    to lock the row is refused."""
    (limit_id,) = sql("INSERT INTO jobline.limits (scope, target, concurrency) VALUES ('function', 'f', 5) "
                      "RETURNING id")[0]
    sql("INSERT INTO jobline.jobs (function) VALUES ('f')")
    with roles_of(db_url) as roles:
        mallory = roles.make("mallory")
        with psycopg.connect(roles.url(mallory), autocommit=True) as hostile:
            hostile.execute("SELECT pg_advisory_lock(1785950019, %s)", [limit_id])
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                hostile.execute("SELECT 1 FROM jobline.limits FOR NO KEY UPDATE")
            with psycopg.connect(db_url, autocommit=True) as worker:
                worker.execute("SET lock_timeout = '5s'")  # a stall fails the test, not the suite
                claimed = worker.execute("SELECT id FROM jobline.claim_jobs('w', '{f}', NULL, 10, 30)").fetchall()
    assert len(claimed) == 1
