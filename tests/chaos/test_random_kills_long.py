"""Workers and schedulers SIGKILLed at random, long runs: `pytest -m chaos` (the default run
deselects them). JOBLINE_SOAK_SECONDS (default 600) and JOBLINE_SCHEDULER_SOAK_SECONDS (default
300) set their length. The figures are printed (pytest -s) and kept in
docs/concepts/reliability.md. Short runs of the same are in tests/crash/test_random_kills.py."""

from __future__ import annotations

import pytest

from chaos_support import env_seconds, report, run_scheduler_kills, run_soak

pytestmark = pytest.mark.chaos

SOAK_SECONDS = env_seconds("JOBLINE_SOAK_SECONDS", 600)
SCHEDULER_SECONDS = env_seconds("JOBLINE_SCHEDULER_SOAK_SECONDS", 300)


@pytest.mark.timeout(SOAK_SECONDS * 1.5 + 600)
async def test_workers_killed_at_random_for_minutes(db_url, sql, processes, tmp_path):
    figures = await run_soak(db_url, sql, processes, SOAK_SECONDS, tmp_path / "logs")
    report(figures)
    assert figures["attempts_lost"] >= 1, figures


@pytest.mark.timeout(SCHEDULER_SECONDS + 300)
async def test_schedulers_killed_at_random_for_minutes(db_url, sql, processes, tmp_path):
    figures = await run_scheduler_kills(db_url, sql, processes, SCHEDULER_SECONDS, tmp_path / "logs")
    report(figures)
    assert figures["code-every-second"]["missed_in_outages"] >= figures["outages"], figures
