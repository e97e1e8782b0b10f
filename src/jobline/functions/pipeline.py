"""The built-in ``pipeline`` function: start a run of a pipeline, as a job. It is what a schedule
targeting a pipeline enqueues on each tick (`jobline cron add NAME EXPR --pipeline PIPELINE`);
the run is started by jobline.start_pipeline, the one place that creates runs, and belongs to the
job's owner. Payload: ``{"pipeline": NAME, "payload": {...}}``; the result is the run's id.

A run is started once per successful attempt: if the worker dies after the start committed and
before its report, the retried job starts a second run (at-least-once, as every job).
"""

from __future__ import annotations

from ..errors import Fail, InvalidInput
from ..job import encode_payload
from ..pipeline import PIPELINE_FUNCTION, starter_payload
from ..runtime.context import JobContext

NAME = PIPELINE_FUNCTION


async def start_run(payload: dict, ctx: JobContext) -> dict:
    try:
        start = starter_payload(payload.get("pipeline"), payload.get("payload"))
    except InvalidInput as exc:
        raise Fail(f"pipeline payload: {exc}; it looks like {{\"pipeline\": \"NAME\", \"payload\": {{...}}}}") from None
    unknown = sorted(set(payload) - {"pipeline", "payload"})
    if unknown:
        raise Fail(f"pipeline payload: unknown field(s) {', '.join(unknown)}; known: payload, pipeline")
    # PipelineNotFound is retried with the backoff: the pipeline may be recorded by a worker starting soon.
    # The run's steps are this job's children: a schedule's tick then reports the run's outcome,
    # and a failed step counts against the schedule's max_consecutive_failures.
    run_id = await ctx.require_store().pipeline_start(start["pipeline"], encode_payload(start["payload"]),
                                                      owner=ctx.owner, parent=ctx.job_id)
    return {"pipeline": start["pipeline"], "run_id": run_id}
