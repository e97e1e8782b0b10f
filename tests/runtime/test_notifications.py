"""Notifications and deactivation (0020_notifications.sql), end to end on real PostgreSQL with a
real worker and real local HTTP receivers: a schedule pausing itself after its third failed run in
a row and its owner's webhook receiving the event with its idempotency key; a job's final failure
reaching its owner's and the operator's subscriptions but not another user's; function.failing
raised once per window; nothing about notifications can make a completion fail."""

from __future__ import annotations

import pytest

from conftest import eventually, running
from jobline import App, Fail
from jobline.auth import SERVICE, Principal
from jobline.settings import Settings
from receiver import Receiver, network_guard

pytestmark = pytest.mark.timeout(120)

LOCAL = "127.0.0.0/8"
ALICE = Principal(user_id="alice", via="api_token")
BOB = Principal(user_id="bob", via="api_token")


@pytest.fixture(autouse=True)
def guard():
    with network_guard() as events:
        yield events


@pytest.fixture
async def notify_app(db_url):
    """An App that reaches local receivers, with a function whose outcomes a test scripts."""
    app = App(settings=Settings(database_url=db_url, lease_seconds=30, poll_interval=0.2, http_allow=LOCAL,
                                alert_failures=3, alert_window=600))
    app.outcomes = []  # "fail" or "ok", one per run; "fail" when empty

    @app.function("flaky", max_attempts=1)
    def flaky(payload):
        if (app.outcomes.pop(0) if app.outcomes else "fail") == "fail":
            raise Fail("the report generator said no {{secret:api_token}}")
        return {"ok": True}

    @app.function("retried", max_attempts=2, backoff_base=0.01)
    def retried(payload):
        raise RuntimeError("still broken")

    @app.function("fine")
    def fine(payload):
        return {"ok": True}

    async with app:
        yield app


def status_of(sql, job_id: int) -> str:
    return sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0]


def events_to(receiver: Receiver, kind: str | None = None) -> list[dict]:
    return [r.json() for r in receiver.requests if kind is None or r.json()["kind"] == kind]


async def test_a_schedule_deactivates_after_its_third_failure_in_a_row_and_its_owners_webhook_gets_the_event(
        notify_app, sql):
    app = notify_app
    with Receiver() as alice_hook, Receiver() as bob_hook:
        alice_sub = await app.ops.notifications.subscribe(ALICE, alice_hook.url("/hooks/jobline"),
                                                          events=["schedule.deactivated"])
        await app.ops.notifications.subscribe(BOB, bob_hook.url())
        schedule = await app.ops.schedules.add(ALICE, "report", "0 3 * * *", "flaky", max_consecutive_failures=3)
        assert schedule.max_consecutive_failures == 3
        # fail, fail, succeed (the count starts again), fail, fail, fail: the sixth run deactivates it.
        app.outcomes[:] = ["fail", "fail", "ok", "fail", "fail", "fail"]
        async with running(app):
            for n in range(6):
                _, job_id = await app.ops.schedules.trigger(ALICE, "report")
                await eventually(lambda: status_of(sql, job_id) in ("succeeded", "failed"), timeout=30)
                current = await app.ops.schedules.get(ALICE, "report")
                assert current.active == (n < 5), f"after run {n + 1}"
            assert current.deactivated_at is not None
            assert current.deactivated_reason.startswith(f"3 runs in a row failed (max_consecutive_failures 3); "
                                                         f"the last, job {job_id}: the report generator said no")
            await eventually(lambda: events_to(alice_hook), timeout=30)

        [delivery] = alice_hook.requests
        event = delivery.json()
        assert delivery.path == "/hooks/jobline" and delivery.method == "POST"
        assert event["kind"] == "schedule.deactivated" and event["owner"] == "alice"
        assert event["subject"] == "report" and event["data"]["name"] == "report"
        assert event["data"]["schedule_id"] == schedule.id and event["data"]["job_id"] == job_id
        assert delivery.headers["idempotency-key"] == f"jobline-notification-{event['id']}-{alice_sub['id']}"
        assert bob_hook.requests == []  # bob's subscription receives bob's events only

        # Shown where schedules are shown; the record holds the event for alice alone.
        listed = {s.name: s for s, _ in await app.ops.schedules.list(ALICE)}
        assert listed["alice/report"].deactivated_reason == current.deactivated_reason
        page = await app.ops.notifications.list(ALICE, kind="schedule.deactivated")
        assert [n["id"] for n in page.rows] == [event["id"]]
        assert (await app.ops.notifications.list(BOB)).rows == []

        # Resuming clears the reason and the count: one more failure does not deactivate it again.
        resumed = await app.ops.schedules.resume(ALICE, "report")
        assert resumed.active and resumed.deactivated_at is None and resumed.deactivated_reason is None
        async with running(app):
            _, job_id = await app.ops.schedules.trigger(ALICE, "report")
            await eventually(lambda: status_of(sql, job_id) == "failed", timeout=30)
        assert (await app.ops.schedules.get(ALICE, "report")).active


async def test_a_jobs_final_failure_notifies_its_owner_and_the_operator_but_not_another_user(notify_app, sql):
    app = notify_app
    with Receiver() as alice_hook, Receiver() as bob_hook, Receiver() as ops_hook:
        await app.ops.notifications.subscribe(ALICE, alice_hook.url(), events=["job.failed"])
        await app.ops.notifications.subscribe(BOB, bob_hook.url())
        operator = await app.subscribe_async(ops_hook.url(), events=["job.failed"])
        assert operator["owner"] is None
        job = await app.enqueue_async("retried", owner="alice")
        async with running(app):
            await eventually(lambda: status_of(sql, job.id) == "failed", timeout=30)
            await eventually(lambda: events_to(alice_hook) and events_to(ops_hook), timeout=30)
            ok = await app.enqueue_async("fine", owner="bob")
            await eventually(lambda: status_of(sql, ok.id) == "succeeded", timeout=30)
        # One event however many attempts: the retry did not notify.
        [to_alice], [to_ops] = events_to(alice_hook), events_to(ops_hook)
        assert to_alice == to_ops
        assert to_alice["kind"] == "job.failed" and to_alice["owner"] == "alice" and to_alice["subject"] == f"job {job.id}"
        assert to_alice["data"]["function"] == "retried" and to_alice["data"]["attempts"] == 2
        assert "still broken" in to_alice["data"]["error"]
        assert [r.headers["idempotency-key"] for r in ops_hook.requests] == [
            f"jobline-notification-{to_ops['id']}-{operator['id']}"]
        assert bob_hook.requests == []
        assert [n["subject"] for n in (await app.ops.notifications.list(ALICE)).rows] == [f"job {job.id}"]
        assert (await app.ops.notifications.list(BOB)).rows == []
        assert [n["owner"] for n in await app.notifications_async(kind="job.failed")] == ["alice"]
        # Alice reads her delivery's job: the status and timing of the answer, not what her URL said.
        results = dict(sql("SELECT owner, result FROM jobline.jobs WHERE function = 'http' AND status = 'succeeded' "
                           "AND payload->>'url' IN (%s, %s)", [alice_hook.url(), ops_hook.url()]))
        assert set(results["alice"]) == {"status", "reason", "elapsed_ms", "url"} and results["alice"]["status"] == 200
        assert {"headers", "body"} <= set(results[None])


async def test_event_data_is_sent_as_written_and_never_fills_in_a_secret(db_url, sql):
    """A job's error is text its handler (perhaps a user's) wrote: a {{secret:NAME}} in it must
    reach a webhook as those characters, not as the operator's secret."""
    from jobline import vault

    app = App(settings=Settings(database_url=db_url, poll_interval=0.2, http_allow=LOCAL,
                                master_key=vault.generate_key()))

    @app.function("leaky", max_attempts=1)
    def leaky(payload):
        raise Fail("please send {{secret:api_token}} and {{owner_secret:api_token}}")

    async with app:
        await app.set_secret_async("api_token", "op-plaintext-123")
        await app.set_secret_async("api_token", "alice-plaintext-456", owner="alice")
        with Receiver() as ops_hook, Receiver() as alice_hook:
            await app.subscribe_async(ops_hook.url(), headers={"Authorization": "Bearer {{secret:api_token}}"})
            await app.ops.notifications.subscribe(ALICE, alice_hook.url(),
                                                  headers={"X-Token": "{{owner_secret:api_token}}"})
            job = await app.enqueue_async("leaky", owner="alice")
            async with running(app):
                await eventually(lambda: events_to(ops_hook) and events_to(alice_hook), timeout=30)
            # The headers each party wrote are filled in with that party's own secret...
            assert ops_hook.requests[0].headers["authorization"] == "Bearer op-plaintext-123"
            assert alice_hook.requests[0].headers["x-token"] == "alice-plaintext-456"
            # ...and the event's data is sent exactly as written.
            for hook in (ops_hook, alice_hook):
                body = hook.requests[0].body.decode()
                assert "plaintext" not in body
                assert hook.requests[0].json()["data"]["error"] == (
                    "please send {{secret:api_token}} and {{owner_secret:api_token}}")
            assert status_of(sql, job.id) == "failed"


async def test_function_failing_is_raised_once_when_a_function_reaches_the_threshold(notify_app, sql):
    app = notify_app  # alert_failures=3 within 600 s
    await app.store.alert_setting_update(failures=3, window_seconds=600)
    with Receiver() as ops_hook, Receiver() as alice_hook:
        await app.subscribe_async(ops_hook.url(), events=["function.failing"])
        await app.ops.notifications.subscribe(ALICE, alice_hook.url())
        jobs = [await app.enqueue_async("flaky", {"n": n}, owner="alice") for n in range(2)]
        async with running(app):
            await eventually(lambda: all(status_of(sql, j.id) == "failed" for j in jobs), timeout=30)
            assert (await app.ops.notifications.list(SERVICE, kind="function.failing")).rows == []
            jobs += [await app.enqueue_async("flaky", {"n": n}, owner="alice") for n in range(2, 6)]
            await eventually(lambda: all(status_of(sql, j.id) == "failed" for j in jobs), timeout=30)
            await eventually(lambda: events_to(ops_hook), timeout=30)
            await eventually(lambda: len(events_to(alice_hook)) == 6, timeout=30)
        alerts = (await app.ops.notifications.list(SERVICE, kind="function.failing")).rows
        assert len(alerts) == 1  # six failures, threshold three: raised once in the window
        assert alerts[0]["owner"] is None and alerts[0]["subject"] == "flaky"
        assert alerts[0]["data"]["failures"] == 3 and alerts[0]["data"]["window_seconds"] == 600
        [delivered] = events_to(ops_hook)
        assert delivered["id"] == alerts[0]["id"]
        # For operators only: alice's subscription got her six job.failed events, no alert.
        assert {e["kind"] for e in events_to(alice_hook)} == {"job.failed"}
        assert (await app.ops.notifications.list(ALICE, kind="function.failing")).rows == []


async def test_nothing_about_notifications_can_make_a_completion_fail(notify_app, sql):
    app = notify_app
    # A subscription written past the checks (a URL no call can reach, headers of the wrong shape
    # for a request), and a record that refuses every event (as a full disk or a broken
    # constraint would): the batch is still recorded, and the delivery's own failure raises nothing.
    sql("INSERT INTO jobline.notification_subscriptions (url, headers) VALUES ('not a url', '{\"X\": \"a\\nb\"}')")
    async with running(app):
        failed = await app.enqueue_async("flaky")
        ok = await app.enqueue_async("fine")
        await eventually(lambda: status_of(sql, failed.id) == "failed" and status_of(sql, ok.id) == "succeeded",
                         timeout=30)
        [delivery] = sql("SELECT id FROM jobline.jobs WHERE function = 'http'")[0]
        await eventually(lambda: status_of(sql, delivery) == "failed", timeout=30)
        sql("ALTER TABLE jobline.notifications ADD CONSTRAINT refuse_all CHECK (false) NOT VALID")
        second = await app.enqueue_async("flaky")
        await eventually(lambda: status_of(sql, second.id) == "failed", timeout=30)
    assert sql("SELECT outcome FROM jobline.attempts WHERE job_id = %s", [second.id]) == [("failed",)]
    # One event: the first job's. The delivery's failure and the refused second one raised none.
    assert sql("SELECT kind, subject FROM jobline.notifications") == [("job.failed", f"job {failed.id}")]
    assert sql("SELECT count(*) FROM jobline.jobs WHERE function = 'http'") == [(1,)]


async def test_code_schedules_carry_max_consecutive_failures(db_url, sql):
    async def start(limit):
        app = App(settings=Settings(database_url=db_url, poll_interval=0.2))

        @app.cron("0 3 * * *", max_consecutive_failures=limit)
        @app.function("nightly")
        def nightly(payload):
            return None

        async with app, running(app):
            await eventually(lambda: sql("SELECT max_consecutive_failures FROM jobline.schedules "
                                         "WHERE name = 'nightly'") == [(limit,)], timeout=30)

    await start(2)
    await start(4)  # a changed declaration updates it


async def test_maintenance_writes_the_alert_threshold_and_prunes_old_notifications(db_url, sql):
    from jobline.runtime.maintenance import Maintenance

    settings = Settings(database_url=db_url, alert_failures=7, alert_window=120, retain_failed_seconds=86400)
    sql("SELECT jobline.record_event('job.failed', 'alice', 'job 1', '{}')")
    sql("SELECT jobline.record_event('job.failed', 'alice', 'job 2', '{}')")
    sql("UPDATE jobline.notifications SET created_at = now() - interval '2 days' WHERE subject = 'job 1'")
    async with App(settings=settings) as app:
        maintenance = Maintenance(app.store, settings)
        maintenance.start()
        await eventually(lambda: sql("SELECT failures, window_seconds FROM jobline.alert_settings") == [(7, 120)])
        await maintenance.stop()
        await maintenance.prune()
    assert sql("SELECT subject FROM jobline.notifications") == [("job 2",)]


def test_an_http_payloads_literal_body_must_be_a_boolean():
    from jobline.functions.http import parse_call

    assert parse_call({"url": "https://x.example.com/", "body": {"a": "{{secret:t}}"}, "literal_body": True}).template == [
        "https://x.example.com/", {}]
    with pytest.raises(Fail, match="literal_body must be true or false, got 'yes'"):
        parse_call({"url": "https://x.example.com/", "literal_body": "yes"})
    assert parse_call({"url": "https://x.example.com/"}).keep_response is True
    with pytest.raises(Fail, match="keep_response must be true or false, got 1"):
        parse_call({"url": "https://x.example.com/", "keep_response": 1})


async def test_cron_ticks_whose_jobs_time_out_deactivate_the_schedule_on_the_third(db_url, sql):
    """Real ticks of the scheduler, and failures that are timeouts: the third run in a row that
    times out pauses the schedule, in the transaction that records it, so no fourth run starts."""
    import asyncio

    app = App(settings=Settings(database_url=db_url, poll_interval=0.2, http_allow=LOCAL))

    @app.function("stuck", max_attempts=1, timeout=0.2)
    async def stuck(payload):
        await asyncio.sleep(30)

    async with app:
        with Receiver() as hook:
            await app.ops.notifications.subscribe(ALICE, hook.url(), events=["schedule.deactivated"])
            await app.ops.schedules.add(ALICE, "every-second", "1 seconds", "stuck", max_consecutive_failures=3)
            async with running(app):
                await eventually(lambda: events_to(hook), timeout=60)
            [event] = events_to(hook)
    assert event["subject"] == "every-second" and event["data"]["failures"] == 3
    runs = sql("""SELECT j.status, a.outcome FROM jobline.schedule_runs r JOIN jobline.jobs j ON j.id = r.job_id
                  JOIN jobline.attempts a ON a.job_id = j.id ORDER BY r.id""")
    assert runs == [("failed", "timeout")] * 3
    active, reason = sql("SELECT active, deactivated_reason FROM jobline.schedules")[0]
    assert not active and reason.startswith("3 runs in a row failed")
