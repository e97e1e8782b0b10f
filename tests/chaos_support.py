"""Random kills, driven and checked (the tester's hand-run checks, kept as tests).

The kill -9 soak: WORKERS `jobline worker` processes drain a stream of jobs (quick ones, slow
ones that outlive their lease and live on heartbeats, ones that fail and retry, dependants)
while a driver SIGKILLs a random worker every few seconds and starts a replacement. When the
time is up the stream stops, everything drains, and the ledger of apps/chaos.py is checked
against jobline's own records (check_soak).

Schedulers killed at random: three `jobline scheduler` processes fire two fast schedules (one
declared in code, one made at run time) while a driver SIGKILLs one at random every few
seconds and restarts it; then every tick of the window must have exactly one job, or be
recorded as missed or skipped by the schedule's policy (check_ticks).

Used by tests/crash/test_random_kills.py (short runs, in the default suite) and
tests/chaos/test_random_kills_long.py (long runs, `pytest -m chaos`). The pace of the stream
and of the kills is the driver's clock; nothing here sleeps to wait for a condition.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import json
import os
import random
import re
import secrets
import signal
import subprocess
import time
from pathlib import Path

import psycopg
from psycopg.conninfo import conninfo_to_dict

from apps.chaos import create_ledger
from conftest import eventually, start_jobline
from jobline.cron import Cron

WORKERS = 4
CONCURRENCY = 8
# Slow jobs sleep 1.1-1.5 leases, so only their heartbeat (every lease/3) keeps them. The lease
# is long enough that a live worker on a busy machine still renews in time: a lease lost by a
# worker that was not killed is reported as a failure (a second run nobody killed for).
LEASE_SECONDS = 4.0
KILL_EVERY = (2.0, 4.0)      # seconds between kills, drawn uniformly
GROUP_EVERY = 0.5            # a group of about six jobs every half second
MAX_ATTEMPTS = 20            # kills use attempts up; flaky jobs fail at most twice by design
                             # (fragile jobs have 2, so that some fail for good)
FINAL = ("succeeded", "failed", "cancelled")

SCHEDULERS = 3
SCHEDULER_KILL_EVERY = (1.5, 3.0)
# Every OUTAGE_EVERY-th round kills all the schedulers for OUTAGE_SECONDS: the ticks of that
# gap must then be recorded as missed (catch-up 'latest' runs only the last of them).
OUTAGE_EVERY = 6
OUTAGE_SECONDS = (3.0, 4.0)
# A missed tick is put down to an outage if it fell from a second before the kill to this long
# after the restart (a scheduler takes a second or two to start on a busy machine).
OUTAGE_SLACK = dt.timedelta(seconds=10)


def _pace(seconds: float):
    """The driver's own pace (the next group, the next kill): not a wait for a condition."""
    return asyncio.sleep(seconds)


def _open_log(path: Path):
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "w")


class Fleet:
    """Processes of one kind that the driver kills and replaces; logs go to files in ``logs``."""

    def __init__(self, name: str, args: list[str], db_url: str, processes: list, logs: Path, env: dict):
        # stop_all() reads worker.started, an INFO line, in each log.
        self.name, self.args, self.db_url, self.env = name, args, db_url, {"JOBLINE_LOG_LEVEL": "info", **env}
        self.processes, self.logs = processes, logs
        self.live: list[subprocess.Popen] = []
        self.started = 0

    def start(self) -> subprocess.Popen:
        self.started += 1
        path = self.logs / f"{self.name}-{self.started:04d}.log"
        with _open_log(path) as log:
            process = start_jobline(self.args, self.db_url, output=log, **self.env)
        process.log_path = path
        self.processes.append(process)
        self.live.append(process)
        return process

    def kill(self, process: subprocess.Popen) -> None:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)
        self.live.remove(process)

    async def stop_all(self, timeout: float = 60) -> list[int]:
        """SIGTERM every live process once it is up; their exit codes. (A process still
        starting has no signal handler yet, and SIGTERM would end it with -15.)"""
        await eventually(lambda: all("worker.started" in p.log_path.read_text() for p in self.live),
                         timeout=60, interval=0.1)
        for process in self.live:
            process.send_signal(signal.SIGTERM)
        codes = [process.wait(timeout=timeout) for process in self.live]
        self.live = []
        return codes


# -- the kill -9 soak ---------------------------------------------------------------------------


def _group(rng: random.Random) -> list[dict]:
    """One group of the stream: three quick jobs, maybe a slow one, a flaky one and a fragile one,
    and maybe dependants of those (a quick job after one or two of them, sometimes a chain of two)."""
    specs = [{"kind": "quick"} for _ in range(3)]
    if rng.random() < 0.5:
        specs.append({"kind": "slow", "seconds": round(rng.uniform(1.1, 1.5) * LEASE_SECONDS, 2)})
    if rng.random() < 0.5:
        specs.append({"kind": "flaky", "fail_before": rng.choice([2, 3])})
    if rng.random() < 0.25:
        # Slow with two attempts only: two kills fail it for good, and cancel its dependants.
        specs.append({"kind": "fragile", "seconds": round(rng.uniform(1.1, 1.5) * LEASE_SECONDS, 2),
                      "max_attempts": 2})
    if rng.random() < 0.6:
        # Indexes into this group: a dependant waits for earlier jobs of the same group.
        parents = rng.sample(range(len(specs)), k=min(len(specs), rng.choice([1, 1, 2])))
        specs.append({"kind": "dependant", "after_index": sorted(parents)})
        if rng.random() < 0.3:
            specs.append({"kind": "dependant", "after_index": [len(specs) - 1]})
    return specs


async def _enqueue_group(conn: psycopg.AsyncConnection, rng: random.Random, run: str) -> list[int]:
    ids: list[int] = []
    for spec in _group(rng):
        after = [ids[i] for i in spec.pop("after_index", [])]
        max_attempts = spec.pop("max_attempts", MAX_ATTEMPTS)
        payload = {"run": run, **spec, "after": after}
        cur = await conn.execute("SELECT jobline.enqueue('step', %s::jsonb, max_attempts => %s, depends_on => %s)",
                                 [json.dumps(payload), max_attempts, after or None])
        ids.append((await cur.fetchone())[0])
    return ids


def _worker_of(sql, pid: int) -> str | None:
    """The worker id a process registered, if it got that far; call it once the process is dead.
    The newest row with its pid is its own; if it never registered, the newest is that of an
    earlier process of the run with the same pid, which died the same way and is counted already."""
    rows = sql("SELECT id FROM jobline.workers WHERE pid = %s ORDER BY started_at DESC LIMIT 1", [pid])
    return rows[0][0] if rows else None


async def run_soak(db_url: str, sql, processes: list, seconds: float, logs: Path, seed: int | None = None) -> dict:
    """Run the soak for ``seconds``, drain, stop the workers, check; returns the figures."""
    create_ledger(db_url)
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    run = secrets.token_hex(8)
    dbname = conninfo_to_dict(db_url)["dbname"]
    fleet = Fleet("worker", ["--app", "apps.chaos:soak", "worker", "--concurrency", str(CONCURRENCY),
                   "--lease", str(LEASE_SECONDS), "--grace", "10"], db_url, processes, logs,
                  {"JOBLINE_POLL_INTERVAL": "0.2"})
    for _ in range(WORKERS):
        fleet.start()
    await eventually(lambda: sql("SELECT count(*) FROM jobline.workers")[0][0] >= WORKERS, timeout=60, interval=0.1)

    job_ids: list[int] = []
    killed: set[str] = set()   # worker ids of the processes killed
    kills = kills_holding = 0
    began = time.monotonic()
    next_kill = began + rng.uniform(*KILL_EVERY)
    last_kill = began
    async with await psycopg.AsyncConnection.connect(db_url, autocommit=True) as conn:
        while time.monotonic() < began + seconds:
            job_ids += await _enqueue_group(conn, rng, run)
            if time.monotonic() >= next_kill:
                # Prefer a worker that holds running jobs, so that kills land mid-run.
                holding = {int(w.rsplit(":", 2)[1]) for (w,) in
                           sql("SELECT DISTINCT worker_id FROM jobline.jobs WHERE status = 'running'")}
                candidates = [p for p in fleet.live if p.pid in holding]
                victim = rng.choice(candidates or fleet.live)
                fleet.kill(victim)
                kills += 1
                kills_holding += bool(candidates)
                worker_id = _worker_of(sql, victim.pid)
                if worker_id is not None:
                    killed.add(worker_id)
                fleet.start()
                last_kill = time.monotonic()
                next_kill = last_kill + rng.uniform(*KILL_EVERY)
            await _pace(GROUP_EVERY)
    stream_seconds = time.monotonic() - began

    # Drain: with nothing killed any more, every job reaches a final state within a lease or
    # two of its last rescue, plus the backlog.
    unfinished = "SELECT count(*) FROM jobline.jobs WHERE status IN ('waiting', 'pending', 'running')"
    await eventually(lambda: sql(unfinished)[0][0] == 0, timeout=max(120.0, seconds / 2), interval=0.2)
    drain_seconds = time.monotonic() - last_kill
    codes = await fleet.stop_all()
    assert codes == [0] * len(codes), f"a worker did not stop cleanly after the drain: {codes} (logs in {logs})"

    figures = check_soak(sql, run=run, dbname=dbname, killed=killed, job_ids=job_ids)
    figures.update(seed=seed, seconds=round(stream_seconds, 1), kills=kills, kills_of_workers_holding_jobs=kills_holding,
                   workers_started=fleet.started, drain_seconds_after_last_kill=round(drain_seconds, 1))
    return figures


class Violations:
    """Named lists of offending rows; fails with all of them at once."""

    def __init__(self) -> None:
        self.found: dict[str, list] = collections.defaultdict(list)

    def add(self, name: str, item) -> None:
        self.found[name].append(item)

    def check(self, context: str) -> None:
        if self.found:
            detail = "; ".join(f"{name}: {len(items)} e.g. {items[:5]}" for name, items in self.found.items())
            raise AssertionError(f"{context}: {detail}")


def check_soak(sql, *, run: str, dbname: str, killed: set[str], job_ids: list[int]) -> dict:
    """Check the ledger against jobline's records after the drain; returns the figures.

    At-least-once, as allowed: an attempt may be lost (recorded as such) only by a worker that
    was killed; its handler may have started, or even finished, before the kill, and the job
    runs again. Anything else counts: a job not final, an attempt not recorded, an attempt run
    twice, two recorded successes, attempts past max_attempts, a dependant started before its
    dependencies succeeded."""
    # Refuse to count anything unless every row is this run's, in this database.
    assert sql("SELECT current_database()") == [(dbname,)], "the check is looking at another database"
    foreign = sql("SELECT run, db, count(*) FROM soak_ledger WHERE run <> %s OR db <> %s GROUP BY 1, 2", [run, dbname])
    foreign_jobs = sql("SELECT count(*) FROM jobline.jobs WHERE payload->>'run' IS DISTINCT FROM %s", [run])[0][0]
    assert not foreign and not foreign_jobs, (
        f"refusing to count: the ledger has rows of another run or database {foreign} and the queue "
        f"{foreign_jobs} jobs of another run (this run is {run} in {dbname})")

    jobs = {row[0]: row[1:] for row in sql(
        "SELECT id, status, attempts, max_attempts, coalesce(depends_on, '{}'), payload->>'kind', finished_at"
        " FROM jobline.jobs")}
    attempts: dict[int, dict[int, tuple]] = collections.defaultdict(dict)
    for job_id, attempt, worker_id, outcome in sql("SELECT job_id, attempt, worker_id, outcome FROM jobline.attempts"):
        attempts[job_id][attempt] = (worker_id, outcome)
    ledger: dict[int, list[tuple]] = collections.defaultdict(list)
    for row in sql("SELECT job_id, attempt, worker_id, deps_ok, started_at, finished_at, outcome FROM soak_ledger"
                   " ORDER BY job_id, attempt, started_at"):
        ledger[row[0]].append(row[1:])

    bad = Violations()
    for job_id in set(job_ids) - set(jobs):
        bad.add("enqueued but gone", job_id)
    for job_id in set(jobs) - set(job_ids):
        bad.add("not enqueued by this run", job_id)
    for job_id in set(ledger) - set(jobs):
        bad.add("ledger rows of no job", job_id)

    lost_attempts = reran_after_finish = 0
    for job_id, (status, n, max_attempts, depends_on, kind, finished_at) in jobs.items():
        tried, rows = attempts.get(job_id, {}), ledger.get(job_id, [])
        if status not in FINAL:
            bad.add("not final", (job_id, status))
            continue
        if n > max_attempts or any(a > max_attempts for a, *_ in rows):
            bad.add("attempts past max_attempts", (job_id, n, max_attempts))
        if sorted(tried) != list(range(1, n + 1)):
            bad.add("attempts not all recorded", (job_id, n, sorted(tried)))
        numbers = [a for a, *_ in rows]
        if len(numbers) != len(set(numbers)):
            bad.add("one attempt started twice", (job_id, numbers))
        for attempt, (worker_id, outcome) in tried.items():
            if outcome == "lost":
                lost_attempts += 1
                if worker_id not in killed:
                    bad.add("attempt lost by a worker that was not killed", (job_id, attempt, worker_id))
        successes = [a for a, (_, outcome) in tried.items() if outcome == "succeeded"]
        for attempt, worker_id, deps_ok, started_at, ended_at, returned in rows:
            recorded = tried.get(attempt)
            if recorded is None:
                bad.add("ledger row of an attempt not recorded", (job_id, attempt))
                continue
            if recorded[0] != worker_id:
                bad.add("ledger row from another worker than the attempt's", (job_id, attempt, worker_id, recorded[0]))
            if recorded[1] == "succeeded" and returned != "returned":
                bad.add("success recorded but the handler did not return", (job_id, attempt, returned))
            if recorded[1] == "failed" and returned != "raised":
                bad.add("failure recorded but the handler did not raise", (job_id, attempt, returned))
            if recorded[1] not in ("succeeded", "failed", "lost"):
                bad.add("unexpected attempt outcome", (job_id, attempt, recorded[1]))
            if recorded[1] == "lost" and returned == "returned":
                reran_after_finish += 1   # killed after the handler returned, before it was recorded
            if not deps_ok:
                bad.add("dependant started before its dependencies succeeded", (job_id, attempt, depends_on))
            for dep in depends_on:
                dep_finished = jobs.get(dep, (None,) * 6)[5]
                if dep_finished is None or started_at <= dep_finished:
                    bad.add("dependant started before its dependency finished", (job_id, attempt, dep))
        if status == "succeeded":
            if successes != [n]:
                bad.add("not exactly one success, the last attempt", (job_id, n, successes))
            returned_rows = [r for r in rows if r[5] == "returned" and tried.get(r[0], ("", ""))[1] != "lost"]
            if len(returned_rows) != 1:
                bad.add("handler finished successfully more than once (outside lost attempts)", (job_id, returned_rows))
            if any(jobs.get(dep, ("gone",))[0] != "succeeded" for dep in depends_on):
                bad.add("succeeded although a dependency did not", (job_id, depends_on))
        elif status == "failed":
            # Only kills can fail a job for good: it needs max_attempts attempts, all lost or failed.
            if n != max_attempts or successes:
                bad.add("failed with attempts left", (job_id, n, max_attempts))
        elif status == "cancelled":
            if rows or not any(jobs.get(dep, ("gone",))[0] in ("failed", "cancelled") for dep in depends_on):
                bad.add("cancelled without a failed dependency, or after running", (job_id, depends_on, len(rows)))
    bad.check(f"soak run {run} in {dbname} ({len(jobs)} jobs)")

    statuses = collections.Counter(status for status, *_ in jobs.values())
    kinds = collections.Counter(kind for *_, kind, _ in jobs.values())
    return {
        "run": run, "jobs": len(jobs), "kinds": dict(kinds), "final": dict(statuses),
        "attempts": sum(len(t) for t in attempts.values()), "attempts_lost": lost_attempts,
        "jobs_started_more_than_once": sum(len(rows) > 1 for rows in ledger.values()),
        "handler_returned_then_worker_killed": reran_after_finish,
        "max_attempts_seen": max((n for _, n, *_ in jobs.values()), default=0),
        "lost_jobs": 0, "double_runs": 0,   # counted above: any would have failed the check
    }


# -- schedulers killed at random ----------------------------------------------------------------

RUNTIME_SCHEDULE = "runtime-every-2-seconds"
_MISSED = re.compile(r"^(\d+) tick\(s\) from (\S+) to (\S+) were not run")


async def run_scheduler_kills(db_url: str, sql, processes: list, seconds: float, logs: Path,
                              seed: int | None = None) -> dict:
    """Run SCHEDULERS schedulers for ``seconds``, killing one at random every few seconds and
    starting it again (every OUTAGE_EVERY-th time, all of them, for a few seconds); stop them;
    check every tick; returns the figures."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    # No worker runs the jobs, so overlap 'allow': with 'skip' every tick after the first would
    # be skipped while the first job waits.
    sql("SELECT jobline.schedule(%s, '2 seconds', 'SELECT 1')", [RUNTIME_SCHEDULE])
    sql("UPDATE jobline.schedules SET overlap = 'allow' WHERE name = %s", [RUNTIME_SCHEDULE])
    fleet = Fleet("scheduler", ["--app", "apps.chaos:ticks", "scheduler"], db_url, processes, logs, {})
    for _ in range(SCHEDULERS):
        fleet.start()
    # Both schedules have fired (the code one exists once a scheduler has reconciled it).
    await eventually(lambda: sql("SELECT count(DISTINCT schedule_id) FROM jobline.schedule_runs")[0][0] == 2,
                     timeout=60, interval=0.1)
    kills = rounds = 0
    kill_times: list[dt.datetime] = []                     # database clock
    outages: list[tuple[dt.datetime, dt.datetime]] = []   # database clock: all down, all started again
    began = time.monotonic()
    while True:
        await _pace(rng.uniform(*SCHEDULER_KILL_EVERY))
        if time.monotonic() >= began + seconds:
            break
        rounds += 1
        kill_times.append(sql("SELECT now()")[0][0])
        if rounds % OUTAGE_EVERY == OUTAGE_EVERY // 2:  # the first one early, so a short run has one
            down_at = kill_times[-1]
            for process in list(fleet.live):
                fleet.kill(process)
                kills += 1
            await _pace(rng.uniform(*OUTAGE_SECONDS))
            outages.append((down_at, sql("SELECT now()")[0][0]))
            for _ in range(SCHEDULERS):
                fleet.start()
        else:
            fleet.kill(rng.choice(fleet.live))
            kills += 1
            fleet.start()
    codes = await fleet.stop_all()
    assert codes == [0] * len(codes), f"a scheduler did not stop cleanly: {codes} (logs in {logs})"
    figures = check_ticks(sql, outages, kill_times)
    figures.update(seed=seed, seconds=round(time.monotonic() - began, 1), kills=kills, outages=len(outages),
                   schedulers_started=fleet.started)
    return figures


def _missed_ticks(cron: Cron, message: str) -> list[dt.datetime]:
    """The ticks a 'missed' run stands for, from its note ('N tick(s) from A to B were not run')."""
    match = _MISSED.match(message or "")
    assert match, f"a missed run whose note gives no count and range: {message!r}"
    first, last = (dt.datetime.fromisoformat(t) for t in match.group(2, 3))
    ticks = [first]
    while ticks[-1] < last:
        ticks.append(cron.next_after(ticks[-1]))
    assert ticks[-1] == last and len(ticks) == int(match[1]), f"the note's count is not its range: {message!r}"
    return ticks


def check_ticks(sql, outages: list[tuple[dt.datetime, dt.datetime]] = (), kill_times: list[dt.datetime] = ()) -> dict:
    """Every tick from each schedule's first run to its last has exactly one job (a created run),
    or is recorded as missed or skipped; no job without its run; next_run_at is the tick after
    the last run. Returns per-schedule figures, with the missed ticks that fell in an outage
    (all schedulers down) told apart from the others, and the latest ticks outside outages with
    the seconds since the kill before them."""
    figures = {}
    for schedule_id, name, expression, timezone, function, next_run_at in sql(
            "SELECT id, name, expression, timezone, function, next_run_at FROM jobline.schedules ORDER BY id"):
        cron = Cron.parse(expression, timezone)
        runs = sql("SELECT tick_at, status, job_id, message, created_at FROM jobline.schedule_runs"
                   " WHERE schedule_id = %s AND tick_at IS NOT NULL ORDER BY tick_at", [schedule_id])
        accounted: collections.Counter = collections.Counter()
        created, missed, notes, skipped = {}, [], [], []
        for tick_at, status, job_id, message, _ in runs:
            if status == "created":
                created[tick_at] = job_id
                accounted[tick_at] += 1
            elif status == "skipped":
                skipped.append(tick_at)
                accounted[tick_at] += 1
            else:
                assert status == "missed", (name, tick_at, status)
                ticks = _missed_ticks(cron, message)
                missed += ticks
                notes.append(message)
                accounted.update(ticks)
        first, last = runs[0][0], max(accounted)
        expected = [first]
        while expected[-1] < last:
            expected.append(cron.next_after(expected[-1]))
        lost = [t for t in expected if accounted[t] == 0]
        twice = [t for t, n in accounted.items() if n > 1]
        strays = sorted(set(accounted) - set(expected))
        jobs = sql("SELECT j.id, j.run_at, r.tick_at FROM jobline.jobs j"
                   " LEFT JOIN jobline.schedule_runs r ON r.job_id = j.id AND r.schedule_id = %s"
                   " WHERE j.function = %s", [schedule_id, function])
        orphans = [(i, run_at) for i, run_at, tick_at in jobs if tick_at is None]
        wrong_time = [(i, run_at, tick_at) for i, run_at, tick_at in jobs if tick_at is not None and run_at != tick_at]
        missing_jobs = [t for t, job_id in created.items() if job_id not in {i for i, *_ in jobs}]
        assert not (lost or twice or strays or orphans or wrong_time or missing_jobs), (
            f"schedule {name}: ticks lost {lost[:5]}, accounted twice {twice[:5]}, off the schedule {strays[:5]}, "
            f"jobs without a run {orphans[:5]}, jobs at another time than their tick {wrong_time[:5]}, "
            f"runs whose job is gone {missing_jobs[:5]}")
        assert next_run_at == cron.next_after(last), (
            f"schedule {name}: next_run_at {next_run_at} is not the tick after the last run {last}")

        def in_outage(tick: dt.datetime) -> bool:
            return any(down - dt.timedelta(seconds=1) <= tick <= up + OUTAGE_SLACK for down, up in outages)

        # How late ticks fired while at least one scheduler ran, once the kills began (a catch-up
        # run after an outage is as late as the outage was long; the first ticks wait for the
        # first scheduler to start).
        late = sorted(((created_at - tick_at).total_seconds(), tick_at) for tick_at, status, _, _, created_at in runs
                      if status == "created" and not in_outage(tick_at)
                      and (not kill_times or tick_at >= kill_times[0]))[-3:]  # not the first start

        def since_kill(tick: dt.datetime) -> float | None:
            before = [k for k in kill_times if k <= tick]
            return round((tick - max(before)).total_seconds(), 3) if before else None
        figures[name] = {"ticks": len(expected), "jobs": len(created), "missed": len(missed),
                         "missed_in_outages": sum(map(in_outage, missed)), "missed_notes": notes[:5],
                         "skipped": len(skipped), "lost": 0, "duplicates": 0,
                         "max_seconds_late_outside_outages": round(late[-1][0], 3) if late else 0.0,
                         "latest_outside_outages": [(round(secs, 3), since_kill(t)) for secs, t in reversed(late)]}
    return figures


def report(figures: dict) -> str:
    """One line for the test's output (pytest -s) and for docs/concepts/reliability.md."""
    line = json.dumps(figures, default=str, sort_keys=True)
    print(f"\nchaos figures: {line}", flush=True)
    return line


def env_seconds(name: str, default: float) -> float:
    return float(os.environ.get(name) or default)
