"""Tracing (jobline/tracing.py) with OpenTelemetry's SDK and its in-memory exporter: the enqueue
span, the attempt span beneath it, failures, and nothing at all without a TracerProvider."""

from __future__ import annotations

import asyncio

import psycopg
import pytest

pytest.importorskip("opentelemetry.sdk.trace")

from opentelemetry import trace  # noqa: E402
from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor  # noqa: E402
from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor  # noqa: E402
from opentelemetry.trace import SpanKind, StatusCode  # noqa: E402
from otel_support import named, unset_provider  # noqa: E402

import jobline.tracing  # noqa: E402
from jobline import App, RetryIn  # noqa: E402

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def app(settings):
    app = App(settings=settings)
    app.function("traced")(lambda payload: {"ok": True})
    await app.open_async()
    yield app
    await app.close_async()


def stored_context(sql, job_id: int):
    return sql("SELECT trace_context FROM jobline.jobs WHERE id = %s", [job_id])[0][0]


async def test_the_attempt_span_is_a_child_of_the_span_that_enqueued_the_job(app, spans, sql):
    with trace.get_tracer("test").start_as_current_span("request") as request:
        job = await app.enqueue_async("traced", {"card": "4111 1111 1111 1111"}, queue="q1")
    await app.process_async(queues=["q1"])

    [enqueue] = named(spans, "jobline.enqueue traced")
    [run] = named(spans, "jobline.run traced")
    assert enqueue.kind == SpanKind.PRODUCER and run.kind == SpanKind.CONSUMER
    assert enqueue.parent.span_id == request.get_span_context().span_id
    assert run.parent.span_id == enqueue.context.span_id
    assert run.context.trace_id == enqueue.context.trace_id == request.get_span_context().trace_id
    assert enqueue.attributes["jobline.job.id"] == job.id
    assert dict(run.attributes) == {
        "messaging.system": "jobline", "messaging.operation.type": "process", "messaging.destination.name": "q1",
        "messaging.message.id": str(job.id), "jobline.job.id": job.id, "jobline.function": "traced",
        "jobline.queue": "q1", "jobline.attempt": 1, "jobline.max_attempts": 3,
        "jobline.outcome": "succeeded", "jobline.job.status": "succeeded"}
    assert run.status.status_code == StatusCode.UNSET
    # The job carries the W3C context of the enqueue span, and no payload reaches a span.
    version, trace_id, parent_id, flags = stored_context(sql, job.id)["traceparent"].split("-")
    assert (version, trace_id, parent_id) == ("00", f"{enqueue.context.trace_id:032x}", f"{enqueue.context.span_id:016x}")
    assert int(flags, 16) & 1  # sampled
    assert not any("4111" in str(v) for s in spans.get_finished_spans() for v in s.attributes.values())


async def test_failed_and_retried_attempts_are_errors_with_the_exception(app, spans):
    @app.function("flaky", max_attempts=2)
    def flaky(payload, ctx):
        if ctx.attempt == 1:
            raise RetryIn(0, "upstream busy")
        raise ValueError("bad input")

    await app.enqueue_async("flaky")
    await app.process_async()

    first, second = sorted(named(spans, "jobline.run flaky"), key=lambda s: s.attributes["jobline.attempt"])
    assert (first.status.status_code, first.status.description) == (StatusCode.ERROR, "upstream busy")
    assert (first.attributes["jobline.outcome"], first.attributes["jobline.job.status"]) == ("failed", "pending")
    assert (second.status.status_code, second.status.description) == (StatusCode.ERROR, "ValueError: bad input")
    assert second.attributes["jobline.job.status"] == "failed"
    [event] = second.events
    assert (event.name, event.attributes["exception.type"], event.attributes["exception.message"]) == (
        "exception", "ValueError", "bad input")
    assert first.events[0].attributes["exception.type"] == "jobline.errors.RetryIn"


async def test_sync_and_bulk_enqueues_carry_the_context(app, spans, sql):
    def enqueue_from_a_thread():
        with trace.get_tracer("test").start_as_current_span("script"):
            return app.enqueue("traced")

    one = await asyncio.to_thread(enqueue_from_a_thread)
    with trace.get_tracer("test").start_as_current_span("batch"):
        ids = await app.enqueue_many_async([{"function": "traced"}, {"function": "traced", "queue": "q2"}])

    [single] = [s for s in named(spans, "jobline.enqueue traced") if "jobline.job.id" in s.attributes]
    [bulk] = [s for s in named(spans, "jobline.enqueue traced") if "jobline.job.id" not in s.attributes]
    assert single.attributes["jobline.job.id"] == one.id and single.attributes["jobline.queue"] == "default"
    assert bulk.attributes["messaging.batch.message_count"] == 2
    assert "jobline.queue" not in bulk.attributes  # two queues: it names none
    assert stored_context(sql, one.id)["traceparent"].split("-")[2] == f"{single.context.span_id:016x}"
    assert {stored_context(sql, i)["traceparent"].split("-")[2] for i in ids} == {f"{bulk.context.span_id:016x}"}


async def test_a_stored_context_that_is_not_one_starts_a_new_trace_and_the_job_still_runs(app, spans, sql):
    jobs = [await app.enqueue_async("traced") for _ in range(3)]
    for job, junk in zip(jobs, ['"a string"', "[1, 2]", '{"traceparent": 7}']):
        sql("UPDATE jobline.jobs SET trace_context = %s::jsonb WHERE id = %s", (junk, job.id))
    summary = await app.process_async()
    assert summary.succeeded == 3


async def test_without_a_tracer_provider_nothing_is_traced_or_stored(app, sql):
    unset_provider()  # as in a process that never configured OpenTelemetry (imported here by the test)
    assert not jobline.tracing.enabled()
    job = await app.enqueue_async("traced")
    ids = await app.enqueue_many_async([{"function": "traced"}] * 2)
    summary = await app.process_async()
    assert summary.succeeded == 3
    assert sql("SELECT count(*) FROM jobline.jobs WHERE trace_context IS NOT NULL") == [(0,)]
    assert sorted([job.id, *ids]) == [r[0] for r in sql("SELECT id FROM jobline.jobs ORDER BY id")]


@pytest.fixture
def uninstruments():
    """Undo instrument() for the other tests of this process. psycopg's connect methods are put back
    by hand: the instrumentation's uninstrument() leaves
    psycopg.Connection.connect bound to psycopg.Connection, so the subclasses jobline's handler
    connections use (runtime/connections.py) would connect as plain psycopg.Connection after it."""
    saved = [(owner, owner.__dict__["connect"]) for owner in (psycopg.Connection, psycopg.AsyncConnection)]
    plain = psycopg.connect
    yield
    HTTPXClientInstrumentor().uninstrument()
    PsycopgInstrumentor().uninstrument()
    for owner, method in saved:
        setattr(owner, "connect", method)
    psycopg.connect = plain


async def test_instrument_puts_a_handlers_queries_beneath_its_attempt(app, spans, uninstruments):
    seen = []

    @app.function("reads")
    def reads(payload, ctx):
        with ctx.connect() as conn:
            seen.append(type(conn).__name__)  # still jobline's, which frees its slot on close
            conn.execute("SELECT 1").fetchone()

    jobline.tracing.instrument()
    await app.enqueue_async("reads")
    await app.process_async()
    assert seen == ["HandlerConnection"]
    [run] = named(spans, "jobline.run reads")
    beneath = [s for s in spans.get_finished_spans() if s.parent is not None and s.parent.span_id == run.context.span_id]
    assert [s.attributes.get("db.statement", s.attributes.get("db.query.text")) for s in beneath] == ["SELECT 1"]
