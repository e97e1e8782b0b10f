"""The scheduler against a real database, on an injected clock: one job per tick however many
schedulers run, overlap and catch-up policies, daylight-saving transitions, a kill between
recording a tick and creating its job, reconciliation of code schedules, and real-time firing."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from collections import Counter

import psycopg
import pytest

from conftest import eventually
from jobline import App, InvalidInput
from jobline.db.store import Store
from jobline.runtime.maintenance import Maintenance
from jobline.runtime.scheduler import Scheduler
from jobline.schedule import new_schedule

pytestmark = pytest.mark.timeout(90)

UTC = dt.timezone.utc
NEW_YORK = zoneinfo.ZoneInfo("America/New_York")


def scheduler(store: Store) -> Scheduler:
    return Scheduler(store, asyncio.Event(), max_sleep=86400)  # the clock jumps to each due time


def since(sql, moment: dt.datetime) -> None:
    """Pretend every schedule was made at ``moment`` (state is set up by writing it)."""
    sql("UPDATE jobline.schedules SET changed_at = %s, next_run_at = NULL", [moment])


def runs(sql, name: str) -> list[tuple]:
    return sql("""SELECT r.tick_at, r.status, r.job_id FROM jobline.schedule_runs r
                  JOIN jobline.schedules s ON s.id = r.schedule_id WHERE s.name = %s ORDER BY r.id""", [name])


@pytest.fixture
async def stores(db_url):
    """Three stores: three schedulers with their own connections."""
    opened = [Store(db_url) for _ in range(3)]
    for store in opened:
        await store.open()
    yield opened
    for store in opened:
        await store.close()


async def test_a_tick_creates_one_job_with_its_payload_and_run_at(app, store, sql):
    await app.add_schedule_async("report", "*/5 * * * *", "report", {"kind": "weekly"}, owner="u1", priority=4)
    start = dt.datetime(2026, 1, 1, 11, 58, tzinfo=UTC)
    since(sql, start)
    s = scheduler(store)
    assert await s.tick(now=start) == pytest.approx(120)        # planned: first tick at 12:00
    assert sql("SELECT next_run_at FROM jobline.schedules") == [(dt.datetime(2026, 1, 1, 12, tzinfo=UTC),)]
    await s.tick(now=dt.datetime(2026, 1, 1, 12, 0, 0, 300_000, tzinfo=UTC))
    await s.tick(now=dt.datetime(2026, 1, 1, 12, 0, 1, tzinfo=UTC))  # nothing new
    [(tick, status, job_id)] = runs(sql, "report")
    job = await store.job_get(job_id)
    assert (tick, status) == (dt.datetime(2026, 1, 1, 12, tzinfo=UTC), "created")
    assert (job.function, job.payload, job.owner, job.priority, job.run_at) == (
        "report", {"kind": "weekly"}, "u1", 4, tick)


async def test_three_schedulers_at_once_create_exactly_one_job_per_tick(app, stores, sql):
    await app.add_schedule_async("often", "* * * * *", "often", overlap="allow")
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    since(sql, start - dt.timedelta(seconds=1))
    schedulers = [scheduler(s) for s in stores]
    now = start
    while now < start + dt.timedelta(hours=1):
        waits = await asyncio.gather(*(s.tick(now=now) for s in schedulers))
        now += dt.timedelta(seconds=max(min(waits), 0.001))
    ticks = runs(sql, "often")
    assert [t for t, _, _ in ticks] == [start + dt.timedelta(minutes=m) for m in range(60)]
    assert {status for _, status, _ in ticks} == {"created"}
    assert sql("SELECT count(*), count(DISTINCT run_at) FROM jobline.jobs") == [(60, 60)]


@pytest.mark.parametrize("window", [(dt.date(2026, 3, 7), 3), (dt.date(2026, 10, 31), 3)])
async def test_daylight_saving_transitions_with_three_schedulers(app, stores, sql, window):
    """Daily runs in New York neither skip nor double across both 2026 transitions; a
    quarter-hourly schedule fires once per real instant (92 on the short day, 100 on the long)."""
    first_day, days = window
    for name, expression in [("at-0230", "30 2 * * *"), ("at-0130", "30 1 * * *"), ("quarterly", "*/15 * * * *")]:
        await app.add_schedule_async(name, expression, name, timezone="America/New_York", overlap="allow")
    start = dt.datetime.combine(first_day, dt.time(), NEW_YORK).astimezone(UTC)
    end = dt.datetime.combine(first_day + dt.timedelta(days=days), dt.time(), NEW_YORK).astimezone(UTC)
    since(sql, start - dt.timedelta(seconds=1))
    schedulers = [scheduler(s) for s in stores]
    now = start
    while now < end:
        waits = await asyncio.gather(*(s.tick(now=now) for s in schedulers))
        now += dt.timedelta(seconds=max(min(waits), 0.001))

    def local_days(name: str) -> Counter:
        return Counter(t.astimezone(NEW_YORK).date() for t, status, _ in runs(sql, name) if status == "created")

    days_in_window = [first_day + dt.timedelta(days=n) for n in range(days)]
    assert local_days("at-0230") == {d: 1 for d in days_in_window}
    assert local_days("at-0130") == {d: 1 for d in days_in_window}
    transition = first_day + dt.timedelta(days=1)
    expected_quarters = {d: 96 for d in days_in_window}
    expected_quarters[transition] = 92 if transition.month == 3 else 100
    assert local_days("quarterly") == expected_quarters
    if transition.month == 3:  # 02:30 does not exist that day: it runs at 03:00 EDT
        spring = [t.astimezone(NEW_YORK) for t, _, _ in runs(sql, "at-0230") if t.astimezone(NEW_YORK).date() == transition]
        assert [t.strftime("%H:%M %Z") for t in spring] == ["03:00 EDT"]
    else:  # 01:30 happens twice that day: it runs at the first
        autumn = [t.astimezone(NEW_YORK) for t, _, _ in runs(sql, "at-0130") if t.astimezone(NEW_YORK).date() == transition]
        assert [t.strftime("%H:%M %Z") for t in autumn] == ["01:30 EDT"]
    counts = sql("SELECT count(*), count(DISTINCT (schedule_id, tick_at)) FROM jobline.schedule_runs")
    assert counts[0][0] == counts[0][1]


async def test_overlap_skip_records_skipped_ticks_until_the_run_finishes(app, store, sql):
    await app.add_schedule_async("slow", "* * * * *", "slow")
    start = dt.datetime(2026, 1, 1, tzinfo=UTC)
    since(sql, start - dt.timedelta(seconds=1))
    s = scheduler(store)
    for minute in range(3):
        await s.tick(now=start + dt.timedelta(minutes=minute, seconds=1))
    assert [status for _, status, _ in runs(sql, "slow")] == ["created", "skipped", "skipped"]
    first_job = runs(sql, "slow")[0][2]
    assert sql("SELECT message FROM jobline.schedule_runs WHERE status = 'skipped' LIMIT 1") == [
        (f"job {first_job} of an earlier run was still pending (overlap: skip)",)]
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now() WHERE id = %s", [first_job])
    await s.tick(now=start + dt.timedelta(minutes=3, seconds=1))
    assert runs(sql, "slow")[-1][1] == "created"


@pytest.mark.parametrize("policy, created, overlap", [("latest", 1, "skip"), ("none", 0, "skip"),
                                                      ("all", 10, "skip"), ("all", 10, "allow")])
async def test_catch_up_after_three_hours_down(app, store, sql, policy, created, overlap):
    await app.add_schedule_async("five", "*/5 * * * *", "five", catch_up=policy, catch_up_max=10, overlap=overlap)
    down_since = dt.datetime(2026, 1, 1, tzinfo=UTC)
    sql("UPDATE jobline.schedules SET next_run_at = %s", [down_since])
    await scheduler(store).tick(now=down_since + dt.timedelta(hours=3, minutes=2))
    recorded = runs(sql, "five")
    assert [status for _, status, _ in recorded] == ["missed"] + ["created"] * created
    jobs = sql("SELECT status, depends_on FROM jobline.jobs ORDER BY id")
    if overlap == "skip" and created > 1:  # catch-up runs of a non-overlapping schedule run one by one
        assert [status for status, _ in jobs] == ["pending"] + ["waiting"] * (created - 1)
    else:
        assert {status for status, _ in jobs} <= {"pending"} and all(deps is None for _, deps in jobs)
    assert sql("SELECT next_run_at FROM jobline.schedules") == [(down_since + dt.timedelta(hours=3, minutes=5),)]


async def test_a_scheduler_killed_between_recording_a_tick_and_creating_its_job_blocks_nothing(app, store, sql, db_url):
    await app.add_schedule_async("k", "* * * * *", "k")
    tick = dt.datetime(2026, 1, 1, tzinfo=UTC)
    sql("UPDATE jobline.schedules SET next_run_at = %s", [tick])
    seen = sql("SELECT id, next_run_at, changed_at FROM jobline.schedules")[0]
    doomed = psycopg.connect(db_url)
    # The tick's run is recorded and the job inserted, but the transaction never commits:
    doomed.execute("SELECT * FROM jobline.fire_schedule(%s, %s, %s, %s, NULL, NULL, %s)",
                   [*seen, [tick], tick + dt.timedelta(minutes=1)])
    sql("SELECT pg_terminate_backend(%s)", [doomed.info.backend_pid])  # killed right there
    doomed.close()
    assert runs(sql, "k") == [] and sql("SELECT count(*) FROM jobline.jobs") == [(0,)]
    await scheduler(store).tick(now=tick + dt.timedelta(seconds=1))
    assert [(t, status) for t, status, _ in runs(sql, "k")] == [(tick, "created")]
    assert sql("SELECT count(*) FROM jobline.jobs") == [(1,)]


async def test_trigger_runs_once_now_outside_the_ticks_even_when_paused(app, store, sql):
    made = await app.add_schedule_async("t", "@yearly", "t", {"x": 1}, active=False)
    job_id = await store.schedule_trigger(made.id)
    assert runs(sql, "t") == [(None, "triggered", job_id)]
    assert (await store.job_get(job_id)).payload == {"x": 1}


async def test_pause_and_resume_do_not_catch_up_on_the_pause(app, store, sql):
    made = await app.add_schedule_async("p", "* * * * *", "p")
    sql("UPDATE jobline.schedules SET next_run_at = '2026-01-01T00:00:00Z'")
    paused = await store.schedule_set_active(made.id, False)
    assert await store.schedule_list_due(now=dt.datetime(2026, 1, 2, tzinfo=UTC)) == []
    resumed = await store.schedule_set_active(made.id, True)
    assert (paused.active, resumed.active, resumed.next_run_at) == (False, True, None)
    assert resumed.changed_at > paused.changed_at


def declaring_app(settings, **schedules) -> App:
    app = App(settings=settings)

    @app.function("nightly")
    def nightly(payload):
        return {}

    for name, expression in schedules.items():
        app.schedule(name, expression, "nightly")
    return app


async def start_and_stop(app: App) -> None:
    async with app:
        worker = await app.worker_async(concurrency=1, maintenance=False)
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(worker.notifier.connected.is_set)
        worker.request_stop()
        await running


async def test_code_schedules_are_reconciled_when_a_worker_starts(settings, store, sql):
    await start_and_stop(declaring_app(settings, **{"nightly-a": "0 1 * * *", "nightly-b": "0 2 * * *"}))
    assert sql("SELECT name, expression, source FROM jobline.schedules ORDER BY name") == [
        ("nightly-a", "0 1 * * *", "code"), ("nightly-b", "0 2 * * *", "code")]
    sql("UPDATE jobline.schedules SET active = false WHERE name = 'nightly-a'")  # paused by a person
    # A run-time schedule that takes a name the code will declare:
    await store.schedule_upsert(new_schedule("nightly-c", "@daily", sql="SELECT 3"))

    await start_and_stop(declaring_app(settings, **{"nightly-a": "0 5 * * *", "nightly-c": "0 3 * * *"}))
    assert sql("SELECT name, expression, source, active FROM jobline.schedules ORDER BY name") == [
        ("nightly-a", "0 5 * * *", "code", False),     # updated, still paused
        ("nightly-c", "@daily", "runtime", True)]     # never clobbered; nightly-b was removed


async def test_a_worker_fires_a_tick_within_a_second_and_runs_its_job(settings, sql):
    app = App(settings=settings)

    @app.function("ping")
    def ping(payload):
        return {"ok": True}

    async with app:
        await app.add_schedule_async("ping", "2 seconds", "ping")
        worker = await app.worker_async(concurrency=2, maintenance=False)
        running = asyncio.create_task(worker.run(handle_signals=False))
        await eventually(lambda: sql("SELECT count(*) FROM jobline.jobs WHERE status = 'succeeded'")[0][0] >= 2,
                         timeout=10)
        worker.request_stop()
        await running
    late = sql("""SELECT extract(epoch FROM j.created_at - r.tick_at), extract(epoch FROM j.finished_at - r.tick_at)
                  FROM jobline.schedule_runs r JOIN jobline.jobs j ON j.id = r.job_id
                  WHERE j.status = 'succeeded'""")
    assert late and all(created < 1 and finished < 1 for created, finished in late), late


async def test_retention_prunes_runs_with_their_jobs_and_old_runs_without_jobs(app, store, sql, settings):
    made = await app.add_schedule_async("old", "@hourly", "old")
    old_job = await store.schedule_trigger(made.id)
    new_job = await store.schedule_trigger(made.id)
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now() - interval '8 days' WHERE id = %s", [old_job])
    sql("""INSERT INTO jobline.schedule_runs (schedule_id, tick_at, status, message, created_at) VALUES
           (%(id)s, '2026-01-01', 'skipped', 'old', now() - interval '31 days'),
           (%(id)s, '2026-01-02', 'missed', 'recent', now() - interval '1 day')""", {"id": made.id})
    await Maintenance(store, settings).prune()
    assert sql("SELECT status, job_id, message FROM jobline.schedule_runs ORDER BY id") == [
        ("triggered", new_job, None), ("missed", None, "recent")]


async def test_a_schedule_whose_job_is_refused_is_paused_and_holds_up_no_other(app, store, sql):
    await app.add_schedule_async("normal", "* * * * *", "normal")
    # A row no interface accepts (they refuse payloads over 1 MiB), written directly:
    sql("""INSERT INTO jobline.schedules (name, expression, function, payload, next_run_at)
           VALUES ('broken', '* * * * *', 'sql', jsonb_build_object('command', repeat('x', 1100000)),
                   '2026-01-01T00:00:00Z')""")
    sql("UPDATE jobline.schedules SET next_run_at = '2026-01-01T00:01:00Z' WHERE name = 'normal'")
    await scheduler(store).tick(now=dt.datetime(2026, 1, 1, 0, 1, 0, 500_000, tzinfo=UTC))
    assert sql("SELECT name, active FROM jobline.schedules ORDER BY name") == [("broken", False), ("normal", True)]
    assert [status for _, status, _ in runs(sql, "normal")] == ["created"]


def test_a_code_schedule_needs_a_name(settings):
    with pytest.raises(InvalidInput, match="needs a name"):
        App(settings=settings).schedule(None, "@daily", sql="SELECT 1")


async def test_a_schedule_python_cannot_parse_is_still_listed(store, sql):
    sql("INSERT INTO jobline.schedules (name, expression, function) VALUES ('odd', '0 0 15W * *', 'f')")
    [(schedule, last)] = await store.schedule_list()
    assert (schedule.name, schedule.summary(last)["next_run"], last) == ("odd", None, None)


async def test_a_restart_schedule_fires_once_per_server_start_however_many_schedulers_run(stores, sql):
    """pg_cron's @restart: once when the server starts, exactly once (the run ledger's unique tick
    is the start), and never at a time: the schedulers do not wake for it."""
    sql("SELECT jobline.schedule('on-start', '@restart', 'SELECT 1')")
    made = dt.datetime(2026, 1, 1, tzinfo=UTC)
    sql("UPDATE jobline.schedules SET changed_at = %s", [made])
    schedulers = [scheduler(s) for s in stores]

    async def passes(start: dt.datetime) -> list[float]:
        waits = []
        for seconds in (1, 2, 3600):
            waits += await asyncio.gather(*(s.tick(now=start + dt.timedelta(seconds=seconds), started_at=start)
                                            for s in schedulers))
        return waits

    first = made + dt.timedelta(hours=1)
    assert set(await passes(first)) == {86400}  # nothing due at a time: each sleeps its longest
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now()")  # (else the next start is skipped)
    second = first + dt.timedelta(days=3)
    await passes(second)
    assert [(tick, status) for tick, status, _ in runs(sql, "on-start")] == [(first, "created"), (second, "created")]
    # One made while the server runs waits for the next start.
    sql("SELECT jobline.schedule('later', '@reboot', 'SELECT 2')")
    sql("UPDATE jobline.schedules SET changed_at = %s WHERE name = 'later'", [second + dt.timedelta(hours=1)])
    await passes(second)
    assert runs(sql, "later") == []
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now()")
    third = second + dt.timedelta(days=1)
    await passes(third)
    assert [tick for tick, _, _ in runs(sql, "later")] == [third]
    assert sql("SELECT count(*) FROM jobline.jobs") == [(4,)]
