"""Remote-worker claims: `POST /functions/v1/claim-next-task` against a real `jobline serve`,
and the same cycle through jobline.Client's database fallback, with 1, 4 and 16 concurrent
clients.

    .venv/bin/python bench/claims.py                               # ~6 minutes
    .venv/bin/python bench/claims.py --server postgresql://postgres@127.0.0.1:5432/test --seconds 10

Each client loops: claim one task, then complete it (a remote worker's cycle with a no-op
handler). Every cell starts on a queue refilled to --tasks pending tasks of one remote task
type, runs --seconds after one second of warm-up, and reports completed cycles per second and
the claim's latency (p50 / p99), the median of --repeat runs (3). Paths:

- ``http``: a raw httpx.AsyncClient per client (what any language's worker does);
- ``client-http``: jobline.Client over HTTP (the same requests, plus the Client's own work);
- ``client-db``: jobline.Client whose endpoint is down (a closed port), so every operation goes
  through its database fallback (tasks.Tasks on its own connection pool, one per client).

A scratch database is created on --server and dropped at the end; the server process is
started here on a free port. Results are printed and appended to bench/results/claims-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import logging
import os
import pathlib
import secrets
import socket
import subprocess
import sys
import time
import urllib.parse

import httpx
import psycopg

from jobline import App, Client
from jobline.db import migrate
from jobline.settings import Settings

HERE = pathlib.Path(__file__).parent
TASK_TYPE = "bench-remote"
SERVICE_KEY = secrets.token_urlsafe(32)
WARMUP_SECONDS = 1.0


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(db_url: str, port: int) -> subprocess.Popen:
    env = {**os.environ, "JOBLINE_DATABASE_URL": db_url, "JOBLINE_SERVICE_KEY": SERVICE_KEY,
           "JOBLINE_LOG_LEVEL": "warning"}
    process = subprocess.Popen([sys.executable, "-m", "jobline", "serve", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"jobline serve exited: {process.stderr.read()}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    raise SystemExit("jobline serve did not answer /healthz within 30 s")


async def refill(db_url: str, tasks: int) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("TRUNCATE jobline.jobs, jobline.attempts RESTART IDENTITY CASCADE")
    app = App(settings=Settings(database_url=db_url))
    async with app:
        for start in range(0, tasks, 5000):
            await app.enqueue_many_async([{"function": TASK_TYPE, "payload": {"i": i}}
                                          for i in range(start, min(tasks, start + 5000))])
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE jobline.jobs")


class Window:
    """The measured interval: after the warm-up, until the deadline or the queue runs dry."""

    def __init__(self, seconds: float):
        now = time.perf_counter()
        self.start = now + WARMUP_SECONDS
        self.end = self.start + seconds
        self.cycles = 0
        self.latencies: list[float] = []

    def record(self, began: float, claimed: float) -> None:
        if self.start <= began and claimed <= self.end:
            self.latencies.append(claimed - began)
        now = time.perf_counter()
        if self.start <= now <= self.end:
            self.cycles += 1

    def dry(self) -> None:
        self.end = min(self.end, time.perf_counter())

    @property
    def over(self) -> bool:
        return time.perf_counter() >= self.end


async def raw_http(url: str, window: Window) -> None:
    body = {"task_types": [TASK_TYPE]}
    async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {SERVICE_KEY}"}, timeout=30) as http:
        while not window.over:
            began = time.perf_counter()
            response = await http.post("/functions/v1/claim-next-task", json=body)
            claimed = time.perf_counter()
            if response.status_code == 204:
                window.dry()
                return
            response.raise_for_status()
            task = response.json()
            done = await http.post(f"/api/tasks/{task['task_id']}/complete",
                                   json={"lease_token": task["lease_token"], "result": None})
            done.raise_for_status()
            window.record(began, claimed)


async def with_client(client: Client, window: Window) -> None:
    try:
        while not window.over:
            began = time.perf_counter()
            task = await client.claim_next_task_async([TASK_TYPE])
            claimed = time.perf_counter()
            if task is None:
                window.dry()
                return
            await client.complete_async(task)
            window.record(began, claimed)
    finally:
        await client.close_async()


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def cell(path: str, clients: int, seconds: float, server_url: str, db_url: str, tasks: int) -> dict:
    await refill(db_url, tasks)
    window = Window(seconds)
    settings = Settings(database_url=db_url, service_key=SERVICE_KEY)
    down = f"http://127.0.0.1:{free_port()}"
    if path == "http":
        actors = [raw_http(server_url, window) for _ in range(clients)]
    elif path == "client-http":
        actors = [with_client(Client(server_url, SERVICE_KEY), window) for _ in range(clients)]
    else:  # one pool connection per client, as one remote worker process per client would have
        actors = [with_client(Client(down, SERVICE_KEY, db_url, settings=settings, pool_size=1), window)
                  for _ in range(clients)]
    cpu = time.process_time()
    await asyncio.gather(*actors)
    cpu = time.process_time() - cpu
    elapsed = window.end - window.start
    return {"path": path, "clients": clients, "cycles": window.cycles, "seconds": round(elapsed, 3),
            "claims_per_s": round(window.cycles / elapsed, 1),
            # this benchmark process's own CPU per cycle (warm-up included): the client side's cost
            "client_cpu_ms": round(cpu * 1000 / max(1, window.cycles), 3),
            "p50_ms": round(percentile(window.latencies, 50) * 1000, 2),
            "p99_ms": round(percentile(window.latencies, 99) * 1000, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default=os.environ.get("JOBLINE_BENCH_DATABASE_URL",
                                                           "postgresql://postgres@127.0.0.1:5432/test"),
                        help="PostgreSQL server URL; a scratch database is created there and dropped")
    parser.add_argument("--tasks", type=int, default=20_000, help="pending tasks at the start of each cell")
    parser.add_argument("--seconds", type=float, default=8.0, help="measured seconds per cell")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; the median run is reported")
    parser.add_argument("--paths", nargs="+", default=["http", "client-http", "client-db"],
                        choices=["http", "client-http", "client-db"])
    args = parser.parse_args()
    logging.getLogger("jobline").setLevel(logging.ERROR)  # the fallback's WARNING, once per client

    name = f"bench_claims_{secrets.token_hex(4)}"
    with psycopg.connect(args.server, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
        version = conn.execute("SHOW server_version").fetchone()[0]
        sync_commit = conn.execute("SHOW synchronous_commit").fetchone()[0]
    db_url = with_database(args.server, name)
    server = None
    results = []
    try:
        migrate.migrate(db_url)
        port = free_port()
        server_url = f"http://127.0.0.1:{port}"
        if set(args.paths) != {"client-db"}:
            server = start_server(db_url, port)
        print(f"PostgreSQL {version} (synchronous_commit={sync_commit}), {os.cpu_count()} cores; "
              f"{args.tasks} tasks per cell, {args.seconds:g} s measured")
        print(f"{'path':<12} {'clients':>7} {'claims/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'client CPU ms':>14}  runs")
        for path in args.paths:
            for clients in args.clients:
                runs = sorted((asyncio.run(cell(path, clients, args.seconds, server_url, db_url, args.tasks))
                               for _ in range(args.repeat)), key=lambda r: r["claims_per_s"])
                result = {**runs[len(runs) // 2], "runs_claims_per_s": [r["claims_per_s"] for r in runs]}
                results.append(result)
                print(f"{path:<12} {clients:>7} {result['claims_per_s']:>9.1f} {result['p50_ms']:>8.2f} "
                      f"{result['p99_ms']:>8.2f} {result['client_cpu_ms']:>14.3f}  "
                      f"{', '.join(f'{r:.0f}' for r in result['runs_claims_per_s'])}", flush=True)
    finally:
        if server is not None:
            server.terminate()
            server.wait(15)
        with psycopg.connect(args.server, autocommit=True) as conn:
            conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    by = {(r["path"], r["clients"]): r["claims_per_s"] for r in results}
    for clients in args.clients:
        if ("http", clients) in by and ("client-db", clients) in by:
            print(f"HTTP / database fallback, {clients} clients: {by['http', clients] / by['client-db', clients]:.2f}x")
    out = HERE / "results" / f"claims-{dt.datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"postgres": version, "synchronous_commit": sync_commit, "cores": os.cpu_count(),
                               "tasks": args.tasks, "seconds": args.seconds, "results": results}, indent=2))
    print(f"raw results: {out}")


if __name__ == "__main__":
    main()
