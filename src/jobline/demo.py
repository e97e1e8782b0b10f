"""`jobline demo`: seed 000's edge functions as jobline functions, on tables the demo creates.

daily-token-reset zeroes every user's AI token count; batch-ai-processor works through pending
personalization requests (its "AI provider" fails the first call, so the job retries);
streak-updater extends or resets streaks from yesterday's activity and grants XP, after the
token reset (a dependency); cleanup-expired-tokens deletes expired share links, and a second
run given a bad argument fails without retrying, which cancels the job waiting on it.
"""

from __future__ import annotations

import asyncio
import json
import time

import click

from .app import App
from .errors import Fail
from .runtime.context import JobContext
from .settings import Settings

app = App()

SETUP = """
DROP SCHEMA IF EXISTS jobline_demo CASCADE;
CREATE SCHEMA jobline_demo;
CREATE TABLE jobline_demo.users (id int PRIMARY KEY, name text, tokens_used int, streak int, xp int);
INSERT INTO jobline_demo.users VALUES
  (1, 'ada', 24000, 4, 120), (2, 'grace', 25000, 0, 40), (3, 'linus', 3100, 9, 610);
CREATE TABLE jobline_demo.activity (user_id int, day date);
INSERT INTO jobline_demo.activity VALUES (1, current_date - 1), (3, current_date - 1), (3, current_date - 2);
CREATE TABLE jobline_demo.personalization_requests (
  id int PRIMARY KEY, user_id int, prompt text, status text DEFAULT 'pending', suggestion text);
INSERT INTO jobline_demo.personalization_requests (id, user_id, prompt)
  SELECT n, 1 + n % 3, 'suggest a meal #' || n FROM generate_series(1, 7) n;
CREATE TABLE jobline_demo.share_links (token text PRIMARY KEY, expires_at timestamptz);
INSERT INTO jobline_demo.share_links
  SELECT md5(n::text), now() + (n - 4) * interval '1 day' FROM generate_series(1, 8) n;
"""


@app.function("daily-token-reset")
async def daily_token_reset(payload: dict, ctx: JobContext) -> dict:
    async with await ctx.connect_async() as conn:
        cur = await conn.execute("UPDATE jobline_demo.users SET tokens_used = 0 WHERE tokens_used > 0")
        return {"users_reset": cur.rowcount}


@app.function("batch-ai-processor", max_attempts=3, backoff_base=0.5)
async def batch_ai_processor(payload: dict, ctx: JobContext) -> dict:
    if ctx.attempt == 1:  # the provider is overloaded at first, as providers are
        raise ConnectionError("AI provider answered 503 Service Unavailable")
    batch_size = int(payload.get("batch_size", 5))
    async with await ctx.connect_async() as conn:
        cur = await conn.execute(
            """UPDATE jobline_demo.personalization_requests r
               SET status = 'done', suggestion = 'try a ' || (ARRAY['salad', 'curry', 'soup'])[1 + r.id %% 3]
               WHERE r.id IN (SELECT id FROM jobline_demo.personalization_requests
                              WHERE status = 'pending' ORDER BY id LIMIT %s)""", [batch_size])
        return {"processed": cur.rowcount}


@app.function("streak-updater")
def streak_updater(payload: dict, ctx: JobContext) -> dict:  # a sync handler: runs in a thread
    with ctx.connect() as conn:
        extended = conn.execute(
            """UPDATE jobline_demo.users u SET streak = streak + 1, xp = xp + 10 * (streak + 1)
               WHERE EXISTS (SELECT 1 FROM jobline_demo.activity a WHERE a.user_id = u.id
                             AND a.day = current_date - 1)""").rowcount
        reset = conn.execute(
            """UPDATE jobline_demo.users u SET streak = 0
               WHERE NOT EXISTS (SELECT 1 FROM jobline_demo.activity a WHERE a.user_id = u.id
                                 AND a.day = current_date - 1) AND streak > 0""").rowcount
        return {"extended": extended, "reset": reset}


@app.function("cleanup-expired-tokens")
async def cleanup_expired_tokens(payload: dict, ctx: JobContext) -> dict:
    grace_days = payload.get("grace_days", 0)
    if not isinstance(grace_days, int) or grace_days < 0:
        raise Fail(f"grace_days must be a whole number >= 0, got {grace_days!r}")  # no retry
    async with await ctx.connect_async() as conn:
        cur = await conn.execute("DELETE FROM jobline_demo.share_links WHERE expires_at < now() - %s * interval '1 day'",
                                 [grace_days])
        return {"links_deleted": cur.rowcount}


async def run(settings: Settings) -> None:
    app.settings = settings
    started = time.monotonic()
    async with app:
        click.echo(f"database: {_where(settings)}")
        store = app.store
        async with store.connection() as conn:
            await conn.execute(SETUP.encode())
            # Seed 000's SQL, with only the schema name changed:
            cur = await conn.execute("SELECT jobline.log_scheduled_task('daily-token-reset')")
            reset_id = (await cur.fetchone())[0]
        ai = await app.enqueue_async("batch-ai-processor", {"batch_size": 10})
        streaks = await app.enqueue_async("streak-updater", depends_on=reset_id)
        cleanup = await app.enqueue_async("cleanup-expired-tokens", {"grace_days": 1})
        bad_cleanup = await app.enqueue_async("cleanup-expired-tokens", {"grace_days": -3})
        report = await app.enqueue_async("sql", {"command": "SELECT count(*) FROM jobline_demo.share_links"},
                                         depends_on=bad_cleanup.id)
        ids = [reset_id, ai.id, streaks.id, cleanup.id, bad_cleanup.id, report.id]
        click.echo(f"enqueued {len(ids)} jobs; a worker with concurrency 4 runs them:\n")

        worker = await app.worker_async(concurrency=4, maintenance=False)
        running = asyncio.create_task(worker.run(handle_signals=False))
        while True:
            jobs = [await store.job_get(i) for i in ids]
            if all(j.status in ("succeeded", "failed", "cancelled") for j in jobs):
                break
            await asyncio.sleep(0.1)
        worker.request_stop()
        await running

        click.echo(f"{'job':>4}  {'function':<24}{'status':<11}{'attempts':<10}result / error")
        for job in jobs:
            detail = json.dumps(job.result) if job.status == "succeeded" else (job.last_error or "").strip().split("\n")[0]
            click.echo(f"{job.id:>4}  {job.function:<24}{job.status:<11}{job.attempts}/{job.max_attempts:<8}{detail}")
        async with store.connection() as conn:
            cur = await conn.execute("SELECT name, tokens_used, streak, xp FROM jobline_demo.users ORDER BY id")
            users = await cur.fetchall()
        click.echo("\nusers after the run: " + ", ".join(f"{n} (tokens {t}, streak {s}, xp {x})" for n, t, s, x in users))
        counts = {s: sum(j.status == s for j in jobs) for s in ("succeeded", "failed", "cancelled")}
        retried = sum(j.attempts - 1 for j in jobs if j.attempts > 1)
        click.echo(f"\nsummary: {counts['succeeded']} succeeded, {counts['failed']} failed, {counts['cancelled']} "
                   f"cancelled, {retried} retried, in {time.monotonic() - started:.1f} s")
        click.echo("next: `jobline jobs list`, `jobline jobs show ID`, `jobline db stop`")


def _where(settings: Settings) -> str:
    return "JOBLINE_DATABASE_URL" if settings.database_url else "embedded PostgreSQL (stop it with `jobline db stop`)"
