"""Functions the HTTP API tests serve: `register(app)` adds them to any App (the in-process
servers build their own App per test); `app` is that App for `jobline --app apps.api:app serve`."""

from __future__ import annotations

import asyncio
import os
import time

from jobline import App, Fail, RetryIn


def register(app: App) -> App:
    @app.function("echo")
    async def echo(payload):
        return {"got": payload}

    @app.function("pid")
    async def pid(payload):
        return {"pid": os.getpid()}  # which server process answered (`jobline serve --workers`)

    @app.function("sync-echo")
    def sync_echo(payload):
        return {"got": payload, "thread": True}

    @app.function("public", verify_jwt=False)
    def public(payload):
        return {"public": True, "got": payload}

    @app.function("with-context")
    async def with_context(payload, ctx):
        async with await ctx.connect_async() as conn:
            one = (await (await conn.execute("SELECT 1")).fetchone())[0]
        return {"job_id": ctx.job_id, "attempt": ctx.attempt, "owner": ctx.owner, "function": ctx.function,
                "db": one}

    @app.function("slow", timeout=0.5)
    async def slow(payload):
        await asyncio.sleep(30)

    @app.function("slow-sync", timeout=0.5)
    def slow_sync(payload):
        time.sleep(2)

    @app.function("refuse")
    def refuse(payload):
        raise Fail("the order is already shipped")

    @app.function("later")
    def later(payload):
        raise RetryIn(7.5, "busy, come back later")

    @app.function("boom")
    def boom(payload):
        raise RuntimeError("kaput: the widget broke\nsecond line of detail")

    @app.function("not-json")
    def not_json(payload):
        return {"when": object()}

    @app.function("nothing")
    def nothing():
        return None

    @app.function("add")
    def add(payload):  # the jobs that POST /api/jobs/run processes
        return {"sum": payload["a"] + payload["b"]}

    @app.function("explode", max_attempts=1)
    def explode(payload):
        raise ValueError("no good")

    return app


app = register(App())
