"""One adapter per system measured by bench/run.py: jobline, PgQueuer, Procrastinate, raw SQL.

Each adapter installs its schema, enqueues in bulk and one by one, and runs a worker process
whose handler is a no-op that notes when it first ran (drain) or when each job started
(latency). Run as a script, this module is that worker process:

    python bench/systems.py worker SYSTEM URL MODE OUTFILE [OPTIONS_JSON]

MODE is `drain` (exit once the queue is empty) or `serve` (run until SIGTERM). OPTIONS may name
the one function the worker serves (`{"function": "other"}`; jobline and PgQueuer only), so that
one process drains a backlog while another picks up new jobs (run.py's loaded pickup latency).
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time

import psycopg

FIRST_START: list[float] = []


def note_start(index=None, out=None) -> None:
    now = time.time()
    if not FIRST_START:
        FIRST_START.append(now)
    if out is not None and index is not None:
        out.write(f"{index} {now}\n")
        out.flush()


# -- raw SQL: the ceiling ----------------------------------------------------------------------

class Raw:
    name = "raw SQL"
    remaining_sql = "SELECT count(*) FROM rawq WHERE status <> 'done'"

    async def setup(self, url):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            await conn.execute("""
                CREATE TABLE rawq (id bigserial PRIMARY KEY, queue text NOT NULL DEFAULT 'default',
                  status text NOT NULL DEFAULT 'queued', priority int NOT NULL DEFAULT 0,
                  run_at timestamptz NOT NULL DEFAULT now(), payload jsonb);
                CREATE INDEX rawq_due ON rawq (queue, priority, run_at, id) WHERE status = 'queued';""")

    async def bulk(self, url, n):
        async with await psycopg.AsyncConnection.connect(url) as conn:
            began = time.perf_counter()
            async with conn.cursor().copy("COPY rawq (payload) FROM STDIN") as copy:
                await copy.write("{}\n" * n)
            await conn.commit()
            return time.perf_counter() - began

    async def single(self, url, n, latency_log=None, gap=0.0):
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            began = time.perf_counter()
            for i in range(n):
                await conn.execute("INSERT INTO rawq (payload) VALUES (%s::jsonb)", ['{"i": %d}' % i])
            return time.perf_counter() - began

    async def worker(self, url, mode, out, options):
        batch = options.get("batch", 100)
        async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
            while True:
                async with conn.transaction():
                    rows = await (await conn.execute(
                        "UPDATE rawq SET status = 'running' WHERE id IN (SELECT id FROM rawq WHERE status = 'queued' "
                        "AND queue = 'default' ORDER BY priority, run_at, id LIMIT %s FOR UPDATE SKIP LOCKED) "
                        "RETURNING id, payload", [batch], prepare=True)).fetchall()
                if not rows:
                    return
                for _ in rows:
                    note_start()
                await conn.execute("UPDATE rawq SET status = 'done' WHERE id = ANY(%s)", [[r[0] for r in rows]],
                                   prepare=True)


# -- jobline ---------------------------------------------------------------------------------------

class Jobline:
    name = "jobline"
    remaining_sql = "SELECT count(*) FROM jobline.jobs WHERE status NOT IN ('succeeded', 'failed')"

    def app(self, url, out=None, function="noop", sync=False):
        from jobline import App

        app = App(url)
        if sync:  # a plain def: the worker runs it in its thread pool (defaults sized for that)
            @app.function(function)
            def noop(payload):
                note_start(payload.get("i"), out)
        else:
            @app.function(function)
            async def noop(payload):
                note_start(payload.get("i"), out)

        return app

    async def setup(self, url):
        from jobline.db import migrate

        migrate.migrate(url)

    async def bulk(self, url, n, function="noop"):
        async with self.app(url, function=function) as app:
            began = time.perf_counter()
            await app.enqueue_many_async([{"function": function}] * n)
            return time.perf_counter() - began

    async def single(self, url, n, latency_log=None, gap=0.0):
        async with self.app(url) as app:
            return await _single_loop(lambda i: app.enqueue_async("noop", {"i": i}), n, latency_log, gap)

    async def worker(self, url, mode, out, options):
        async with self.app(url, out, options.get("function", "noop"), options.get("sync", False)) as app:
            worker = await app.worker_async(concurrency=options.get("concurrency"),
                                            batch_size=options.get("batch"), maintenance=False)
            if mode == "drain":
                await worker.run_until_idle()
            else:
                await worker.run(handle_signals=True)


# -- PgQueuer --------------------------------------------------------------------------------------

class PgQueuer:
    name = "PgQueuer"
    remaining_sql = "SELECT count(*) FROM pgqueuer"

    async def _queries(self, url):
        import asyncpg
        from pgqueuer.queries import Queries

        conn = await asyncpg.connect(url)
        return conn, Queries.from_asyncpg_connection(conn)

    async def setup(self, url):
        conn, queries = await self._queries(url)
        await queries.install()
        await conn.close()

    async def bulk(self, url, n, function="noop"):
        conn, queries = await self._queries(url)
        began = time.perf_counter()
        await queries.enqueue([function] * n, [None] * n, [0] * n)
        elapsed = time.perf_counter() - began
        await conn.close()
        return elapsed

    async def single(self, url, n, latency_log=None, gap=0.0):
        conn, queries = await self._queries(url)
        try:
            return await _single_loop(lambda i: queries.enqueue("noop", json.dumps({"i": i}).encode()), n,
                                      latency_log, gap)
        finally:
            await conn.close()

    async def worker(self, url, mode, out, options):
        from pgqueuer import QueueManager
        from pgqueuer.types import QueueExecutionMode

        managers = []
        for _ in range(options.get("managers", 1)):
            qm = QueueManager((await self._queries(url))[1])

            @qm.entrypoint(options.get("function", "noop"))
            async def noop(job):
                note_start(json.loads(job.payload)["i"] if job.payload else None, out)

            managers.append(qm)
        run_mode = QueueExecutionMode.drain if mode == "drain" else QueueExecutionMode.continuous
        if mode != "drain":
            def stop_all():
                for qm in managers:
                    qm.shutdown.set()

            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop_all)
        batch = {"batch_size": options["batch"]} if "batch" in options else {}  # else PgQueuer's default
        await asyncio.gather(*(qm.run(mode=run_mode, **batch) for qm in managers))


# -- Procrastinate ---------------------------------------------------------------------------------

class Procrastinate:
    name = "Procrastinate"
    remaining_sql = "SELECT count(*) FROM procrastinate_jobs WHERE status NOT IN ('succeeded', 'failed')"

    def app(self, url, out=None):
        import procrastinate

        app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))

        @app.task(name="noop")
        async def noop(i=None):
            note_start(i, out)

        return app, noop

    async def setup(self, url):
        app, _ = self.app(url)
        async with app.open_async():
            await app.schema_manager.apply_schema_async()

    async def bulk(self, url, n):
        app, noop = self.app(url)
        async with app.open_async():
            began = time.perf_counter()
            await noop.batch_defer_async(*([{}] * n))
            return time.perf_counter() - began

    async def single(self, url, n, latency_log=None, gap=0.0):
        app, noop = self.app(url)
        async with app.open_async():
            return await _single_loop(lambda i: noop.defer_async(i=i), n, latency_log, gap)

    async def worker(self, url, mode, out, options):
        app, _ = self.app(url, out)
        async with app.open_async():
            await app.run_worker_async(concurrency=options.get("concurrency", 50), wait=mode != "drain",
                                       install_signal_handlers=mode != "drain")


async def _single_loop(enqueue, n, latency_log, gap):
    """n awaited enqueues; with latency_log, note when each returned, gap seconds apart."""
    began = time.perf_counter()
    for i in range(n):
        await enqueue(i)
        if latency_log is not None:
            latency_log.append(time.time())
            await asyncio.sleep(gap)
    return time.perf_counter() - began


SYSTEMS = {"raw": Raw, "jobline": Jobline, "pgqueuer": PgQueuer, "procrastinate": Procrastinate}


def main() -> None:
    _, command, system, url, mode, outfile, *rest = sys.argv
    options = json.loads(rest[0]) if rest else {}
    adapter = SYSTEMS[system]()
    with open(outfile, "w", buffering=1) as out:
        out.write("ready\n")
        asyncio.run(adapter.worker(url, mode, out, options))
        out.write(f"first {FIRST_START[0] if FIRST_START else 0}\n")


if __name__ == "__main__":
    main()
