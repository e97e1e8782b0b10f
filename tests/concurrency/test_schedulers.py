"""Three `jobline scheduler` processes at once: each tick of a schedule creates exactly one job,
and no tick is lost."""

from __future__ import annotations

import datetime as dt
import signal

import pytest

from conftest import eventually, start_jobline

pytestmark = pytest.mark.timeout(120)


async def test_three_scheduler_processes_create_one_job_per_tick(db_url, sql, processes):
    sql("SELECT jobline.schedule('every-second', '1 seconds', 'SELECT 1')")
    # No worker runs them here: let them pile up. A scheduler that wakes late on a busy machine
    # catches up every tick it missed (catch_up all), so the count below holds however late.
    sql("UPDATE jobline.schedules SET overlap = 'allow', catch_up = 'all'")
    for _ in range(3):
        processes.append(start_jobline(["scheduler"], db_url))
    await eventually(lambda: sql("SELECT count(*) FROM jobline.schedule_runs")[0][0] >= 6, timeout=30)
    for process in processes:
        process.send_signal(signal.SIGTERM)
    for process in processes:
        output = process.communicate(timeout=30)[0]
        assert process.returncode == 0, output
    ticks = [t for (t,) in sql("SELECT tick_at FROM jobline.schedule_runs WHERE status = 'created' ORDER BY tick_at")]
    jobs = sql("SELECT count(*), count(DISTINCT run_at) FROM jobline.jobs")
    assert jobs == [(len(ticks), len(ticks))]
    assert ticks == [ticks[0] + dt.timedelta(seconds=n) for n in range(len(ticks))]  # none lost, none twice
    assert sql("SELECT count(*) FROM jobline.schedule_runs WHERE status <> 'created'") == [(0,)]
