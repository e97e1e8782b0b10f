"""Flow control's cost (0019_flow_control.sql): the drain rate of no-op async jobs in one worker
process, with no limit, with a generous concurrency limit on their function (above what the
worker can run: it never binds, so only its bookkeeping is measured), and with a per-key limit
(1,000 keys of 20 jobs, 5 at once per key: nearly never binding either).

    .venv/bin/python bench/flow.py [--repeat 5] [--jobs 20000] [--server-url URL]

Runs in the project's own environment (no peers). Each cell gets a fresh database; repetitions
are interleaved (every repetition runs every cell once, in a shuffled order), so a change of
load on this shared machine lands on all of them. The rate is jobs / (last attempt's end -
first attempt's start), from the attempts table, so a worker's start-up is not counted.
The worker runs at concurrency 1000 with claims of 500 (bench/run.py's tuned jobline).
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import random
import secrets
import statistics
import subprocess
import sys
import time

import psycopg

from jobline import App
from jobline.db import migrate

app = App()  # the worker's App: `python -m jobline --app flow:app worker` with bench/ on the path


@app.function("noop")
async def noop(payload):
    return None


CELLS = {
    "no limit": None,
    "concurrency limit 5000": "INSERT INTO jobline.limits (scope, target, concurrency) VALUES ('function', 'noop', 5000)",
    "per key, 5 at once": "INSERT INTO jobline.limits (scope, target, per_key, concurrency) "
                          "VALUES ('function', 'noop', true, 5)",
}


def drain(server_url: str, jobs: int, limit_sql: str | None) -> float:
    name = f"bench_flow_{secrets.token_hex(4)}"
    base = server_url.rsplit("/", 1)[0]
    url = f"{base}/{name}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(f"CREATE DATABASE {name}")
    try:
        migrate.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("ANALYZE")
            if limit_sql:
                conn.execute(limit_sql)
            conn.execute("INSERT INTO jobline.jobs (function, concurrency_key) "
                         "SELECT 'noop', 'k' || (i %% 1000) FROM generate_series(1, %s) i", [jobs])
        env = {**os.environ, "JOBLINE_DATABASE_URL": url, "JOBLINE_LOG_LEVEL": "warning",
               "PYTHONPATH": os.pathsep.join([str(pathlib.Path(__file__).parent), os.environ.get("PYTHONPATH", "")])}
        worker = subprocess.Popen([sys.executable, "-m", "jobline", "--app", "flow:app", "worker", "--concurrency",
                                   "1000", "--batch-size", "500"], env=env, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True)
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                deadline = time.monotonic() + 600
                while conn.execute("SELECT count(*) FROM jobline.jobs WHERE status <> 'succeeded'").fetchone()[0]:
                    if worker.poll() is not None:
                        raise RuntimeError(f"the worker exited: {worker.stderr.read()}")
                    if time.monotonic() > deadline:
                        raise RuntimeError("the drain took over 10 minutes")
                    time.sleep(0.01)
                first, last = conn.execute("SELECT extract(epoch FROM min(started_at)), "
                                           "extract(epoch FROM max(finished_at)) FROM jobline.attempts").fetchone()
        finally:
            worker.terminate()
            worker.communicate(timeout=60)
        return jobs / float(last - first)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--jobs", type=int, default=20000)
    args = parser.parse_args()
    rates: dict[str, list[float]] = {cell: [] for cell in CELLS}
    for rep in range(args.repeat):
        order = list(CELLS)
        random.shuffle(order)
        for cell in order:
            rate = drain(args.server_url, args.jobs, CELLS[cell])
            rates[cell].append(rate)
            print(json.dumps({"rep": rep, "cell": cell, "jobs_per_s": round(rate)}), flush=True)

    def spread(values):
        return f"{statistics.median(values):,.0f} ({min(values):,.0f}-{max(values):,.0f})"

    print("\n| cell | jobs/s, median (min-max) | / no limit, median of per-repetition ratios (min-max) |")
    print("|---|---|---|")
    for cell in CELLS:
        ratios = [a / b for a, b in zip(rates[cell], rates["no limit"])]
        print(f"| {cell} | {spread(rates[cell])} | {statistics.median(ratios):.2f}x "
              f"({min(ratios):.2f}-{max(ratios):.2f}) |")


if __name__ == "__main__":
    main()
