"""Workers and schedulers SIGKILLed at random, short runs (tests/chaos_support.py has the driver
and the checks; tests/chaos/ has the long runs). Also: the checks catch what they must."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from apps.chaos import create_ledger
from chaos_support import check_soak, check_ticks, report, run_scheduler_kills, run_soak

SOAK_SECONDS = 25
SCHEDULER_SECONDS = 20


@pytest.mark.timeout(SOAK_SECONDS + 240)
async def test_workers_killed_at_random_lose_no_job_and_run_none_twice(db_url, sql, processes, tmp_path):
    figures = await run_soak(db_url, sql, processes, SOAK_SECONDS, tmp_path / "logs")
    report(figures)
    # The run did what it is for: workers were killed while they held jobs, and jobs ran again.
    assert figures["kills"] >= 4 and figures["attempts_lost"] >= 1, figures
    assert figures["final"].get("succeeded", 0) >= figures["jobs"] * 0.9, figures


@pytest.mark.timeout(SCHEDULER_SECONDS + 120)
async def test_schedulers_killed_at_random_give_each_tick_one_job(db_url, sql, processes, tmp_path):
    figures = await run_scheduler_kills(db_url, sql, processes, SCHEDULER_SECONDS, tmp_path / "logs")
    report(figures)
    every_second = figures["code-every-second"]
    assert figures["kills"] >= 5 and figures["outages"] >= 1, figures
    # The window holds most of the run's ticks, for both schedules.
    assert every_second["ticks"] >= SCHEDULER_SECONDS / 2, figures
    assert figures["runtime-every-2-seconds"]["ticks"] >= SCHEDULER_SECONDS / 4, figures
    # All schedulers down for 3 s or more: the restarted ones ran the latest tick and recorded
    # the others as missed (catch-up 'latest').
    assert every_second["missed_in_outages"] >= figures["outages"], figures


# -- the soak's check catches what it must (states inserted, no processes) ----------------------

RUN = "0123456789abcdef"


def _job(sql, status: str, attempts: int, *, run: str = RUN, depends_on=None, finished: bool = True) -> int:
    payload = json.dumps({"run": run, "kind": "quick"})
    return sql("INSERT INTO jobline.jobs (function, payload, status, attempts, max_attempts, depends_on, finished_at)"
               " VALUES ('step', %s, %s, %s, 20, %s, CASE WHEN %s::boolean THEN now() END) RETURNING id",
               [payload, status, attempts, depends_on, finished])[0][0]


def _attempt(sql, job_id: int, attempt: int, worker_id: str, outcome: str) -> None:
    sql("INSERT INTO jobline.attempts (job_id, attempt, worker_id, started_at, finished_at, outcome)"
        " VALUES (%s, %s, %s, now(), now(), %s)", [job_id, attempt, worker_id, outcome])


def _ledger(sql, job_id: int, attempt: int, worker_id: str, outcome: str | None, *, run: str = RUN,
            deps_ok: bool = True) -> None:
    sql("INSERT INTO soak_ledger (run, db, job_id, attempt, worker_id, pid, deps_ok, finished_at, outcome)"
        " VALUES (%s, current_database(), %s, %s, %s, 1, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE clock_timestamp() END, %s)",
        [run, job_id, attempt, worker_id, deps_ok, outcome, outcome])


def _check(sql, db_url, killed=(), job_ids=None):
    dbname = sql("SELECT current_database()")[0][0]
    ids = [i for (i,) in sql("SELECT id FROM jobline.jobs")] if job_ids is None else job_ids
    return check_soak(sql, run=RUN, dbname=dbname, killed=set(killed), job_ids=ids)


def _rerun_after_a_lost_attempt(sql, db_url) -> int:
    """A job whose first attempt was lost after its handler returned, and which ran again."""
    create_ledger(db_url)
    job_id = _job(sql, "succeeded", 2)
    _attempt(sql, job_id, 1, "w1", "lost")
    _attempt(sql, job_id, 2, "w2", "succeeded")
    _ledger(sql, job_id, 1, "w1", "returned")
    _ledger(sql, job_id, 2, "w2", "returned")
    return job_id


def test_soak_check_allows_a_second_run_after_a_killed_worker(db_url, sql):
    _rerun_after_a_lost_attempt(sql, db_url)
    figures = _check(sql, db_url, killed={"w1"})
    assert figures["handler_returned_then_worker_killed"] == 1 and figures["attempts_lost"] == 1


def test_soak_check_counts_a_second_run_nobody_killed_for(db_url, sql):
    _rerun_after_a_lost_attempt(sql, db_url)
    with pytest.raises(AssertionError, match="attempt lost by a worker that was not killed"):
        _check(sql, db_url, killed=set())


def test_soak_check_refuses_rows_of_another_run(db_url, sql):
    create_ledger(db_url)
    job_id = _job(sql, "succeeded", 1)
    _attempt(sql, job_id, 1, "w1", "succeeded")
    _ledger(sql, job_id, 1, "w1", "returned", run="another-run")
    with pytest.raises(AssertionError, match="refusing to count"):
        _check(sql, db_url)


def test_soak_check_catches_lost_jobs_and_early_dependants(db_url, sql):
    create_ledger(db_url)
    dependency = _job(sql, "running", 1, finished=False)
    dependant = _job(sql, "succeeded", 1, depends_on=[dependency])
    _attempt(sql, dependant, 1, "w1", "succeeded")
    _ledger(sql, dependant, 1, "w1", "returned", deps_ok=False)
    with pytest.raises(AssertionError) as failure:
        _check(sql, db_url, job_ids=[dependency, dependant, dependant + 1])
    message = str(failure.value)
    for expected in ("enqueued but gone", "not final", "dependant started before its dependencies succeeded",
                     "succeeded although a dependency did not"):
        assert expected in message, message


def test_soak_check_catches_two_successes(db_url, sql):
    create_ledger(db_url)
    job_id = _job(sql, "succeeded", 2)
    _attempt(sql, job_id, 1, "w1", "succeeded")
    _attempt(sql, job_id, 2, "w2", "succeeded")
    _ledger(sql, job_id, 1, "w1", "returned")
    _ledger(sql, job_id, 2, "w2", "returned")
    with pytest.raises(AssertionError, match="not exactly one success"):
        _check(sql, db_url)


# -- the schedulers' check catches what it must --------------------------------------------------


def _ticks(sql, runs: list[tuple[int, str]], orphan_at: int | None = None) -> None:
    """A '1 seconds' schedule with runs at base + n seconds: created ones with their job, or
    missed ones with the note a scheduler writes."""
    schedule_id = sql("SELECT jobline.schedule('every-second', '1 seconds', 'SELECT 1')")[0][0]
    base = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    for n, status in runs:
        tick = base + dt.timedelta(seconds=n)
        job_id, note = None, None
        if status == "created":
            job_id = sql("SELECT jobline.enqueue('sql', '{\"command\": \"SELECT 1\"}', run_at => %s)", [tick])[0][0]
        else:
            count = int(status.split()[1])
            last = (tick + dt.timedelta(seconds=count - 1)).isoformat().replace("+00:00", "Z")
            note = f"{count} tick(s) from {tick.isoformat().replace('+00:00', 'Z')} to {last} were not run (catch-up: latest)"
            status = "missed"
        sql("INSERT INTO jobline.schedule_runs (schedule_id, tick_at, status, job_id, message) VALUES (%s, %s, %s, %s, %s)",
            [schedule_id, tick, status, job_id, note])
    if orphan_at is not None:
        sql("SELECT jobline.enqueue('sql', '{\"command\": \"SELECT 1\"}', run_at => %s)",
            [base + dt.timedelta(seconds=orphan_at)])
    last = max(n + (int(s.split()[1]) - 1 if s.startswith("missed") else 0) for n, s in runs)
    sql("UPDATE jobline.schedules SET next_run_at = %s", [base + dt.timedelta(seconds=last + 1)])


def test_tick_check_counts_ticks_recorded_as_missed(db_url, sql):
    _ticks(sql, [(0, "created"), (1, "missed 2"), (3, "created")])
    figures = check_ticks(sql)["every-second"]
    assert (figures["ticks"], figures["jobs"], figures["missed"]) == (4, 2, 2)


def test_tick_check_catches_a_lost_tick(db_url, sql):
    _ticks(sql, [(0, "created"), (1, "created"), (3, "created")])
    with pytest.raises(AssertionError, match=r"ticks lost \[datetime.datetime\(2030, 1, 1, 0, 0, 2"):
        check_ticks(sql)


def test_tick_check_catches_a_second_job_for_a_tick(db_url, sql):
    _ticks(sql, [(0, "created"), (1, "created")], orphan_at=1)
    with pytest.raises(AssertionError, match="jobs without a run"):
        check_ticks(sql)
