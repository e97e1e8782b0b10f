"""An OpenTelemetry TracerProvider for a test, exporting to memory (tests of jobline/tracing.py).
Import it after ``pytest.importorskip("opentelemetry.sdk.trace")``: the otel packages are optional."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


def unset_provider() -> None:
    # OpenTelemetry sets the global provider once per process; its own tests reset it like this.
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None


@contextlib.contextmanager
def traced() -> Iterator[InMemorySpanExporter]:
    """A TracerProvider for the block, exporting to memory; unset afterwards, so the other tests
    of this process run untraced (the `spans` fixture of tests/conftest.py)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    unset_provider()
    trace.set_tracer_provider(provider)
    try:
        yield exporter
    finally:
        unset_provider()


def named(exporter: InMemorySpanExporter, name: str) -> list:
    return [s for s in exporter.get_finished_spans() if s.name == name]
