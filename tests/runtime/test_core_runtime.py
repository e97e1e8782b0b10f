"""Workers in-process against a real database: outcomes, dependencies, steering, wake-ups."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import time

import psycopg
import pytest

from conftest import eventually
from jobline import App, Cancel, Conflict, Fail, InvalidInput, JobNotFound, Retry, RetryIn

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def make_app(settings):
    apps = []

    def make() -> App:
        app = App(settings=settings)
        apps.append(app)
        return app

    yield make


async def test_success_stores_the_result_and_one_attempt(make_app):
    app = make_app()

    @app.function("double")
    def double(payload):
        return {"value": payload["n"] * 2}

    async with app:
        job = await app.enqueue_async("double", {"n": 21})
        summary = await app.process_async()
        done = await app.get_job_async(job.id)
        attempts = await app.store.attempt_list(job.id)
    assert summary.succeeded == 1
    assert (done.status, done.result, done.attempts, done.finished_at is not None) == ("succeeded", {"value": 42}, 1, True)
    assert [(a.attempt, a.outcome, a.error) for a in attempts] == [(1, "succeeded", None)]


async def test_handler_with_context_sees_its_job(make_app):
    app = make_app()
    seen = {}

    @app.function("introspect")
    async def introspect(payload, ctx):
        seen.update(job_id=ctx.job_id, attempt=ctx.attempt, owner=ctx.owner, queue=ctx.queue)
        async with await ctx.connect_async() as conn:
            return (await (await conn.execute("SELECT status FROM jobline.jobs WHERE id = %s", [ctx.job_id])).fetchone())[0]

    async with app:
        job = await app.enqueue_async("introspect", owner="user-1", queue="q1")
        await app.process_async()
        assert (await app.get_job_async(job.id)).result == "running"
    assert seen == {"job_id": job.id, "attempt": 1, "owner": "user-1", "queue": "q1"}


async def test_fail_stops_retries_and_exhausted_attempts_fail_with_each_error(make_app):
    app = make_app()

    @app.function("refuse")
    def refuse(payload):
        raise Fail("bad input")

    @app.function("broken", max_attempts=2, backoff_base=0, backoff_jitter=0)
    def broken(payload):
        raise ValueError("always")

    async with app:
        refused = await app.enqueue_async("refuse")
        failing = await app.enqueue_async("broken")
        await app.process_async()
        await app.process_async()  # the retry (backoff 0) is due now
        assert (await app.get_job_async(refused.id)).status == "failed"
        assert (await app.get_job_async(refused.id)).attempts == 1
        job = await app.get_job_async(failing.id)
        attempts = await app.store.attempt_list(failing.id)
    assert (job.status, job.attempts) == ("failed", 2)
    assert job.last_error == "ValueError: always"  # the message only: the traceback is the attempt's
    assert [a.outcome for a in attempts] == ["failed", "failed"]
    assert all(a.error == "ValueError: always" for a in attempts)
    assert all(a.traceback.startswith("Traceback (most recent call last)") and 'raise ValueError("always")'
               in a.traceback for a in attempts)


async def test_failing_attempts_keep_the_result_they_were_given_until_one_succeeds(make_app):
    app = make_app()
    calls = []

    @app.function("flaky", max_attempts=3, backoff_base=60)
    def flaky(payload):
        calls.append(1)
        if len(calls) == 1:
            raise Retry("busy", result={"got": 503})
        if len(calls) == 2:
            raise RetryIn(60, "slow down", result={"got": 429})
        return {"got": 200}

    @app.function("refuse")
    def refuse(payload):
        raise Fail("not found", result={"got": 404})

    @app.function("unstorable", max_attempts=1)
    def unstorable(payload):
        raise Retry("odd", result={"bad": object()})

    async with app:
        job = await app.enqueue_async("flaky")
        refused = await app.enqueue_async("refuse")
        odd = await app.enqueue_async("unstorable")
        await app.process_async()
        first = await app.get_job_async(job.id)
        await app.store.job_run_now(job.id)
        await app.process_async()
        second = await app.get_job_async(job.id)
        await app.store.job_run_now(job.id)
        await app.process_async()
        done, refused, odd = [await app.get_job_async(j.id) for j in (job, refused, odd)]
        attempts = await app.store.attempt_list(job.id)
    assert (first.status, first.result, first.last_error) == ("pending", {"got": 503}, "Retry: busy")
    assert (second.status, second.result, second.last_error) == ("pending", {"got": 429}, "slow down")
    assert (done.status, done.result) == ("succeeded", {"got": 200})
    assert [a.error for a in attempts] == ["Retry: busy", "slow down", None]  # no traceback for a signal
    assert (refused.status, refused.result, refused.last_error) == ("failed", {"got": 404}, "not found")
    assert (odd.status, odd.result, odd.last_error) == ("failed", None, "Retry: odd")  # the failure still counts


async def test_retry_in_reschedules_and_cancel_cascades_to_dependants(make_app):
    app = make_app()

    @app.function("later")
    def later(payload):
        raise RetryIn(120)

    @app.function("give-up")
    def give_up(payload):
        raise Cancel("not needed any more")

    @app.function("child")
    def child(payload):
        return "ran"

    async with app:
        later_job = await app.enqueue_async("later")
        parent = await app.enqueue_async("give-up")
        kid = await app.enqueue_async("child", depends_on=parent.id)
        grandkid = await app.enqueue_async("child", depends_on=kid.id)
        await app.process_async()
        retried = await app.get_job_async(later_job.id)
        statuses = [(await app.get_job_async(j.id)).status for j in (parent, kid, grandkid)]
        kid_error = (await app.get_job_async(kid.id)).last_error
        grandkid_error = (await app.get_job_async(grandkid.id)).last_error
    delay = (retried.run_at - dt.datetime.now(dt.timezone.utc)).total_seconds()
    assert retried.status == "pending" and 110 < delay <= 120
    assert statuses == ["cancelled", "cancelled", "cancelled"]
    assert f"job {parent.id}" in kid_error and f"job {kid.id}" in grandkid_error


async def test_job_waits_for_both_dependencies_then_runs(make_app):
    app = make_app()
    order = []

    @app.function("step")
    def step(payload):
        order.append(payload["name"])

    async with app:
        a = await app.enqueue_async("step", {"name": "a"})
        b = await app.enqueue_async("step", {"name": "b"}, delay=3600)
        joined = await app.enqueue_async("step", {"name": "joined"}, depends_on=[a.id, b.id])
        assert joined.status == "waiting"
        await app.process_async()
        assert (await app.get_job_async(joined.id)).status == "waiting"  # b is not done yet
        await app.store.job_run_now(b.id)
        await app.process_async()
        assert (await app.get_job_async(joined.id)).status == "succeeded"
    assert order == ["a", "b", "joined"]


async def test_unique_key_returns_the_live_job_then_allows_a_new_one(make_app):
    app = make_app()

    @app.function("sync-user")
    def sync_user(payload):
        return None

    async with app:
        first = await app.enqueue_async("sync-user", unique_key="user-7", owner="o")
        again = await app.enqueue_async("sync-user", unique_key="user-7", owner="o")
        other_owner = await app.enqueue_async("sync-user", unique_key="user-7", owner="p")
        assert again.id == first.id and other_owner.id != first.id
        await app.process_async()
        after = await app.enqueue_async("sync-user", unique_key="user-7", owner="o")
    assert after.id not in (first.id, other_owner.id)


def test_transactional_enqueue_leaves_no_job_when_rolled_back(make_app, db_url, sql):
    app = make_app()
    with psycopg.connect(db_url) as conn:
        with conn.transaction():
            app.enqueue("anything", {"kept": True}, conn=conn)
            app.enqueue_many([{"function": "anything"}, {"function": "anything", "depends_on": None}], conn=conn)
        try:
            with conn.transaction():
                app.enqueue("anything", {"kept": False}, conn=conn)
                app.enqueue_many([{"function": "anything"}] * 3, conn=conn)
                raise RuntimeError("roll back")
        except RuntimeError:
            pass
    assert sql("SELECT count(*), count(*) FILTER (WHERE payload = '{\"kept\": true}') FROM jobline.jobs") == [(3, 1)]


async def test_async_transactional_enqueue_commits_with_the_transaction(make_app, db_url, sql):
    app = make_app()
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        async with conn.transaction():
            job = await app.enqueue_async("anything", conn=conn)
            ids = await app.enqueue_many_async([{"function": "anything"}] * 2, conn=conn)
            assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]  # not visible before commit
    assert sorted(i for (i,) in sql("SELECT id FROM jobline.jobs")) == sorted([job.id, *ids])


async def test_enqueue_many_returns_ids_in_order(make_app, sql):
    app = make_app()
    async with app:
        ids = await app.enqueue_many_async([{"function": "bulk", "payload": {"i": i}} for i in range(1000)])
    assert len(ids) == 1000 and ids == sorted(ids)
    rows = dict(sql("SELECT id, (payload->>'i')::int FROM jobline.jobs"))
    assert [rows[i] for i in ids] == list(range(1000))


async def test_worker_claims_only_its_functions_and_listing_flags_the_unserved(make_app):
    app = make_app()

    @app.function("mine")
    def mine(payload):
        return None

    async with app:
        ours = await app.enqueue_async("mine")
        theirs = await app.enqueue_async("remote-task")
        worker = await app.worker_async()
        running = asyncio.create_task(worker.run(handle_signals=False))
        try:
            await eventually(lambda: _status(app, ours.id, "succeeded"))
            listed = {job.id: served for job, served in await app.store.job_list()}
            functions = {row["function"]: row for row in await app.store.function_list()}
        finally:
            worker.request_stop()
            await running
        assert (await app.get_job_async(theirs.id)).status == "pending"
    assert listed == {ours.id: True, theirs.id: False}
    assert functions["remote-task"]["workers"] == 0 and functions["mine"]["workers"] == 1


async def _status(app, job_id, status):
    return (await app.get_job_async(job_id)).status == status


async def test_idle_worker_wakes_on_notify_not_the_poll(make_app, settings):
    app = make_app()
    app.settings = dataclasses.replace(settings, poll_interval=30)
    started = {}

    @app.function("ping")
    def ping(payload):
        started["at"] = time.monotonic()

    async with app:
        worker = await app.worker_async()
        running = asyncio.create_task(worker.run(handle_signals=False))
        try:
            await worker.notifier.connected.wait()
            await asyncio.sleep(0.2)  # let the first (catch-up) claim find nothing and go idle
            enqueued = time.monotonic()
            await app.enqueue_async("ping")
            await eventually(lambda: "at" in started, timeout=5)
        finally:
            worker.request_stop()
            await running
    assert started["at"] - enqueued < 0.5


async def test_steering_retry_cancel_run_now_archive(make_app):
    app = make_app()

    @app.function("nope", max_attempts=1)
    def nope(payload):
        raise ValueError("no")

    async with app:
        failed = await app.enqueue_async("nope")
        await app.process_async()
        retried = await app.store.job_retry(failed.id)
        assert (retried.status, retried.max_attempts) == ("pending", 2)
        with pytest.raises(Conflict, match="only failed or cancelled"):
            await app.store.job_retry(failed.id)
        later = await app.enqueue_async("nope", delay=3600)
        assert (await app.store.job_run_now(later.id)).run_at <= dt.datetime.now(dt.timezone.utc)
        cancelled = await app.store.job_cancel(later.id, "changed my mind")
        assert (cancelled.status, cancelled.last_error) == ("cancelled", "changed my mind")
        archived = await app.store.job_archive(cancelled.id)
        assert archived.archived_at is not None
        listed = [job.id for job, _ in await app.store.job_list()]
        assert cancelled.id not in listed and failed.id in listed
        with pytest.raises(JobNotFound):
            await app.store.job_get(987654)


async def test_cancelled_running_job_cannot_be_completed_by_its_worker(make_app):
    app = make_app()
    release = asyncio.Event()

    @app.function("slow")
    async def slow(payload):
        await release.wait()
        return "finished anyway"

    async with app:
        job = await app.enqueue_async("slow")
        worker = await app.worker_async()
        running = asyncio.create_task(worker.run(handle_signals=False))
        try:
            await eventually(lambda: _status(app, job.id, "running"))
            await app.store.job_cancel(job.id)
            release.set()
            await eventually(lambda: not worker.inflight.ids())
        finally:
            worker.request_stop()
            await running
        final = await app.get_job_async(job.id)
        attempts = await app.store.attempt_list(job.id)
    assert (final.status, final.result) == ("cancelled", None)
    assert attempts == []


async def test_sql_builtin_runs_its_command_and_reports_server_errors(make_app):
    app = make_app()
    async with app:
        good = await app.enqueue_async("sql", {"command": "CREATE TEMP TABLE t (x int); SELECT 40 + 2 AS answer"})
        bad = await app.enqueue_async("sql", {"command": "SELEC nonsense"}, max_attempts=1)
        empty = await app.enqueue_async("sql", {"command": "  "})
        await app.process_async()
        good, bad, empty = [await app.get_job_async(j.id) for j in (good, bad, empty)]
    assert good.result == {"status": "SELECT 1", "rowcount": 1, "rows": [[42]]}
    assert bad.status == "failed" and "syntax error" in bad.last_error
    assert empty.status == "failed" and "command" in empty.last_error


async def test_bad_enqueue_input_is_refused_and_stores_nothing(make_app, sql):
    app = make_app()
    async with app:
        for call in (lambda: app.enqueue_async(""), lambda: app.enqueue_async("x", ["not", "a", "dict"]),
                     lambda: app.enqueue_async("x", priority=5000), lambda: app.enqueue_async("x", delay=-1),
                     lambda: app.enqueue_async("x", depends_on=[999999]),
                     lambda: app.enqueue_async("x", {"big": "y" * (1024 * 1024)}),
                     lambda: app.enqueue_async("x", bogus_option=1)):
            with pytest.raises(InvalidInput):
                await call()
        quoted = await app.enqueue_async("it's \"quoted\" ünïcode ✓", owner="o'brien")
    assert sql("SELECT function, owner FROM jobline.jobs") == [(quoted.function, "o'brien")]


def test_sync_api_refuses_to_run_inside_an_event_loop(make_app):
    app = make_app()

    async def inside():
        from jobline import JoblineError

        with pytest.raises(JoblineError, match="enqueue_async"):
            app.enqueue("x")

    asyncio.run(inside())


async def test_enqueue_many_mixes_plain_dependent_and_unique_jobs_in_the_given_order(make_app, sql):
    app = make_app()
    async with app:
        first = await app.enqueue_async("a")
        ids = await app.enqueue_many_async([
            {"function": "a", "payload": {"n": 0}},
            {"function": "b", "depends_on": [first.id]},
            {"function": "a", "payload": {"n": 2}, "priority": 5},
            {"function": "c", "unique_key": "k"},
            {"function": "c", "unique_key": "k"},
            {"function": "a", "payload": {"n": 5}},
        ])
    rows = {i: (f, s, p) for i, f, s, p in sql("SELECT id, function, status, payload FROM jobline.jobs")}
    assert [rows[i][0] for i in ids] == ["a", "b", "a", "c", "c", "a"]
    assert ids[3] == ids[4] and rows[ids[1]][1] == "waiting"
    assert [rows[ids[i]][2] for i in (0, 2, 5)] == [{"n": 0}, {"n": 2}, {"n": 5}]
    with pytest.raises(InvalidInput, match="job 1 must be a mapping"):
        async with app:
            await app.enqueue_many_async([{"function": "a"}, {"payload": {}}])
