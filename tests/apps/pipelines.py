"""Test App for pipeline tests: seed 003's shape with fan-out and fan-in. Each step asserts what
it received from upstream (an AssertionError fails the step, which the test would see), and
returns what it made with the pid that made it, so a test can tell which process ran each step.

publish:  draft ─┬─ title ──┬─ assemble
                 └─ tags  ──┘
flaky:    first ── shaky (fails the first time when payload["fail"], every time when it is "always") ── last
"""

from __future__ import annotations

import os

from jobline import App, Snooze, Step

app = App()


@app.function("draft")
def draft(payload, ctx):
    assert ctx.upstream == {}, ctx.upstream
    return {"text": f"about {payload['topic']}", "pid": os.getpid()}


@app.function("title")
def title(payload, ctx):
    assert set(ctx.upstream) == {"draft"}, ctx.upstream
    return {"title": ctx.upstream["draft"]["text"].upper(), "pid": os.getpid()}


@app.function("tags")
async def tags(payload, ctx):
    assert set(ctx.upstream) == {"draft"}, ctx.upstream
    return {"tags": ctx.upstream["draft"]["text"].split(), "pid": os.getpid()}


@app.function("assemble")
def assemble(payload, ctx):
    assert set(ctx.upstream) == {"title", "tags"}, ctx.upstream
    return {"post": f"{ctx.upstream['title']['title']} #{' #'.join(ctx.upstream['tags']['tags'])}",
            "topic": payload["topic"], "pid": os.getpid()}


app.pipeline("publish", steps=[
    Step("draft", function="draft"),
    Step("title", function="title", after=["draft"]),
    Step("tags", function="tags", after=["draft"]),
    Step("assemble", function="assemble", after=["title", "tags"]),
])


@app.function("first")
def first(payload, ctx):
    return {"made_by_attempt": ctx.attempt, "job": ctx.job_id}


@app.function("shaky", max_attempts=1)
def shaky(payload, ctx):
    if payload.get("fail") == "always":
        raise RuntimeError("the platform said no, again")
    if payload.get("fail"):
        with ctx.connect() as conn:  # fail only the first time: a row remembers it
            conn.execute("CREATE TABLE IF NOT EXISTS shaky_failed (run int)")
            if not conn.execute("SELECT 1 FROM shaky_failed").fetchone():
                conn.execute("INSERT INTO shaky_failed VALUES (1)")
                conn.commit()
                raise RuntimeError("the platform said no")
    return {"from_first": ctx.upstream["first"]}


@app.function("last")
def last(payload, ctx):
    return {"from_shaky": ctx.upstream["shaky"]}


app.pipeline("flaky", steps=[
    Step("first", function="first"),
    Step("shaky", function="shaky", after=["first"]),
    Step("last", function="last", after=["shaky"]),
])


@app.function("sleepy", max_attempts=1)
def sleepy(payload, ctx):
    """Snoozes payload["times"] times, then succeeds: it never spends its single attempt."""
    with ctx.connect() as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS snoozes (job bigint)")
        done = conn.execute("SELECT count(*) FROM snoozes WHERE job = %s", [ctx.job_id]).fetchone()[0]
        if done < payload.get("times", 2):
            conn.execute("INSERT INTO snoozes VALUES (%s)", [ctx.job_id])
            conn.commit()
            raise Snooze(0.05)
    return {"snoozed": done, "attempt": ctx.attempt}


@app.function("leaf")
async def leaf(payload, ctx):
    return {"leaf": ctx.job_id}


@app.function("join")
async def join(payload, ctx):
    return {"joined": len(ctx.upstream)}


# Wide: ten branches finishing together, then a join; many runs at once make completion batches
# that hold steps of several runs, in every order.
app.pipeline("wide", steps=[*(Step(f"b{i}", function="leaf") for i in range(10)),
                            Step("join", function="join", after=[f"b{i}" for i in range(10)])])
