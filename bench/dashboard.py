"""The dashboard's page render times with 1,000,000 jobs in the table.

    .venv/bin/python bench/dashboard.py --server postgresql://postgres@127.0.0.1:5432/postgres

Creates a scratch database on --server, migrates it, loads bench/dashboard_load.sql (1,000,000
jobs over 7 days, 200 owners, 2 % failed), then requests every screen --repeat times (after one
warm-up) through the ASGI app in this process, signed in as the service and as one user, and
prints p50 / p95 / max per page. The database is dropped at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import re
import secrets
import statistics
import time
import urllib.parse

import httpx
import jwt
import psycopg

from jobline import App
from jobline.api import create_app
from jobline.db import migrate
from jobline.settings import Settings

HERE = pathlib.Path(__file__).parent
KEY = secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(32)


def with_database(url: str, name: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path=f"/{name}"))


async def measure(url: str, repeat: int) -> None:
    app = App(settings=Settings(database_url=url, service_key=KEY, jwt_secret=JWT_SECRET))
    asgi = create_app(app, maintenance=False)
    async with asgi.router.lifespan_context(asgi):
        with psycopg.connect(url) as conn:
            job_id = conn.execute("SELECT max(id) FROM jobline.jobs WHERE owner = 'user-7'"
                                  ).fetchone()[0]
            sid = conn.execute("INSERT INTO jobline.schedules (name, expression, function, owner) VALUES "
                               "('user-7/b', '*/5 * * * *', 'report', 'user-7') RETURNING id").fetchone()[0]
        user = jwt.encode({"sub": "user-7", "aud": "authenticated", "exp": int(time.time()) + 3600}, JWT_SECRET)
        pages = ["/", "/jobs", "/jobs?status=failed", "/jobs?function=cleanup", "/jobs?queue=emails",
                 "/jobs?owner=user-7", "/jobs?error=failure+99", f"/jobs/{job_id}", "/schedules", f"/schedules/{sid}",
                 "/http", "/queues", "/workers"]
        for who, credential in (("service", KEY), ("user-7", user)):
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=asgi), base_url="http://bench",
                                         headers={"Origin": "http://bench"}) as client:
                form = await client.get("/sign-in")
                token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text)[1]
                await client.post("/sign-in", data={"sign_in_token": token, "credential": credential})
                print(f"\nsigned in as {who}: page render, ms over {repeat} requests")
                print(f"{'page':32} {'p50':>7} {'p95':>7} {'max':>7}")
                for page in pages:
                    if who != "service" and "owner=" in page:
                        continue
                    await client.get(page)  # warm-up (the first view of a scope fills the hour cache)
                    times = []
                    for _ in range(repeat):
                        began = time.perf_counter()
                        answer = await client.get(page)
                        times.append((time.perf_counter() - began) * 1000)
                        assert answer.status_code == 200, (page, answer.status_code)
                    times.sort()
                    p95 = times[max(0, int(len(times) * 0.95) - 1)]
                    print(f"{page:32} {statistics.median(times):7.1f} {p95:7.1f} {times[-1]:7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--server", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--repeat", type=int, default=40)
    parser.add_argument("--keep", help="use (and keep) this database if it is already loaded")
    args = parser.parse_args()
    name = args.keep or f"jobline_dash_bench_{secrets.token_hex(4)}"
    url = with_database(args.server, name)
    with psycopg.connect(args.server, autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
        if not exists:
            admin.execute(f'CREATE DATABASE "{name}"')
    try:
        migrate.migrate(url)
        with psycopg.connect(url, autocommit=True) as conn:
            if conn.execute("SELECT count(*) FROM jobline.jobs").fetchone()[0] < 1_000_000:
                began = time.perf_counter()
                conn.execute((HERE / "dashboard_load.sql").read_text())
                print(f"loaded 1,000,000 jobs in {time.perf_counter() - began:.1f} s")
        asyncio.run(measure(url, args.repeat))
    finally:
        if not args.keep:
            with psycopg.connect(args.server, autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


if __name__ == "__main__":
    main()
