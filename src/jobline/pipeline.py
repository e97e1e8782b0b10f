"""Pipelines as declared in code: steps, their validation and their stored form (pure, no I/O).

A pipeline is a named graph of steps. Each step names a function (a Python handler, an http
function, ``sql``, ``http`` or a remote task type) and the steps it runs ``after``; steps with no
``after`` start at once, several steps after one fan out, one step after several fans in.

>>> from jobline import Step
>>> app.pipeline("publish-content", steps=[
...     Step("generate", function="generate-post"),
...     Step("post", function="post-to-platform", after=["generate"]),
...     Step("schedule", function="schedule-next", after=["post"], delay=60),
... ])  # doctest: +SKIP

The stored form (``jobline.pipelines.steps``, migration 0021) lists the steps so that each comes
after those it runs after, with queue, priority and max_attempts resolved.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .errors import InvalidInput
from .job import (MAX_ATTEMPTS_RANGE, MAX_NAME_LENGTH, MAX_QUEUE_LENGTH, PRIORITY_RANGE, check_int, check_name,
                  encode_payload)

MAX_STEPS = 100
MAX_AFTER = 50
MAX_STEP_DELAY = 30 * 86400.0
RUN_STATUSES = ("running", "succeeded", "failed", "cancelled")


@dataclasses.dataclass(frozen=True)
class Step:
    """One step of a pipeline. ``delay`` is in seconds from the step's release (the moment
    every step it runs after has succeeded; for a first step, the run's start). ``queue``,
    ``priority`` and ``max_attempts`` default to the function's registration (or to
    default, 0 and 3 for a function this App does not know). ``payload`` is merged over the
    run's payload (the step's keys win); a step of the built-in ``sql`` or ``http`` gets only
    its own payload."""

    name: str
    function: str
    after: Sequence[str] = ()
    delay: float = 0
    queue: str | None = None
    priority: int | None = None
    max_attempts: int | None = None
    payload: Mapping[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class PipelineSpec:
    """A validated pipeline: its name and its steps in an order where each comes after the
    steps it runs after."""

    name: str
    steps: tuple[Step, ...]

    def stored(self, defaults: Callable[[str], Mapping[str, Any]]) -> list[dict[str, Any]]:
        """The steps as jobline.pipelines stores them; ``defaults(function)`` gives the queue,
        priority and max_attempts of a function (the registry's, when it knows it)."""
        out = []
        for step in self.steps:
            known = defaults(step.function)
            row: dict[str, Any] = {
                "name": step.name, "function": step.function, "after": list(step.after),
                "queue": step.queue if step.queue is not None else known.get("queue", "default"),
                "priority": step.priority if step.priority is not None else known.get("priority", 0),
                "max_attempts": step.max_attempts if step.max_attempts is not None else known.get("max_attempts", 3),
            }
            if step.delay:
                row["delay"] = step.delay
            if step.payload:
                row["payload"] = dict(step.payload)
            out.append(row)
        return out

    def stored_json(self, defaults: Callable[[str], Mapping[str, Any]]) -> str:
        return json.dumps(self.stored(defaults), separators=(",", ":"))


def pipeline_spec(name: Any, steps: Any) -> PipelineSpec:
    """Validate a declaration; InvalidInput names what is wrong (a duplicate step, an ``after``
    naming no step, a cycle, a bad option). Steps may be Step objects or mappings of its fields."""
    name = check_name(name, "pipeline name", MAX_NAME_LENGTH)
    if isinstance(steps, (str, bytes, Mapping)) or not isinstance(steps, Sequence):
        raise InvalidInput(f"pipeline {name!r}: steps must be a list of Step objects")
    if not 1 <= len(steps) <= MAX_STEPS:
        raise InvalidInput(f"pipeline {name!r}: needs 1 to {MAX_STEPS} steps, got {len(steps)}")
    checked: dict[str, Step] = {}
    for index, step in enumerate(steps):
        step = _check_step(name, index, step)
        if step.name in checked:
            raise InvalidInput(f"pipeline {name!r}: two steps are named {step.name!r}; step names must be unique")
        checked[step.name] = step
    for step in checked.values():
        for dep in step.after:
            if dep not in checked:
                raise InvalidInput(f"pipeline {name!r}: step {step.name!r} runs after {dep!r}, which is no step "
                                   f"of it; steps: {', '.join(checked)}")
    return PipelineSpec(name, tuple(_in_order(name, checked)))


def _check_step(pipeline: str, index: int, step: Any) -> Step:
    if isinstance(step, Mapping):
        unknown = set(step) - {f.name for f in dataclasses.fields(Step)}
        if unknown:
            raise InvalidInput(f"pipeline {pipeline!r}: step {index}: unknown field(s) {', '.join(sorted(unknown))}")
        try:
            step = Step(**step)
        except TypeError as exc:
            raise InvalidInput(f"pipeline {pipeline!r}: step {index} needs a name and a function") from exc
    if not isinstance(step, Step):
        raise InvalidInput(f"pipeline {pipeline!r}: step {index} must be a Step, got {type(step).__name__}")
    where = f"pipeline {pipeline!r}: step {index}"
    check_name(step.name, f"{where}: name", MAX_NAME_LENGTH)
    where = f"pipeline {pipeline!r}: step {step.name!r}"
    check_name(step.function, f"{where}: function", MAX_NAME_LENGTH)
    after = step.after
    if isinstance(after, str):
        after = (after,)
    if not isinstance(after, Sequence) or len(after) > MAX_AFTER:
        raise InvalidInput(f"{where}: after must be a list of at most {MAX_AFTER} step names")
    after = tuple(dict.fromkeys(check_name(a, f"{where}: after", MAX_NAME_LENGTH) for a in after))
    if step.name in after:
        raise InvalidInput(f"{where} runs after itself")
    delay = step.delay
    if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not 0 <= delay <= MAX_STEP_DELAY:
        raise InvalidInput(f"{where}: delay must be a number of seconds from 0 to {MAX_STEP_DELAY:g}, got {delay!r}")
    if step.queue is not None:
        check_name(step.queue, f"{where}: queue", MAX_QUEUE_LENGTH)
    if step.priority is not None:
        check_int(step.priority, f"{where}: priority", *PRIORITY_RANGE)
    if step.max_attempts is not None:
        check_int(step.max_attempts, f"{where}: max_attempts", *MAX_ATTEMPTS_RANGE)
    if step.payload is not None:
        try:
            encode_payload(step.payload)
        except InvalidInput as exc:
            raise InvalidInput(f"{where}: {exc}") from None
    # A built-in step gets only its declared payload (never the run's): say now what it lacks.
    needed = {"http": "url", "sql": "command"}.get(step.function)
    if needed is not None and not (isinstance(step.payload, Mapping) and needed in step.payload):
        raise InvalidInput(f"{where}: a step of the built-in {step.function!r} function needs "
                           f"payload={{{needed!r}: ...}} in its declaration (the run's payload never reaches it)")
    return dataclasses.replace(step, after=after, delay=float(delay))


def _in_order(pipeline: str, steps: dict[str, Step]) -> list[Step]:
    """The steps, each after those it runs after, in declaration order otherwise (Kahn's
    algorithm); InvalidInput naming the steps of a cycle."""
    placed: dict[str, Step] = {}
    remaining = dict(steps)
    while remaining:
        ready = [s for s in remaining.values() if all(d in placed for d in s.after)]
        if not ready:
            raise InvalidInput(f"pipeline {pipeline!r}: its steps form a cycle through "
                               f"{', '.join(sorted(remaining))}; a step cannot run after itself, even indirectly")
        for step in ready:
            placed[step.name] = remaining.pop(step.name)
    return list(placed.values())


PIPELINE_FUNCTION = "pipeline"   # the built-in that starts a run (functions/pipeline.py)


def starter_payload(pipeline: Any, payload: Mapping[str, Any] | None) -> dict[str, Any]:
    """The payload of a job of the built-in ``pipeline`` function, which starts a run of
    ``pipeline`` with ``payload``: what a schedule targeting a pipeline enqueues on each tick."""
    check_name(pipeline, "pipeline name", MAX_NAME_LENGTH)
    encode_payload(payload)  # a JSON object, at most 1 MiB
    return {"pipeline": pipeline, "payload": dict(payload or {})}


def check_run_status(value: Any) -> str:
    if value not in RUN_STATUSES:
        raise InvalidInput(f"status must be one of {', '.join(RUN_STATUSES)}, got {value!r}")
    return value


def render_template(value: Any, upstream: Mapping[str, Any]) -> Any:
    """``value`` (an http step's body, as declared) with each ``{{upstream.STEP.PATH}}``
    replaced by that upstream result's field. A string that is one placeholder becomes the
    value itself (an object, a number); inside a longer string the value is written as text
    (JSON for objects). Upstream values are data: the text they bring in is never searched for
    placeholders, ``{{secret:...}}`` included (DESIGN.md section 4). An unknown step or field
    raises InvalidInput.

    >>> render_template({"text": "{{upstream.generate.text}}!"}, {"generate": {"text": "hi"}})
    {'text': 'hi!'}
    """
    if isinstance(value, str):
        return _render_string(value, upstream)
    if isinstance(value, Mapping):
        return {k: render_template(v, upstream) for k, v in value.items()}
    if isinstance(value, list):
        return [render_template(v, upstream) for v in value]
    return value


_OPEN, _CLOSE = "{{upstream.", "}}"


def _render_string(text: str, upstream: Mapping[str, Any]) -> Any:
    if _OPEN not in text:
        return text
    if text.startswith(_OPEN) and text.endswith(_CLOSE) and text.count(_OPEN) == 1:
        return _lookup(text[len(_OPEN):-len(_CLOSE)], upstream)
    out, rest = [], text
    while _OPEN in rest:
        before, _, after = rest.partition(_OPEN)
        path, found, rest = after.partition(_CLOSE)
        if not found:
            # Not quoted: in an http step's body, what follows may be a secret's value.
            raise InvalidInput("a {{upstream. placeholder is not closed with }}")
        value = _lookup(path, upstream)
        out += [before, value if isinstance(value, str) else json.dumps(value)]
    out.append(rest)
    return "".join(out)


def _lookup(path: str, upstream: Mapping[str, Any]) -> Any:
    parts = path.split(".")
    if parts[0] not in upstream:
        raise InvalidInput(f"placeholder {{{{upstream.{path}}}}}: no upstream step named {parts[0]!r}; "
                           f"this step runs after: {', '.join(upstream) or 'none'}")
    value = upstream[parts[0]]
    for part in parts[1:]:
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            raise InvalidInput(f"placeholder {{{{upstream.{path}}}}}: the result of {parts[0]!r} has no {part!r}")
    return value
