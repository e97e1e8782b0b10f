"""Tracing: OpenTelemetry spans for enqueues and attempts, when the application traces.

jobline never imports OpenTelemetry itself. It traces when the application has set a
TracerProvider, and an application that has done so has imported ``opentelemetry.trace``: until
then each hook here costs a dictionary lookup, nothing is serialised, and jobs are stored with
no trace context (NULL). With a provider:

- an enqueue opens "jobline.enqueue <function>" (kind PRODUCER) and stores its W3C trace
  context (``traceparent``, ``tracestate``; never baggage; at most 1 KiB) in ``trace_context``;
- a worker runs each attempt in "jobline.run <function>" (kind CONSUMER), a child of that
  enqueue span, so the handler's own spans (psycopg, httpx: see :func:`instrument`) sit beneath.

Span attributes are ids and names only: never payloads, results, owners or secrets.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from .errors import ConfigError

_INSTRUMENTATION = "jobline"
_cached: tuple[Any, Any] = (None, None)   # (the provider last seen, its tracer or None)


def _tracer() -> Any:
    """The tracer to use, or None when the process has no TracerProvider (the default proxy)."""
    global _cached
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None  # nobody imported OpenTelemetry, so nobody set a provider
    provider = trace.get_tracer_provider()
    seen, tracer = _cached
    if provider is not seen:
        # Until set_tracer_provider, the global is a proxy whose spans record nothing: skip the
        # carrier too, rather than store one that names no real trace.
        off = isinstance(provider, (trace.ProxyTracerProvider, trace.NoOpTracerProvider))
        tracer = None if off else provider.get_tracer(_INSTRUMENTATION)
        _cached = (provider, tracer)
    return tracer


def enabled() -> bool:
    return _tracer() is not None


class _Off:
    """What the hooks return when not tracing: a context manager that does nothing."""

    context: str | None = None

    def __enter__(self) -> _Off:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def sent(self, ids: Sequence[int]) -> None:
        pass

    def finished(self, outcome: Any) -> None:
        pass


OFF = _Off()


class _Span:
    """A current span, entered and left with ``with``; ``tracer.start_as_current_span`` records an
    exception that escapes it (a lost lease's cancellation) and ends the span."""

    def __init__(self, tracer: Any, name: str, kind: Any, attributes: dict, parent: Any = None):
        self._current = tracer.start_as_current_span(name, context=parent, kind=kind, attributes=attributes)
        self.span: Any = None
        self.context: str | None = None

    def __enter__(self) -> _Span:
        self.span = self._current.__enter__()
        return self

    def __exit__(self, *exc: Any) -> Any:
        return self._current.__exit__(*exc)


class _Enqueue(_Span):
    def __enter__(self) -> _Enqueue:
        super().__enter__()
        carrier: dict[str, str] = {}
        _propagator().inject(carrier)  # the current context: this span's
        context = json.dumps(carrier) if carrier else None
        self.context = context if context is not None and len(context) <= MAX_CONTEXT_BYTES else None
        return self

    def sent(self, ids: Sequence[int]) -> None:
        if len(ids) == 1:
            self.span.set_attribute("jobline.job.id", ids[0])
            self.span.set_attribute("messaging.message.id", str(ids[0]))
        else:
            self.span.set_attribute("messaging.batch.message_count", len(ids))


class _Attempt(_Span):
    def finished(self, outcome: Any) -> None:
        self.span.set_attribute("jobline.outcome", outcome.outcome)
        self.span.set_attribute("jobline.job.status", outcome.status)  # pending: it will be retried


# A stored context is W3C trace context only (traceparent, tracestate): never baggage, which a
# caller of an instrumented API could fill and the http function's instrumented client would
# then send on to any URL. Bounded, so that a caller's tracestate cannot grow every job.
MAX_CONTEXT_BYTES = 1024


def _propagator() -> Any:
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator()


def enqueue(functions: Sequence[str], queues: Sequence[str]) -> _Off | _Enqueue:
    """The span of one enqueue (or one bulk enqueue) of jobs of ``functions`` into ``queues``; its
    ``context`` is the carrier to store in the jobs (None when not tracing), and ``sent(ids)``
    notes what was stored."""
    tracer = _tracer()
    if tracer is None:
        return OFF
    from opentelemetry.trace import SpanKind

    names, places = sorted(set(functions)), sorted(set(queues))
    attributes: dict[str, Any] = {"messaging.system": "jobline", "messaging.operation.type": "send"}
    if len(names) == 1:
        attributes["jobline.function"] = names[0]
    if len(places) == 1:
        attributes["jobline.queue"] = attributes["messaging.destination.name"] = places[0]
    name = f"jobline.enqueue {names[0]}" if len(names) == 1 else "jobline.enqueue"
    return _Enqueue(tracer, name, SpanKind.PRODUCER, attributes)


def attempt(job: tuple) -> _Off | _Attempt:
    """The span of one attempt of a claimed job (the executor's tuple), a child of the span that
    enqueued it when the job carries a trace context."""
    tracer = _tracer()
    if tracer is None:
        return OFF
    from opentelemetry.trace import SpanKind

    job_id, function, _, attempt_number, max_attempts, queue = job[:6]
    carrier = job[7]
    # The column is any jsonb (SQL may write it): anything but an object of strings starts a new trace.
    parent = None
    if isinstance(carrier, dict) and all(isinstance(v, str) for v in carrier.values()):
        parent = _propagator().extract(carrier)
    attributes = {"messaging.system": "jobline", "messaging.operation.type": "process",
                  "messaging.destination.name": queue, "messaging.message.id": str(job_id),
                  "jobline.job.id": job_id, "jobline.function": function, "jobline.queue": queue,
                  "jobline.attempt": attempt_number, "jobline.max_attempts": max_attempts}
    return _Attempt(tracer, f"jobline.run {function}", SpanKind.CONSUMER, attributes, parent)


def failed(exc: BaseException, description: str) -> None:
    """Mark the current attempt's span as failed (it will be retried, or has failed for good),
    with the exception recorded."""
    if _tracer() is None:
        return
    from opentelemetry.trace import Status, StatusCode, get_current_span

    span = get_current_span()
    span.record_exception(exc)
    span.set_status(Status(StatusCode.ERROR, description))


def instrument() -> None:
    """Trace psycopg's and httpx's calls too (``pip install 'jobline[otel]'``), so a handler's
    queries and HTTP requests appear beneath its attempt span. jobline's own queries are traced as
    well, as spans of their own: that is a span per claim and per completion batch.

    >>> from opentelemetry import trace                                # doctest: +SKIP
    >>> from opentelemetry.sdk.trace import TracerProvider             # doctest: +SKIP
    >>> trace.set_tracer_provider(TracerProvider())                    # doctest: +SKIP
    >>> jobline.tracing.instrument()                                   # doctest: +SKIP
    """
    try:
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.instrumentation.psycopg import PsycopgInstrumentor
    except ImportError as exc:
        raise ConfigError("jobline.tracing.instrument() needs OpenTelemetry's instrumentations: "
                          "pip install 'jobline[otel]'") from exc
    for instrumentor in (PsycopgInstrumentor(), HTTPXClientInstrumentor()):
        if not instrumentor.is_instrumented_by_opentelemetry:
            instrumentor.instrument()
