"""Flow control (0019_flow_control.sql): concurrency and rate limits per function, queue and
concurrency key, held by the claim across worker processes, and what it must not do (spend
attempts, stall after a crash, let a user change limits). The process tests count from the
attempts table: the handlers' own start and end times, which lie inside the span the database
counted each job as running."""

from __future__ import annotations

import asyncio
import bisect
import dataclasses
import secrets
import signal
from collections import defaultdict

import psycopg
import pytest

from apps import flow
from conftest import _admin, eventually, running, start_jobline, url_for
from jobline import App, Forbidden, InvalidInput
from jobline.auth import SERVICE, Principal
from jobline.errors import NotFound
from jobline.limit import limit_spec, parse_rate

pytestmark = pytest.mark.timeout(240)

ALICE = Principal(user_id="alice", via="api_token")


def max_overlap(intervals) -> int:
    """The most intervals [start, end) open at one instant."""
    events = sorted([(end, -1) for _, end in intervals] + [(start, 1) for start, _ in intervals])
    most = now = 0
    for _, step in events:  # at a tie, an end (-1) sorts before a start: touching is not overlapping
        now += step
        most = max(most, now)
    return most


def most_starts_in_a_window(starts, seconds: float) -> int:
    """The most starts within any window (t - seconds, t]."""
    starts = sorted(starts)
    return max((i + 1 - bisect.bisect_right(starts, s - seconds) for i, s in enumerate(starts)), default=0)


def intervals_of(sql, function: str):
    return sql("SELECT extract(epoch FROM a.started_at)::float8, extract(epoch FROM a.finished_at)::float8, "
               "j.concurrency_key FROM jobline.attempts a JOIN jobline.jobs j ON j.id = a.job_id "
               "WHERE j.function = %s", [function])


# -- four worker processes, thousands of jobs ------------------------------------------------------

@pytest.fixture(scope="module")
def drained(pg_server_url, pg_template):
    """One run shared by the tests below (it is the expensive part): 4 worker processes drain
    1,200 jobs of "capped" (3 at once), 800 of "per_user" (8 keys, 1 at once each) and 200 of
    "rated" (20 per second), all enqueued before the first worker starts."""
    name = f"t_{secrets.token_hex(6)}"
    _admin(pg_server_url, f"CREATE DATABASE {name} TEMPLATE {pg_template}")
    url = url_for(pg_server_url, name)

    def sql(statement, params=None):
        with psycopg.connect(url, autocommit=True) as conn:
            cur = conn.execute(statement, params)
            return cur.fetchall() if cur.description else []

    sql("SELECT jobline.enqueue('capped', '{\"seconds\": 0.004}') FROM generate_series(1, 1200)")
    sql("SELECT jobline.enqueue('per_user', '{\"seconds\": 0.004}', concurrency_key => 'user-' || (i % 8)) "
        "FROM generate_series(1, 800) i")
    sql("SELECT jobline.enqueue('rated') FROM generate_series(1, 200)")
    workers = [start_jobline(["--app", "apps.flow:app", "worker", "--concurrency", "8"], url,
                             JOBLINE_POLL_INTERVAL="0.5") for _ in range(4)]
    try:
        asyncio.run(eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status <> 'succeeded'")
                               == [(0,)], timeout=200, interval=0.5))
        pids = {w.pid for w in workers}
        yield sql, pids
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            try:
                worker.communicate(timeout=30)
            except Exception:
                worker.kill()
                worker.communicate(timeout=10)
        _admin(pg_server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def test_a_concurrency_limit_holds_across_four_worker_processes(drained):
    sql, _ = drained
    intervals = [(s, f) for s, f, _ in intervals_of(sql, "capped")]
    # Every job succeeded once, and no attempt was spent waiting for a slot. On a machine loaded
    # hard enough that a worker misses its 30 s lease, a job is rescued and runs again (at least
    # once, as always): such an earlier attempt is `lost`, never anything else. It counts as
    # running until its rescue, as the limit counted it.
    outcomes = dict(sql("SELECT a.outcome, count(*) FROM jobline.attempts a JOIN jobline.jobs j ON j.id = a.job_id "
                        "WHERE j.function = 'capped' GROUP BY 1"))
    assert outcomes.pop("succeeded") == 1200 and set(outcomes) <= {"lost"}, outcomes
    assert max_overlap(intervals) <= flow.CAPPED
    # Every process took part: the limit is shared, not one process running them all.
    assert len({w for (w,) in sql("SELECT DISTINCT worker_id FROM jobline.attempts")}) == 4
    assert sql("SELECT count(*) FROM jobline.jobs j WHERE j.attempts > 1 AND NOT EXISTS (SELECT FROM "
               "jobline.attempts a WHERE a.job_id = j.id AND a.outcome = 'lost')") == [(0,)]


def test_a_concurrency_key_runs_one_job_at_a_time_per_key_while_keys_run_in_parallel(drained):
    sql, _ = drained
    by_key = defaultdict(list)
    for start, end, key in intervals_of(sql, "per_user"):
        by_key[key].append((start, end))
    assert sorted(by_key) == [f"user-{i}" for i in range(8)] and sum(map(len, by_key.values())) == 800
    assert {key: max_overlap(spans) for key, spans in by_key.items()} == {key: 1 for key in by_key}
    assert max_overlap([span for spans in by_key.values() for span in spans]) > 1


def test_a_rate_limit_holds_to_its_window(drained):
    sql, _ = drained
    count, seconds = flow.RATE
    rows = sql("SELECT extract(epoch FROM j.started_at)::float8, extract(epoch FROM a.started_at)::float8 "
               "FROM jobline.jobs j JOIN jobline.attempts a ON a.job_id = j.id WHERE j.function = 'rated'")
    claimed, started = [c for c, _ in rows], [s for _, s in rows]
    assert len(rows) == 200
    # The claims' own stamps (jobs.started_at: the starts the sliding log counted): exactly.
    assert most_starts_in_a_window(claimed, seconds) <= count
    # The handlers' starts (attempts) follow their claims after a delay that varies (a busy
    # machine, a worker's first batch): a handler window narrower by that spread maps into one
    # claim window, so it holds exactly too; the whole window holds within a batch's jitter.
    delays = [s - c for c, s in rows]
    spread = max(delays) - min(delays)
    if spread < seconds:
        assert most_starts_in_a_window(started, seconds - spread) <= count, spread
    # It did hold jobs back: 200 starts at 20 a second take more than 9 seconds.
    assert max(claimed) - min(claimed) > (200 / count - 1) * seconds


# -- in one process, step by step ------------------------------------------------------------------

async def claim(store, functions, limit=10, worker="w"):
    return [row[0] for row in await store.job_claim_many(worker_id=worker, functions=functions, queues=None,
                                                         limit=limit, lease_seconds=30)]


async def test_jobs_over_a_limit_stay_pending_without_spending_an_attempt(app, store, sql):
    await app.ops.limits.set(SERVICE, "function", "f", concurrency=2)
    ids = [(await app.enqueue_async("f")).id for _ in range(5)]
    assert await claim(store, ["f"]) == ids[:2]
    assert await claim(store, ["f"]) == []
    assert sql("SELECT id, status, attempts FROM jobline.jobs WHERE status = 'pending' ORDER BY id") == [
        (i, "pending", 0) for i in ids[2:]]
    sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE id = %s", [ids[0]])
    assert await claim(store, ["f"]) == [ids[2]]
    # Unlimited functions in the same claim are not held back by f's limit.
    other = (await app.enqueue_async("g")).id
    assert await claim(store, ["f", "g"]) == [other]


async def test_a_queue_limit_counts_every_function_of_the_queue(app, store, sql):
    await app.ops.limits.set(SERVICE, "queue", "social", concurrency=1)
    first = (await app.enqueue_async("post", queue="social")).id
    await app.enqueue_async("like", queue="social")
    free = (await app.enqueue_async("like", queue="default")).id
    assert await claim(store, ["post", "like"]) == [first, free]
    assert await claim(store, ["post", "like"]) == []


async def test_a_per_key_limit_admits_one_per_key_and_keyless_jobs_share_one(app, store):
    await app.ops.limits.set(SERVICE, "function", "post", per_key=True, concurrency=1)
    jobs = [await app.enqueue_async("post", concurrency_key=key) for key in ("a", "a", "b", None, None, "b")]
    assert await claim(store, ["post"]) == [jobs[0].id, jobs[2].id, jobs[3].id]
    assert await claim(store, ["post"]) == []


async def test_a_rate_limit_admits_n_per_window_and_counts_from_the_sliding_log(app, store, sql):
    await app.ops.limits.set(SERVICE, "function", "call", rate_count=3, rate_seconds=3600)
    ids = [(await app.enqueue_async("call")).id for _ in range(5)]
    assert await claim(store, ["call"]) == ids[:3]
    sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE id = ANY(%s)", [ids[:3]])
    assert await claim(store, ["call"]) == []  # finished, but still started within the hour
    assert 3500 < await store.limit_wait(functions=["call"], queues=None) <= 3600
    # The window slides: move the log's starts back past it.
    sql("UPDATE jobline.limit_starts SET started_at = started_at - interval '59 minutes 59 seconds'")
    await eventually(lambda: claim(store, ["call"]), timeout=10)
    assert sql("SELECT count(*) FROM jobline.jobs WHERE status = 'pending'") == [(0,)]


async def test_a_worker_held_back_by_a_rate_wakes_when_its_window_opens_not_at_its_poll(settings, sql):
    app = App(settings=dataclasses.replace(settings, poll_interval=3600))
    ran: list[float] = []

    @app.function("tick", rate_limit=(2, 1.5))
    async def tick(payload):
        ran.append(asyncio.get_running_loop().time())

    async with app:
        await app.enqueue_many_async([{"function": "tick"}] * 4)
        async with running(app):
            await eventually(lambda: len(ran) == 4, timeout=30)
    assert ran[2] - ran[0] >= 1.0  # the third start waited for the window...
    # ...and the worker, polling hourly, was woken by the window opening, not by a poll.


async def test_one_key_at_a_time_goes_on_as_each_outcome_is_written_not_at_the_poll(settings, sql):
    """Held back by a full key, the worker is woken when its own job's outcome is written (the
    slot is free only then), so a chain of one key's jobs never waits for the hourly poll."""
    app = App(settings=dataclasses.replace(settings, poll_interval=3600))

    @app.function("one", concurrency=1, limit_per_key=True)
    async def one(payload):
        return None

    async with app:
        await app.enqueue_many_async([{"function": "one", "concurrency_key": "k"}] * 40)
        async with running(app):
            await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'") == [(40,)],
                             timeout=60)
    spans = [(s, f) for s, f, _ in intervals_of(sql, "one")]
    assert max_overlap(spans) == 1


async def test_limit_wait_is_none_without_a_full_limit_and_infinite_for_concurrency(app, store):
    assert await store.limit_wait(functions=["f"], queues=None) is None
    await app.ops.limits.set(SERVICE, "function", "f", concurrency=1)
    assert await store.limit_wait(functions=["f"], queues=None) is None
    await app.enqueue_async("f")
    await claim(store, ["f"])
    assert await store.limit_wait(functions=["f"], queues=None) == float("inf")
    assert await store.limit_wait(functions=["g"], queues=["other"]) is None


async def test_the_remote_claim_honours_limits_and_shares_them_with_local_workers(app, store, sql):
    await app.ops.limits.set(SERVICE, "function", "render", concurrency=2)
    ids = [(await app.enqueue_async("render", owner="alice")).id for _ in range(4)]
    remote = await store.task_claim_many(worker_id="lease-1", owner=None, task_types=["render"], limit=10,
                                         lease_seconds=30)
    assert [row["id"] for row in remote] == ids[:2]
    assert await store.task_claim_many(worker_id="lease-2", owner="alice", task_types=None, limit=10,
                                       lease_seconds=30) == []
    assert await claim(store, ["render"]) == []  # the remote ones count for local workers too
    sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE id = %s", [ids[0]])
    again = await store.task_claim_many(worker_id="lease-3", owner="alice", task_types=None, limit=10,
                                        lease_seconds=30)
    assert [row["id"] for row in again] == [ids[2]]
    assert sql("SELECT attempts FROM jobline.jobs WHERE id = %s", [ids[3]]) == [(0,)]


async def test_concurrent_claimers_never_admit_past_a_limit(app, db_url, sql):
    """Sixteen claimers on their own connections race for 5 slots, again and again."""
    from jobline.db.store import Store
    await app.ops.limits.set(SERVICE, "function", "f", concurrency=5)
    await app.ops.limits.set(SERVICE, "function", "f", per_key=True, concurrency=1)
    sql("INSERT INTO jobline.jobs (function, concurrency_key) SELECT 'f', 'k' || (i % 7) FROM generate_series(1, 400) i")
    claimers = Store(db_url, max_size=16)
    await claimers.open()
    try:
        for _ in range(10):
            await asyncio.gather(*(claim(claimers, ["f"], limit=3, worker=f"w{i}") for i in range(16)))
            running_now = sql("SELECT concurrency_key FROM jobline.jobs WHERE status = 'running'")
            assert 0 < len(running_now) <= 5
            assert len({key for (key,) in running_now}) == len(running_now)  # one per key
            sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE status = 'running'")
    finally:
        await claimers.close()


async def test_a_claim_in_repeatable_read_under_a_limit_is_refused(app, db_url):
    await app.ops.limits.set(SERVICE, "function", "f", concurrency=1)
    with psycopg.connect(db_url) as conn:
        conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        with pytest.raises(psycopg.errors.InvalidTransactionState, match="must run in READ COMMITTED"):
            conn.execute("SELECT * FROM jobline.claim_jobs('w', '{f}', NULL, 1, 30)")


# -- a crash gives the slot back when the lease expires ----------------------------------------------

async def test_a_killed_workers_slot_comes_back_when_its_lease_expires(db_url, sql, processes):
    stalled = sql("SELECT jobline.enqueue('hold', '{\"stall\": true}')")[0][0]
    first = start_jobline(["--app", "apps.flow:app", "worker"], db_url, JOBLINE_LEASE_SECONDS="2",
                          JOBLINE_POLL_INTERVAL="0.2")
    processes.append(first)
    await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [stalled]) == [("running",)],
                     timeout=60)
    waiting = sql("SELECT jobline.enqueue('hold')")[0][0]
    first.send_signal(signal.SIGKILL)
    first.communicate(timeout=10)
    second = start_jobline(["--app", "apps.flow:app", "worker"], db_url, JOBLINE_LEASE_SECONDS="2",
                           JOBLINE_POLL_INTERVAL="0.2")
    processes.append(second)
    await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'") == [(2,)],
                     timeout=90)
    outcomes = sql("SELECT job_id, attempt, outcome FROM jobline.attempts ORDER BY finished_at")
    assert outcomes[0] == (stalled, 1, "lost")
    # The slot held by the dead worker's job was not given to `waiting` before the rescue.
    intervals = [(s, f) for s, f, _ in intervals_of(sql, "hold")]
    assert max_overlap(intervals) == 1
    assert sql("SELECT attempts FROM jobline.jobs WHERE id = %s", [waiting]) == [(1,)]


# -- declaring, setting, validating ------------------------------------------------------------------

async def test_code_limits_are_recorded_at_worker_start_and_an_operators_limit_wins(settings, sql):
    app = App(settings=settings)

    @app.function("post", concurrency=1, rate_limit=(30, 60), limit_per_key=True)
    async def post(payload):
        return None

    app.limit(queue="default", concurrency=50)
    async with app:
        async with running(app):
            pass
        rows = sql("SELECT scope, target, per_key, concurrency, rate_count, rate_seconds, source "
                   "FROM jobline.limits ORDER BY scope")
        assert rows == [("function", "post", True, 1, 30, 60.0, "code"), ("queue", "default", False, 50, None, None,
                                                                           "code")]
        await app.ops.limits.set(SERVICE, "function", "post", per_key=True, concurrency=4)
        app.limits.pop(("queue", "default", False))
        async with running(app):
            pass
    assert sql("SELECT scope, target, concurrency, source FROM jobline.limits") == [("function", "post", 4, "runtime")]


async def test_a_user_reads_limits_but_cannot_change_them(app, sql):
    await app.ops.limits.set(SERVICE, "queue", "social", concurrency=5)
    await app.ops.limits.set(SERVICE, "queue", "bobs", concurrency=1)
    await app.enqueue_async("post", queue="social", owner="alice")
    await app.enqueue_async("post", queue="bobs", owner="bob")
    # A user reads the limits on their own jobs only: never another tenant's queue's name.
    assert [row["target"] for row in await app.ops.limits.list(ALICE)] == ["social"]
    assert len(await app.ops.limits.list(SERVICE)) == 2
    with pytest.raises(Forbidden):
        await app.ops.limits.set(ALICE, "queue", "social", concurrency=500)
    with pytest.raises(Forbidden):
        await app.ops.limits.remove(ALICE, "queue", "social")
    assert sql("SELECT concurrency FROM jobline.limits ORDER BY target") == [(1,), (5,)]


@pytest.mark.parametrize("fields, message", [
    ({"scope": "table"}, "scope must be 'function' or 'queue'"),
    ({"target": ""}, "function name must be 1 to 200 characters"),
    ({"target": " padded"}, "leading or trailing spaces"),
    ({"scope": "queue", "target": "q" * 101}, "queue must be 1 to 100 characters"),
    ({"concurrency": 0}, "concurrency must be between 1 and 100000"),
    ({"concurrency": 1.5}, "concurrency must be a whole number"),
    ({"concurrency": None}, "needs a concurrency, a rate, or both"),
    ({"rate_count": 5}, "needs both a count and a period"),
    ({"rate_count": 5, "rate_seconds": 0}, "period must be between 0.001 and 86400"),
    ({"rate_count": 0, "rate_seconds": 1}, "rate count must be between 1 and 1000000"),
    ({"per_key": "yes"}, "per_key must be true or false"),
])
async def test_a_bad_limit_is_refused_with_what_was_wrong(app, sql, fields, message):
    args = {"scope": "function", "target": "post", "concurrency": 2, **fields}
    with pytest.raises(InvalidInput, match=message):
        await app.ops.limits.set(SERVICE, args.pop("scope"), args.pop("target"), **args)
    assert sql("SELECT count(*) FROM jobline.limits") == [(0,)]


def test_limits_in_code_and_rates_as_text_are_validated():
    assert parse_rate("30/1m") == (30, 60.0) and parse_rate("1000/1h") == (1000, 3600.0)
    assert parse_rate("5/0.5s") == (5, 0.5) and parse_rate("30/60") == (30, 60.0)
    for bad in ("30", "30/", "x/1m", "30/1y", "-1/1m"):
        with pytest.raises(InvalidInput, match="COUNT/PERIOD|period is missing"):
            parse_rate(bad)
    with pytest.raises(InvalidInput, match="exactly one of function and queue"):
        limit_spec(function="a", queue="b", concurrency=1)
    with pytest.raises(InvalidInput, match=r"a rate is \(count, seconds\)"):
        limit_spec(function="a", rate=30)
    app = App("postgresql://nobody@127.0.0.1:9/none")
    app.limit(function="a", concurrency=1)
    with pytest.raises(InvalidInput, match="already declared"):
        app.limit(function="a", rate=(1, 1))
    with pytest.raises(InvalidInput, match="needs a concurrency or a rate_limit"):
        app.function("b", limit_per_key=True)


async def test_the_database_refuses_a_bad_limit_or_concurrency_key_too(sql):
    for values, constraint in (("'function', 'f', 0, NULL, NULL", "limits_concurrency_check"),
                               ("'function', 'f', NULL, NULL, NULL", "limits_check"),
                               ("'function', 'f', NULL, 5, NULL", "limits_check1"),
                               ("'nothing', 'f', 1, NULL, NULL", "limits_scope_check")):
        with pytest.raises(psycopg.errors.CheckViolation, match=constraint):
            sql(f"INSERT INTO jobline.limits (scope, target, concurrency, rate_count, rate_seconds) VALUES ({values})")
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="concurrency_key 'two\nlines' is not a valid name"):
        sql("SELECT jobline.enqueue('f', concurrency_key => E'two\\nlines')")


async def test_a_concurrency_key_is_set_from_python_sql_and_bulk_enqueue(app, sql):
    one = await app.enqueue_async("post", concurrency_key="user-1")
    many = await app.enqueue_many_async([{"function": "post", "concurrency_key": "user-2"},
                                         {"function": "post", "concurrency_key": "user-2", "payload": {"n": 2}},
                                         {"function": "post"}])
    by_sql = sql("SELECT jobline.enqueue('post', concurrency_key => 'user-3')")[0][0]
    old_style = sql("SELECT jobline.enqueue('post', '{}', now(), 'default', 0, NULL, 3, NULL, NULL, NULL)")[0][0]
    assert one.concurrency_key == "user-1"
    assert sql("SELECT id, concurrency_key FROM jobline.jobs ORDER BY id") == [
        (one.id, "user-1"), (many[0], "user-2"), (many[1], "user-2"), (many[2], None), (by_sql, "user-3"),
        (old_style, None)]
    with pytest.raises(InvalidInput, match="concurrency_key must be 1 to 200 characters"):
        await app.enqueue_async("post", concurrency_key="")
    with pytest.raises(InvalidInput, match="concurrency_key must be a string"):
        await app.enqueue_async("post", concurrency_key=7)


async def test_removing_a_limit_releases_its_jobs_and_maintenance_prunes_its_log(app, store, sql):
    await app.ops.limits.set(SERVICE, "function", "f", concurrency=1, rate_count=1, rate_seconds=3600)
    ids = [(await app.enqueue_async("f")).id for _ in range(3)]
    assert await claim(store, ["f"]) == ids[:1]
    with pytest.raises(NotFound, match="no limit on function 'f' per key"):
        await app.ops.limits.remove(SERVICE, "function", "f", per_key=True)
    removed = await app.ops.limits.remove(SERVICE, "function", "f")
    assert removed["concurrency"] == 1
    assert await claim(store, ["f"]) == ids[1:]
    assert await store.limit_start_prune() == 1
    assert sql("SELECT count(*) FROM jobline.limit_starts") == [(0,)]


@pytest.mark.parametrize("statement, error", [
    ("SELECT jobline.enqueue('http', '{\"url\": \"https://example.com\"}', concurrency_key => 'k')",
     "without owner, depends_on or concurrency_key"),
    ("INSERT INTO jobline.jobs (function, payload, concurrency_key) "
     "VALUES ('http', '{\"url\": \"https://example.com\"}', 'k')", "row-level security"),
    ("INSERT INTO jobline.limits (scope, target, concurrency) VALUES ('function', 'http', 1)", "permission denied"),
    ("DELETE FROM jobline.limits", "permission denied"),
    ("SELECT * FROM jobline.limit_starts", "permission denied"),
    ("SELECT jobline.limits_take('{http}', NULL)", "permission denied for function limits_take"),
    ("SELECT * FROM jobline.claim_jobs_limited('w', '{http}', NULL, 1, 30, '{1}', now())",
     "permission denied for function claim_jobs_limited"),
])
def test_a_plain_role_can_neither_set_a_key_nor_touch_limits(db_url, statement, error):
    """A key is shared by every owner's jobs, so only the operator sets one (0019); limits and
    the claim's functions are the operator's."""
    from role_support import roles_of
    with roles_of(db_url) as roles:
        mallory = roles.make("mallory")
        with pytest.raises(psycopg.Error, match=error):
            roles.sql(mallory)(statement)
