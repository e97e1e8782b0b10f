"""Test App for a pipeline run by a remote worker (no database): each step returns what it
received from upstream, so the job rows show what the claim response carried."""

from __future__ import annotations

from jobline import App, Snooze

app = App()


@app.function("rp-start")
async def start(payload, ctx):
    return {"seed": payload["seed"], "upstream": ctx.upstream}


@app.function("rp-branch")
def branch(payload, ctx):
    return {"seen": ctx.upstream["start"]["seed"] * 2}


@app.function("rp-join", max_attempts=1)
async def join(payload, ctx):
    if ctx.attempt <= 2:  # snooze twice: the single attempt is never spent
        raise Snooze(0.1)
    return {"upstream": ctx.upstream, "attempt": ctx.attempt}
