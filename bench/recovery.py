"""Recovery after a database fault: how long `jobline worker`, `jobline scheduler` and `jobline
serve` take to use PostgreSQL again, and how long each takes to stop while it is down.

    .venv/bin/python bench/recovery.py                      # terminate, immediate, 5 s and 30 s outages
    .venv/bin/python bench/recovery.py --outage 30 --outage 300   # and a 5-minute outage (~7 minutes)
    .venv/bin/python bench/recovery.py --faults refuse --outage 30 --rounds 3

Runs on a private embedded PostgreSQL of its own (no server needed) with the project's venv
(no bench/.venv). The three processes run for the whole session; after each fault the script
waits until PostgreSQL accepts connections again (t = 0), enqueues a job at once, and measures:

- worker:    the job's finished_at minus its created_at (database clock)
- scheduler: the first run of a '1 seconds' schedule created after t = 0 (database clock), so
             up to 1 s of it is the schedule's own period
- serve:     the first 200 from GET /readyz after t = 0 (polled every 50 ms)

Faults: ``terminate`` (pg_terminate_backend of every connection: the server never goes away),
``immediate`` (pg_ctl restart -m immediate: a crash and WAL recovery), ``refuse`` (the server
stopped for --outage seconds: connections are refused meanwhile). Finally the server is stopped
for --down-before-term seconds and every process gets SIGTERM: the time each takes to exit.
Results are printed and written to bench/results/recovery-<time>.json (not committed).
See docs/concepts/reliability.md for the figures.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import httpx
import psycopg

HERE = pathlib.Path(__file__).parent
TESTS = HERE.parent / "tests"
sys.path.insert(0, str(TESTS))
import outage  # noqa: E402  (tests/outage.py: the fault helpers the tests use too)

from jobline.db import migrate  # noqa: E402
from jobline.db.embedded import EmbeddedPostgres  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class Session:
    def __init__(self, workdir: pathlib.Path, env: dict[str, str]):
        self.workdir = workdir
        self.server = EmbeddedPostgres(workdir / "pg")
        self.url = self.server.ensure_running()
        migrate.migrate(self.url)
        self.port = free_port()
        # tests/e2e/recovery_app.py: a no-op function and a '1 seconds' schedule.
        path = os.pathsep.join(filter(None, [str(TESTS / "e2e"), os.environ.get("PYTHONPATH")]))
        self.env = {**os.environ, "JOBLINE_DATABASE_URL": self.url, "PYTHONPATH": path, "PYTHONUNBUFFERED": "1", **env}
        self.processes: dict[str, subprocess.Popen] = {}

    def start(self) -> None:
        commands = {"worker": ["worker", "--no-scheduler"], "scheduler": ["scheduler"],
                    "serve": ["serve", "--port", str(self.port)]}
        for name, args in commands.items():
            with open(self.workdir / f"{name}.log", "w") as log:  # the child keeps its own copy
                self.processes[name] = subprocess.Popen(
                    [sys.executable, "-m", "jobline", "--app", "recovery_app:app", *args], env=self.env,
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)

    def log_tail(self, name: str, lines: int = 30) -> str:
        text = (self.workdir / f"{name}.log").read_text(errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def measure(self, fault: str, outage_s: float, timeout: float) -> dict:
        """Apply the fault, then time each process's first use of the database afterwards."""
        if fault == "terminate":
            outage.terminate_backends(self.url)
        elif fault == "immediate":
            self.server.restart(mode="immediate")
        else:
            outage.down(self.server)
            time.sleep(outage_s)
            outage.up(self.server)
        t0 = outage.wait_accepting(self.url)
        with psycopg.connect(self.url, autocommit=True) as conn:
            up_at, job_id = conn.execute("SELECT clock_timestamp(), jobline.enqueue('noop')").fetchone()
        results: dict[str, float | None] = {"worker": None, "scheduler": None, "serve": None}
        with httpx.Client(timeout=2) as http:
            while None in results.values() and time.monotonic() - t0 < timeout:
                if results["serve"] is None:
                    try:
                        if http.get(f"http://127.0.0.1:{self.port}/readyz").status_code == 200:
                            results["serve"] = time.monotonic() - t0
                    except httpx.HTTPError:
                        pass
                try:
                    with psycopg.connect(self.url, autocommit=True) as conn:
                        if results["worker"] is None:
                            row = conn.execute("SELECT extract(epoch FROM finished_at - created_at) FROM jobline.jobs "
                                               "WHERE id = %s AND status = 'succeeded'", [job_id]).fetchone()
                            if row:
                                results["worker"] = float(row[0])
                        if results["scheduler"] is None:
                            row = conn.execute("SELECT extract(epoch FROM min(created_at) - %s) FROM jobline.schedule_runs "
                                               "WHERE created_at >= %s AND job_id IS NOT NULL", [up_at, up_at]).fetchone()
                            if row[0] is not None:
                                results["scheduler"] = float(row[0])
                except psycopg.OperationalError:
                    pass  # a terminate fault may cut this connection too
                time.sleep(0.05)
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise SystemExit(f"{name} exited ({process.returncode}):\n{self.log_tail(name)}")
        return {"fault": fault, "outage_s": outage_s if fault == "refuse" else 0,
                **{f"{k}_s": (round(v, 2) if v is not None else None) for k, v in results.items()}}

    def stop_while_down(self, down_s: float, timeout: float) -> dict:
        outage.down(self.server)
        time.sleep(down_s)
        began = time.monotonic()
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        exits: dict[str, float | None] = {f"{name}_s": None for name in self.processes}
        while time.monotonic() - began < timeout and None in exits.values():
            for name, process in self.processes.items():
                if exits[f"{name}_s"] is None and process.poll() is not None:
                    exits[f"{name}_s"] = round(time.monotonic() - began, 2)
            time.sleep(0.05)
        for name, process in self.processes.items():
            if process.poll() is None:
                process.kill()
                process.wait()
        return {"down_before_term_s": down_s, **exits,
                "returncodes": {n: p.returncode for n, p in self.processes.items()}}

    def wait_healthy(self, timeout: float = 60) -> None:
        """Until a tick made a job, the worker ran one and /readyz answers 200."""
        self.measure("terminate", 0, timeout)  # a first pass also proves the setup works

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait()
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--faults", default="terminate,immediate,refuse",
                        help="comma-separated: terminate, immediate, refuse (default all)")
    parser.add_argument("--outage", type=float, action="append",
                        help="seconds a refuse fault lasts (repeatable; default 5 and 30)")
    parser.add_argument("--rounds", type=int, default=1, help="repetitions of each fault")
    parser.add_argument("--timeout", type=float, default=420, help="give up waiting for recovery after this")
    parser.add_argument("--down-before-term", type=float, default=20,
                        help="seconds the server is down before SIGTERM (the stop check)")
    parser.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the processes, e.g. JOBLINE_POOL_TIMEOUT=5")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (logs)")
    args = parser.parse_args()
    outages = args.outage or [5.0, 30.0]
    env = dict(item.split("=", 1) for item in args.env)

    workdir = pathlib.Path(tempfile.mkdtemp(prefix="jobline-recovery-"))
    os.chmod(workdir, 0o755)  # as root, PostgreSQL runs as `nobody`, which must reach it
    session = Session(workdir, env)
    rows = []
    try:
        session.start()
        session.wait_healthy()
        for fault in args.faults.split(","):
            for seconds in (outages if fault == "refuse" else [0]):
                for _ in range(args.rounds):
                    row = session.measure(fault, seconds, args.timeout)
                    print(json.dumps(row), flush=True)
                    rows.append(row)
        stop = session.stop_while_down(args.down_before_term, timeout=300)
        print(json.dumps({"stop_while_down": stop}), flush=True)
    finally:
        session.close()
        if args.keep:
            print(f"logs in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    results = HERE / "results"
    results.mkdir(exist_ok=True)
    out = results / f"recovery-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.write_text(json.dumps({"recoveries": rows, "stop_while_down": stop, "env": env}, indent=2))
    print(f"\n{'fault':<10} {'outage s':>8} {'worker s':>9} {'scheduler s':>12} {'serve s':>8}")
    for row in rows:
        print(f"{row['fault']:<10} {row['outage_s']:>8g} " + " ".join(
            f"{('-' if row[k] is None else row[k]):>{w}}" for k, w in
            (("worker_s", 9), ("scheduler_s", 12), ("serve_s", 8))))
    print(f"stop while down ({args.down_before_term:g} s): " + ", ".join(
        f"{k[:-2]} {'did not exit' if v is None else f'{v} s'}" for k, v in stop.items() if k.endswith("_s")
        and k != "down_before_term_s") + f"; exit codes {stop['returncodes']}")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
