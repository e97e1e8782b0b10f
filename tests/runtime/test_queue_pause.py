"""Paused queues (0016_queue_pauses.sql): no worker claims their jobs, in-process or remote, until
they are resumed; resuming wakes idle workers; schedules keep adding jobs; the operator's "run
now" still runs one job, for one attempt."""

from __future__ import annotations

import dataclasses

import pytest

from conftest import eventually, running
from jobline import App, Forbidden, InvalidInput, RetryIn
from jobline.auth import SERVICE, Principal

pytestmark = pytest.mark.timeout(90)

ALICE = Principal(user_id="alice", via="api_token")


@pytest.fixture
async def sleepy_app(settings):
    """An App whose workers poll once an hour: only a notification wakes them in a test's time."""
    app = App(settings=dataclasses.replace(settings, poll_interval=3600))
    ran: list[int] = []

    @app.function("note")
    def note(payload, ctx):
        ran.append(ctx.job_id)

    @app.function("refuse", max_attempts=5)
    def refuse(payload, ctx):
        ran.append(ctx.job_id)
        raise RetryIn(3600)

    app.ran = ran
    async with app:
        yield app


def status_of(sql, job_id: int) -> str:
    return sql("SELECT status FROM jobline.jobs WHERE id = %s", [job_id])[0][0]


async def test_a_paused_queue_waits_while_others_run_and_resume_wakes_the_idle_workers(sleepy_app, sql):
    app = sleepy_app
    await app.pause_queue_async("emails", reason="provider outage")
    async with running(app):
        held = await app.enqueue_async("note", queue="emails")
        free = await app.enqueue_async("note", queue="default")
        # The claim that took `free` saw `held` too (it was enqueued first) and left it.
        await eventually(lambda: status_of(sql, free.id) == "succeeded", timeout=30)
        assert status_of(sql, held.id) == "pending" and app.ran == [free.id]
        listed = {q["queue"]: q for q in await app.ops.queues.list(SERVICE)}
        assert listed["emails"]["paused"] and listed["emails"]["pause_reason"] == "provider outage"
        assert listed["emails"]["due"] == 1 and not listed["default"]["paused"]

        resumed = await app.resume_queue_async("emails")
        assert resumed == {"queue": "emails", "paused": False, "was_paused": True}
        # The workers poll hourly: only the resume's notification can have woken them.
        await eventually(lambda: status_of(sql, held.id) == "succeeded", timeout=30)
    assert (await app.resume_queue_async("emails"))["was_paused"] is False


async def test_a_pause_outlives_the_process_that_made_it_and_holds_for_a_new_worker(settings, sql):
    async with App(settings=settings) as first:
        await first.pause_queue_async("reports")
    app = App(settings=settings)
    app.function("note")(lambda payload: None)
    async with app:
        held = await app.enqueue_async("note", queue="reports")
        assert (await app.process_async()).processed == 0 and status_of(sql, held.id) == "pending"
        await app.resume_queue_async("reports")
        assert (await app.process_async()).processed == 1


async def test_schedules_keep_adding_jobs_to_a_paused_queue(sleepy_app, sql):
    app = sleepy_app
    await app.pause_queue_async("nightly")
    await app.add_schedule_async("digest", "0 3 * * *", "note", queue="nightly")
    _, job_id = await app.ops.schedules.trigger(SERVICE, "digest")
    async with running(app):
        other = await app.enqueue_async("note")
        await eventually(lambda: status_of(sql, other.id) == "succeeded", timeout=30)
    assert status_of(sql, job_id) == "pending"


async def test_the_operators_run_now_runs_one_attempt_of_a_paused_queues_job_and_a_users_waits(sleepy_app, sql):
    app = sleepy_app
    await app.pause_queue_async("emails")
    mine = await app.enqueue_async("note", queue="emails", owner="alice")
    forced = await app.enqueue_async("refuse", queue="emails", delay=600)
    async with running(app):
        await app.ops.jobs.run_now(ALICE, mine.id)  # due now, but the pause holds a user's job
        await app.ops.jobs.run_now(SERVICE, forced.id)
        await eventually(lambda: app.ran == [forced.id], timeout=30)
        await eventually(lambda: sql("SELECT status, attempts FROM jobline.jobs WHERE id = %s", [forced.id])
                         == [("pending", 1)], timeout=30)
        # Its retry is due, but the exemption was for the attempt that ran: it waits again.
        sql("UPDATE jobline.jobs SET run_at = now() WHERE id = %s", [forced.id])
        probe = await app.enqueue_async("note")
        await eventually(lambda: status_of(sql, probe.id) == "succeeded", timeout=30)
        assert app.ran == [forced.id, probe.id] and status_of(sql, mine.id) == "pending"
    maintenance = await app.maintenance_async()
    await maintenance.prune()
    assert sql("SELECT count(*) FROM jobline.queue_pause_exemptions") == [(0,)]


async def test_remote_workers_claim_nothing_from_a_paused_queue(sleepy_app):
    app = sleepy_app
    job = await app.enqueue_async("transcode", queue="media")
    await app.pause_queue_async("media")
    assert await app.ops.tasks.claim(SERVICE, ["transcode"]) is None
    await app.resume_queue_async("media")
    task = await app.ops.tasks.claim(SERVICE, ["transcode"])
    assert task is not None and task.task_id == job.id


@pytest.mark.parametrize("queue, reason, message", [
    ("", None, "queue must be 1 to 100 characters"),
    ("x" * 101, None, "queue must be 1 to 100 characters"),
    ("bad\nname", None, "contains a control character"),
    (" padded", None, "leading or trailing spaces"),
    ("emails", "r" * 501, "reason must be 1 to 500 characters"),
    ("emails", "two\nlines", "reason 'two\\nlines' contains a control character"),
])
async def test_a_malformed_pause_is_refused_and_stores_nothing(app, sql, queue, reason, message):
    with pytest.raises(InvalidInput, match=message.replace("\\", "\\\\")):
        await app.pause_queue_async(queue, reason)
    assert sql("SELECT count(*) FROM jobline.queue_pauses") == [(0,)]


async def test_a_user_cannot_pause_or_resume_a_queue_but_sees_its_state(app):
    await app.pause_queue_async("emails")
    await app.enqueue_async("note", queue="emails", owner="alice")
    with pytest.raises(Forbidden, match="needs the service key"):
        await app.ops.queues.pause(ALICE, "default")
    with pytest.raises(Forbidden, match="needs the service key"):
        await app.ops.queues.resume(ALICE, "emails")
    [emails] = await app.ops.queues.list(ALICE)
    assert emails["queue"] == "emails" and emails["paused"] and emails["pending"] == 1
