"""Pipelines (0021_pipelines.sql, jobline/pipeline.py, operations/pipelines.py): a run's steps
are jobs made in one transaction, each step reads its upstream results, the run's status and
history follow its steps, a failure cancels what comes after, retry re-runs from the failed
step keeping earlier results, and Snooze waits without spending attempts."""

from __future__ import annotations

import dataclasses

import psycopg
import pytest

from apps import pipelines as pipeline_app
from conftest import eventually, running, start_jobline
from jobline import App, Conflict, InvalidInput, PipelineNotFound, Snooze, Step
from jobline.auth import SERVICE

pytestmark = pytest.mark.timeout(300)  # a test may wait 120 s for four processes on a loaded machine


@pytest.fixture
async def papp(settings):
    """The test pipeline App (tests/apps/pipelines.py) on this test's database."""
    app = pipeline_app.app
    app.settings = settings
    async with app:
        await app.record_pipelines_async()
        yield app


def run_status(sql, run_id: int) -> str:
    return sql("SELECT status FROM jobline.pipeline_runs WHERE id = %s", [run_id])[0][0]


async def test_fan_out_and_fan_in_each_step_reading_its_upstream(papp, sql):
    run = await papp.start_pipeline_async("publish", {"topic": "pg queues"}, owner="alice")
    assert run["status"] == "running" and run["owner"] == "alice"
    assert [s["name"] for s in run["steps"]] == ["draft", "title", "tags", "assemble"]
    assert [s["status"] for s in run["steps"]] == ["pending", "waiting", "waiting", "waiting"]
    async with running(papp):
        await eventually(lambda: run_status(sql, run["id"]) != "running", timeout=60)
    done = await papp.get_pipeline_run_async(run["id"])
    steps = {s["name"]: s for s in done["steps"]}
    assert done["status"] == "succeeded" and done["finished_at"] is not None
    assert all(s["status"] == "succeeded" and s["attempts"] == 1 for s in steps.values())
    assert steps["assemble"]["result"]["post"] == "ABOUT PG QUEUES #about #pg #queues"
    assert steps["assemble"]["result"]["topic"] == "pg queues"  # the run's payload reaches every step
    events = [(h["step"], h["event"]) for h in done["history"]]
    assert events[0] == (None, "started") and events[-1] == (None, "succeeded")
    for name in steps:
        assert [e for s, e in events if s == name][-2:] == ["started", "succeeded"]
    assert ("title", "released") in events and ("assemble", "released") in events
    # Every step job is the run owner's.
    assert sql("SELECT DISTINCT owner FROM jobline.jobs WHERE pipeline_run_id = %s", [run["id"]]) == [("alice",)]


async def test_a_failed_step_cancels_what_follows_and_retry_keeps_earlier_results(papp, sql):
    run = await papp.start_pipeline_async("flaky", {"fail": True})
    async with running(papp):
        await eventually(lambda: run_status(sql, run["id"]) != "running", timeout=60)
        failed = await papp.get_pipeline_run_async(run["id"])
        steps = {s["name"]: s for s in failed["steps"]}
        assert failed["status"] == "failed"
        assert [steps[n]["status"] for n in ("first", "shaky", "last")] == ["succeeded", "failed", "cancelled"]
        assert "the platform said no" in steps["shaky"]["error"]
        assert f"job {steps['shaky']['job_id']}" in steps["last"]["error"]  # the reason names the cause
        history = [(h["step"], h["event"], h["message"]) for h in failed["history"]]
        assert ("last", "cancelled", steps["last"]["error"]) in history
        assert (None, "failed", "1 of 3 steps succeeded") in history
        # In the order it happened: the failure, then the cancel it caused, then the run's end.
        order = [(step, event) for step, event, _ in history]
        assert order.index(("shaky", "failed")) < order.index(("last", "cancelled")) < order.index((None, "failed"))
        assert order.index(("first", "succeeded")) < order.index(("shaky", "released"))
        first_result = steps["first"]["result"]

        with pytest.raises(Conflict):
            await papp.cancel_pipeline_run_async(run["id"])  # finished: nothing to cancel
        again = await papp.retry_pipeline_run_async(run["id"])
        assert again["status"] == "running"
        await eventually(lambda: run_status(sql, run["id"]) != "running", timeout=60)
    done = await papp.get_pipeline_run_async(run["id"])
    steps = {s["name"]: s for s in done["steps"]}
    assert done["status"] == "succeeded"
    assert steps["first"]["result"] == first_result and steps["first"]["attempts"] == 1  # not run again
    assert steps["shaky"]["attempts"] == 2 and steps["shaky"]["result"] == {"from_first": first_result}
    assert steps["last"]["result"] == {"from_shaky": {"from_first": first_result}}
    runs = [(h["step"], h["event"]) for h in done["history"] if h["step"] is None]
    assert runs == [(None, "started"), (None, "failed"), (None, "retried"), (None, "succeeded")]
    with pytest.raises(Conflict):
        await papp.retry_pipeline_run_async(run["id"])


async def test_cancel_cancels_the_unfinished_steps_with_the_reason(papp, sql):
    run = await papp.start_pipeline_async("publish", {"topic": "x"})  # no worker: nothing runs
    cancelled = await papp.cancel_pipeline_run_async(run["id"], "changed my mind")
    assert cancelled["status"] == "cancelled"
    assert {s["status"] for s in cancelled["steps"]} == {"cancelled"}
    assert {s["error"] for s in cancelled["steps"]} == {"changed my mind"}
    assert cancelled["history"][-1]["event"] == "cancelled"
    # A cancelled run can be retried: every step runs.
    async with running(papp):
        await papp.retry_pipeline_run_async(run["id"])
        await eventually(lambda: run_status(sql, run["id"]) == "succeeded", timeout=60)


def test_start_pipeline_from_sql_in_a_transaction_that_rolls_back_makes_nothing(papp, db_url, sql):
    with psycopg.connect(db_url) as conn:
        run_id = conn.execute("SELECT jobline.start_pipeline('publish', '{\"topic\": \"t\"}')").fetchone()[0]
        assert conn.execute("SELECT count(*) FROM jobline.jobs WHERE pipeline_run_id = %s", [run_id]).fetchone()[0] == 4
        conn.rollback()
    assert sql("SELECT count(*) FROM jobline.pipeline_runs") == [(0,)]
    assert sql("SELECT count(*) FROM jobline.jobs") == [(0,)]
    assert sql("SELECT count(*) FROM jobline.pipeline_history") == [(0,)]
    # And the Python form in the caller's own transaction, committed.
    with psycopg.connect(db_url) as conn:
        run = papp.start_pipeline("publish", {"topic": "t"}, owner="bob", conn=conn)
    assert sql("SELECT owner, status FROM jobline.pipeline_runs WHERE id = %s", [run["id"]]) == [("bob", "running")]


@pytest.mark.parametrize("payload, message", [
    ("'[1]'", "payload must be a JSON object"),
    ("NULL", "payload must be a JSON object"),
])
def test_start_pipeline_sql_refuses_bad_payloads(papp, sql, payload, message):
    with pytest.raises(psycopg.Error, match=message):
        sql(f"SELECT jobline.start_pipeline('publish', {payload})")


async def test_start_refuses_unknown_pipelines_and_bad_input(papp):
    with pytest.raises(PipelineNotFound, match="no pipeline named 'nope'"):
        await papp.start_pipeline_async("nope")
    with pytest.raises(InvalidInput, match="payload must be a JSON object"):
        await papp.start_pipeline_async("publish", ["not", "an", "object"])
    with pytest.raises(InvalidInput, match="owner"):
        await papp.start_pipeline_async("publish", owner=" spaced ")
    with pytest.raises(PipelineNotFound):
        await papp.get_pipeline_run_async(999999)


@pytest.mark.parametrize("steps, message", [
    ([], "needs 1 to 100 steps"),
    ([Step("a", "f"), Step("a", "g")], "two steps are named 'a'"),
    ([Step("a", "f", after=["b"])], "runs after 'b', which is no step"),
    ([Step("a", "f", after=["b"]), Step("b", "f", after=["a"])], "cycle through a, b"),
    ([Step("a", "f", after=["a"])], "runs after itself"),
    ([Step("a", "f", delay=-1)], "delay must be"),
    ([Step("a", "f", max_attempts=0)], "max_attempts must be between"),
    ([Step("a", "")], "function must be 1 to 200"),
    ([{"name": "a", "function": "f", "bogus": 1}], "unknown field"),
    ("a", "steps must be a list"),
    ([Step("a", "http")], "needs payload={'url': ...}"),
    ([Step("a", "sql", payload={"sql": "x"})], "needs payload={'command': ...}"),
    ([Step(f"s{i}", "f") for i in range(101)], "needs 1 to 100 steps"),
])
def test_bad_pipelines_are_refused_with_what_is_wrong(steps, message):
    with pytest.raises(InvalidInput, match=message):
        App().pipeline("p", steps)


async def test_a_step_delay_counts_from_its_release(settings, sql):
    app = App(settings=settings)

    @app.function("quick")
    def quick(payload):
        return {"ok": True}

    app.pipeline("later", steps=[Step("now", "quick"), Step("then", "quick", after=["now"], delay=3600)])
    async with app:
        await app.record_pipelines_async()
        run = await app.start_pipeline_async("later")
        async with running(app):
            await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE step = 'then'")[0][0] == "pending",
                             timeout=30)
        seconds = sql("SELECT extract(epoch FROM run_at - now()) FROM jobline.jobs WHERE step = 'then'")[0][0]
        assert 3000 < seconds <= 3600
        run = await app.get_pipeline_run_async(run["id"])
        assert run["status"] == "running"
        assert any(h["event"] == "released" and h["message"].startswith("due at") for h in run["history"])


async def test_snooze_waits_without_spending_attempts_and_shows_in_the_history(papp, sql):
    job = await papp.enqueue_async("sleepy", {"times": 3})
    async with running(papp):
        await eventually(lambda: sql("SELECT status FROM jobline.jobs WHERE id = %s", [job.id])[0][0] == "succeeded",
                         timeout=60)
    done = await papp.get_job_async(job.id)
    # max_attempts was 1: three snoozes and a run, with no attempt counted against it.
    assert done.result == {"snoozed": 3, "attempt": 4}
    assert (done.attempts, done.max_attempts) == (4, 4)
    outcomes = [a.outcome for a in await papp.ops.jobs.attempts(SERVICE, job.id)]
    assert outcomes == ["snoozed", "snoozed", "snoozed", "succeeded"]


async def test_a_retried_job_gets_its_declared_budget_again_however_often_it_snoozed(papp, sql):
    """jobline.retry_budget, for job_retry.sql and retry_pipeline_run alike: attempts made plus the
    budget less the snoozes (each raised max_attempts by one without being a try)."""
    job = await papp.enqueue_async("draft", {"topic": "t"}, max_attempts=3)
    # Two snoozes, then three failed tries: the budget of 3 is spent (attempts 5 of max 5).
    sql("UPDATE jobline.jobs SET status = 'failed', attempts = 5, max_attempts = 5, finished_at = now() "
        "WHERE id = %s", [job.id])
    sql("INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome) "
        "SELECT %s, n, 'w', now(), now(), CASE WHEN n <= 2 THEN 'snoozed' ELSE 'failed' END "
        "FROM generate_series(1, 5) n", [job.id])
    again = await papp.ops.jobs.retry(SERVICE, job.id)
    assert (again.status, again.attempts, again.max_attempts) == ("pending", 5, 8)  # three more tries


def test_snooze_refuses_a_bad_duration():
    with pytest.raises(InvalidInput):
        Snooze(-1)


async def test_two_worker_processes_run_a_fan_out_fan_in_pipeline(papp, db_url, sql, processes):
    """Real processes: each step may run in either; the fan-in step starts once, after both
    branches, and reads both results whichever process made them."""
    runs = [(await papp.start_pipeline_async("publish", {"topic": f"t{i}"}))["id"] for i in range(6)]
    for _ in range(2):
        processes.append(start_jobline(["--app", "apps.pipelines:app", "worker", "--concurrency", "4"], db_url))
    await eventually(lambda: all(run_status(sql, r) == "succeeded" for r in runs), timeout=90)
    for run_id in runs:
        run = await papp.get_pipeline_run_async(run_id)
        steps = {s["name"]: s for s in run["steps"]}
        assert all(s["attempts"] == 1 for s in steps.values())
        assert steps["assemble"]["result"]["post"].startswith(f"ABOUT T{run_id - runs[0]}".upper())
    assert sql("SELECT count(*) FROM jobline.pipeline_history WHERE step IS NULL AND event = 'succeeded'") == [(6,)]


async def test_an_http_step_fills_upstream_into_its_body_as_data_never_as_secrets(db_url, sql):
    """The operator's body template may hold {{secret:...}} (resolved) and {{upstream...}}
    (filled in after): a `{{secret:...}}` that an upstream step returned goes out literally."""
    from jobline import vault
    from jobline.settings import Settings
    from receiver import Receiver

    app = App(settings=Settings(database_url=db_url, poll_interval=0.2, http_allow="127.0.0.0/8",
                                master_key=vault.generate_key()))

    @app.function("write")
    def write(payload):
        return {"text": "hello {{secret:token}}", "n": 3}

    with Receiver() as receiver:
        app.pipeline("announce", steps=[
            Step("write", "write"),
            Step("post", "http", after=["write"], payload={
                "url": receiver.url("/posts"), "headers": {"Authorization": "Bearer {{secret:token}}"},
                "body": {"status": "{{upstream.write.text}}", "count": "{{upstream.write.n}}",
                         "sig": "{{secret:token}}-{{upstream.write.n}}"}}),
        ])
        async with app:
            await app.set_secret_async("token", "s3cr3t")
            await app.record_pipelines_async()
            run = await app.start_pipeline_async("announce", {"url": "http://evil.example/", "body": "x"})
            async with running(app):
                await eventually(lambda: run_status(sql, run["id"]) != "running", timeout=30)
            done = await app.get_pipeline_run_async(run["id"])
        assert done["status"] == "succeeded", done
        [seen] = receiver.requests
        assert seen.path == "/posts" and seen.headers["authorization"] == "Bearer s3cr3t"
        assert seen.json() == {"status": "hello {{secret:token}}", "count": 3, "sig": "s3cr3t-3"}


async def test_many_runs_finishing_at_once_in_four_processes_settle_once_each_without_deadlocks(
        papp, db_url, sql, processes):
    """Four worker processes complete steps of many runs in batches, in every order: each run
    ends succeeded exactly once, with the join seeing all ten branches, and PostgreSQL records
    no deadlock (the run rows are locked in one order: see pipeline_run_settle)."""
    deadlocks = lambda: sql("SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()")[0][0]  # noqa: E731
    before = deadlocks()
    runs = [(await papp.start_pipeline_async("wide"))["id"] for _ in range(40)]
    for _ in range(4):
        processes.append(start_jobline(["--app", "apps.pipelines:app", "worker", "--concurrency", "16"], db_url,
                                       JOBLINE_LOG_LEVEL="warning"))
    await eventually(lambda: sql("SELECT count(*) FROM jobline.pipeline_runs WHERE status = 'succeeded'")[0][0] == 40,
                     timeout=120)
    assert sql("SELECT run_id, count(*) FROM jobline.pipeline_history WHERE step IS NULL AND event = 'succeeded' "
               "GROUP BY run_id HAVING count(*) <> 1") == []
    assert sql("SELECT DISTINCT result FROM jobline.jobs WHERE step = 'join'") == [({"joined": 10},)]
    assert sql("SELECT count(*) FROM jobline.pipeline_runs WHERE id = ANY(%s) AND finished_at IS NOT NULL",
               [runs]) == [(40,)]
    for process in processes:
        process.terminate()
    outputs = [process.communicate(timeout=30)[0] for process in processes]
    assert deadlocks() == before, "\n".join(o for o in outputs if "deadlock" in o)[:3000]


async def test_retention_removes_a_run_once_its_step_jobs_are_gone_and_a_pruned_run_cannot_retry(papp, sql):
    from jobline.runtime.maintenance import Maintenance

    kept = await papp.start_pipeline_async("flaky")
    gone = await papp.start_pipeline_async("flaky")
    for run in (kept, gone):  # finished two days ago: first succeeded, shaky failed, last cancelled
        sql("UPDATE jobline.jobs SET status = CASE step WHEN 'first' THEN 'succeeded' WHEN 'shaky' THEN 'failed' "
            "ELSE 'cancelled' END, finished_at = now() - interval '2 days' WHERE pipeline_run_id = %s", [run["id"]])
        sql("UPDATE jobline.pipeline_runs SET finished_at = now() - interval '2 days' WHERE id = %s", [run["id"]])
    assert sql("SELECT status FROM jobline.pipeline_runs ORDER BY id") == [("failed",), ("failed",)]
    sql("DELETE FROM jobline.jobs WHERE pipeline_run_id = %s AND step = 'first'", [kept["id"]])  # retention took one
    sql("DELETE FROM jobline.jobs WHERE pipeline_run_id = %s", [gone["id"]])                     # ... or all

    shown = await papp.get_pipeline_run_async(kept["id"])
    assert [s["status"] for s in shown["steps"]] == ["pruned", "failed", "cancelled"]
    with pytest.raises(Conflict, match="retention removed some of its steps"):
        await papp.retry_pipeline_run_async(kept["id"])

    day = 86400.0
    settings = dataclasses.replace(papp.settings, retain_succeeded_seconds=day, retain_failed_seconds=day,
                                   retain_cancelled_seconds=day)
    sql("UPDATE jobline.jobs SET finished_at = now() WHERE pipeline_run_id = %s", [kept["id"]])  # within retention
    await Maintenance(papp.store, settings).prune()
    assert sql("SELECT id FROM jobline.pipeline_runs") == [(kept["id"],)]   # a run with steps left stays
    assert sql("SELECT count(*) FROM jobline.pipeline_history WHERE run_id = %s", [gone["id"]]) == [(0,)]


async def test_retention_keeps_the_finished_steps_of_a_run_still_running(papp, sql):
    """A later step may wait days (a delay, a snooze): the results it reads as its upstream are
    kept past their retention while its run is running, and pruned once it has finished."""
    from jobline.runtime.maintenance import Maintenance

    run = await papp.start_pipeline_async("flaky")
    sql("UPDATE jobline.jobs SET status = 'succeeded', result = '{\"n\": 1}', finished_at = now() - interval '8 days' "
        "WHERE pipeline_run_id = %s AND step = 'first'", [run["id"]])
    assert run_status(sql, run["id"]) == "running"
    day = 86400.0
    settings = dataclasses.replace(papp.settings, retain_succeeded_seconds=day, retain_failed_seconds=day,
                                   retain_cancelled_seconds=day)
    await Maintenance(papp.store, settings).prune()
    assert sql("SELECT step FROM jobline.jobs WHERE pipeline_run_id = %s AND status = 'succeeded'", [run["id"]]) == [
        ("first",)]
    sql("UPDATE jobline.pipeline_runs SET status = 'failed', finished_at = now() WHERE id = %s", [run["id"]])
    await Maintenance(papp.store, settings).prune()
    assert sql("SELECT count(*) FROM jobline.jobs WHERE pipeline_run_id = %s AND step = 'first'", [run["id"]]) == [
        (0,)]


def test_a_schedule_declared_in_code_can_target_a_pipeline():
    app = App()
    spec = app.schedule("nightly", "0 6 * * *", pipeline="publish", payload={"topic": "t"}, owner="alice")
    assert (spec.function, spec.owner) == ("pipeline", "alice")
    assert spec.payload_json == '{"pipeline":"publish","payload":{"topic":"t"}}'
    with pytest.raises(InvalidInput, match="one of a function, a SQL command or a pipeline"):
        app.schedule("both", "@daily", "draft", pipeline="publish")
    with pytest.raises(InvalidInput, match="pipeline name"):
        app.schedule("bad", "@daily", pipeline=" x")


async def test_start_pipeline_async_in_the_callers_transaction_commits_or_rolls_back_with_it(papp, db_url, sql):
    async with await psycopg.AsyncConnection.connect(db_url) as conn:
        run = await papp.start_pipeline_async("publish", {"topic": "t"}, owner="carol", conn=conn)
        assert run == {"id": run["id"], "pipeline": "publish", "owner": "carol", "status": "running"}
        await conn.rollback()
        kept = await papp.start_pipeline_async("publish", {"topic": "t"}, conn=conn)
        await conn.commit()
    assert sql("SELECT id FROM jobline.pipeline_runs") == [(kept["id"],)]
    assert sql("SELECT count(*) FROM jobline.jobs") == [(4,)]


async def test_a_finished_run_raises_its_event_to_its_owner(papp, sql):
    """pipeline.succeeded and pipeline.failed (0020's record_event, called where 0021 settles a run)."""
    ok = await papp.start_pipeline_async("publish", {"topic": "x"}, owner="alice")
    bad = await papp.start_pipeline_async("flaky", {"fail": True}, owner="bob")
    async with running(papp):
        await eventually(lambda: run_status(sql, ok["id"]) != "running" and run_status(sql, bad["id"]) != "running",
                         timeout=60)
    events = sql("SELECT kind, owner, subject, data FROM jobline.notifications WHERE kind LIKE 'pipeline.%%' "
                 "ORDER BY id")
    assert {(kind, owner, subject) for kind, owner, subject, _ in events} == {
        ("pipeline.succeeded", "alice", f"publish #{ok['id']}"), ("pipeline.failed", "bob", f"flaky #{bad['id']}")}
    assert len(events) == 2
    data = {kind: d for kind, _, _, d in events}
    assert data["pipeline.failed"] == {"run_id": bad["id"], "pipeline": "flaky", "status": "failed",
                                       "failed_steps": ["shaky"]}
    # The step's own final failure is a job.failed of its own, to the same owner.
    assert sql("SELECT count(*) FROM jobline.notifications WHERE kind = 'job.failed' AND owner = 'bob'") == [(1,)]


async def test_a_schedule_of_a_pipeline_reports_the_runs_outcome_and_pauses_after_failed_runs(papp, sql):
    """A tick's job (the built-in `pipeline`) makes the run's steps its children: the tick's run
    status follows the pipeline's (pg_cron's job_run_details), and failed runs count against
    max_consecutive_failures."""
    await papp.ops.schedules.add(SERVICE, "flaky-weekly", "0 6 * * MON", pipeline="flaky", payload={"fail": "always"},
                                 owner="alice", max_consecutive_failures=2)
    async with running(papp):
        for n in range(2):
            _, job_id = await papp.ops.schedules.trigger(SERVICE, "flaky-weekly")
            await eventually(lambda: sql("SELECT status FROM jobline.job_run_details WHERE runid = "
                                         "(SELECT max(id) FROM jobline.schedule_runs)")[0][0] in ("succeeded", "failed"),
                             timeout=60)
            assert sql("SELECT status FROM jobline.job_run_details WHERE runid = (SELECT max(id) FROM "
                       "jobline.schedule_runs)") == [("failed",)]
            # The run's steps are the tick job's children.
            assert sql("SELECT count(*) FROM jobline.jobs WHERE parent_id = %s AND pipeline_run_id IS NOT NULL",
                       [job_id]) == [(3,)]
    schedule = await papp.ops.schedules.get(SERVICE, "flaky-weekly")
    assert not schedule.active and schedule.deactivated_reason.startswith("2 runs in a row failed")


def test_start_pipeline_refuses_a_parent_that_is_not_a_running_job_of_the_owner(papp, sql):
    job_id = sql("SELECT jobline.enqueue('draft', owner => 'alice')")[0][0]
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a running job of the same owner"):
        sql("SELECT jobline.start_pipeline('publish', '{}', 'alice', %s)", [job_id])
    sql("UPDATE jobline.jobs SET status = 'running' WHERE id = %s", [job_id])
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="not a running job of the same owner"):
        sql("SELECT jobline.start_pipeline('publish', '{}', 'bob', %s)", [job_id])
    run_id = sql("SELECT jobline.start_pipeline('publish', '{\"topic\": \"t\"}', 'alice', %s)", [job_id])[0][0]
    assert sql("SELECT count(*) FROM jobline.jobs WHERE pipeline_run_id = %s AND parent_id = %s",
               [run_id, job_id]) == [(4,)]
