-- 0017_trace_context: a job carries the trace context of the span that enqueued it, so the
-- worker's attempt span joins the enqueuer's trace (jobline/tracing.py).
--
-- NULL unless the enqueuing process traces (has an OpenTelemetry TracerProvider): the W3C trace
-- context as a JSON object, {"traceparent": ..., "tracestate": ...}, at most 1 KiB (tracing.py). A nullable column without a default: adding it rewrites nothing, and a NULL
-- costs a row no space beyond its null bitmap. jobline.enqueue() (SQL callers, dependencies,
-- unique keys) leaves it NULL.
ALTER TABLE jobline.jobs ADD COLUMN trace_context jsonb;
