"""The Pipelines screen: the recorded pipelines and their runs, and a run's page with its step
graph (server-rendered SVG, laid out in layers: a step stands one column right of the furthest
step it runs after), each step's status and result, and its history; cancel and retry. A user
sees and steers only their own runs (another's answers as one that does not exist)."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import Response

from ..pipeline import RUN_STATUSES
from . import web
from .views import PAGE_SIZE, Refused, _action, _page
from .web import first, render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

RUN_ACTIONS = {"cancel": "Cancel", "retry": "Retry"}
NOT_FOUND = "No pipeline run with this id is visible to you."

# The graph's geometry, in SVG user units.
NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 170, 46, 60, 22, 12


def layout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Positions for the step graph: each step's column is one more than the furthest of the
    steps it runs after (steps come in an order where those are placed first), rows fill each
    column top down; edges join a step's right side to its dependant's left side.

    >>> layout([{"name": "a", "after": [], "status": "succeeded"}])["width"]
    194
    """
    column: dict[str, int] = {}
    for step in steps:
        column[step["name"]] = 1 + max((column[a] for a in step["after"] if a in column), default=-1)
    rows: dict[int, int] = {}
    nodes = {}
    for step in steps:
        c = column[step["name"]]
        r = rows.get(c, 0)
        rows[c] = r + 1
        nodes[step["name"]] = {"x": PAD + c * (NODE_W + GAP_X), "y": PAD + r * (NODE_H + GAP_Y), "step": step}
    edges = []
    for step in steps:
        to = nodes[step["name"]]
        for name in step["after"]:
            if name in nodes:
                frm = nodes[name]
                x1, y1 = frm["x"] + NODE_W, frm["y"] + NODE_H // 2
                x2, y2 = to["x"], to["y"] + NODE_H // 2
                mid = (x1 + x2) // 2
                edges.append({"d": f"M{x1},{y1} C{mid},{y1} {mid},{y2} {x2},{y2}",
                              "done": frm["step"]["status"] == "succeeded"})
    width = PAD * 2 + (max(column.values(), default=0) + 1) * (NODE_W + GAP_X) - GAP_X
    height = PAD * 2 + max(rows.values(), default=1) * (NODE_H + GAP_Y) - GAP_Y
    return {"nodes": list(nodes.values()), "edges": edges, "width": width, "height": height,
            "node_w": NODE_W, "node_h": NODE_H}


def _run_id(value: str) -> int:
    found = web.id_in(value)
    if found is None:
        raise Refused(404, "Not found", NOT_FOUND)
    return found


@router.get("/pipelines")
async def pipelines(request: Request) -> Response:
    async def build(session):
        params = request.query_params
        status = params.get("status") or None
        pipeline = params.get("pipeline") or None
        if status is not None and status not in RUN_STATUSES:
            raise Refused(422, "Invalid input", f"status must be one of {', '.join(RUN_STATUSES)}")
        before = params.get("before")
        before_id = web.id_in(before)
        ops = web.ops(request).pipelines
        declared = await ops.list(session.caller)
        page = await ops.runs(session.caller, pipeline=pipeline, status=status, before_id=before_id, limit=PAGE_SIZE)
        return "pipelines.html", {"nav": "pipelines", "pipelines": declared, "runs": page.rows,
                                  "next_cursor": page.next_cursor, "status": status, "pipeline": pipeline,
                                  "statuses": RUN_STATUSES}
    return await _page(request, build)


@router.get("/pipelines/runs/{run_id}")
async def pipeline_run(request: Request, run_id: str) -> Response:
    async def build(session):
        run = await web.ops(request).pipelines.get(session.caller, _run_id(run_id))  # PipelineNotFound: 404
        actions = [a for a, allowed in (("cancel", run["status"] == "running"),
                                        ("retry", run["status"] in ("failed", "cancelled"))) if allowed]
        return "pipeline_run.html", {"nav": "pipelines", "run": run, "graph": layout(run["steps"]),
                                     "actions": actions, "done": request.query_params.get("done")}
    return await _page(request, build)


@router.post("/pipelines/runs/{run_id}/{action}")
async def pipeline_run_action(request: Request, run_id: str, action: str) -> Response:
    async def act(session, fields):
        if action not in RUN_ACTIONS:
            raise Refused(404, "Not found", "No such action.")
        target = _run_id(run_id)
        ops = web.ops(request).pipelines
        if action == "cancel" and first(fields, "confirm") != "yes":
            run = await ops.get(session.caller, target)  # 404 for another user's run, as for none
            return render(request, "pipeline_confirm.html", {"run": run, "nav": "pipelines"}, session=session)
        if action == "cancel":
            await ops.cancel(session.caller, target)
        else:
            await ops.retry(session.caller, target)
        log.info("dashboard.pipeline_run_steered", extra={"run_id": target, "action": action})
        return web.redirect(f"/pipelines/runs/{target}?done={action}")
    return await _action(request, act)
