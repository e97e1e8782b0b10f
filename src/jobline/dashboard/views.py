"""The dashboard's routes: sign-in, the screens, and the actions, all acting through the
operations layer for the signed-in caller (policy.py applies the owner rule, as for the API).

Every page needs a session (else a redirect to /sign-in); every action is a POST carrying the
session's CSRF token, refused in read-only mode (JOBLINE_DASHBOARD_READ_ONLY). Actions that
cannot be undone (cancel, archive, and every bulk action) first answer with a confirm page; the
script shows the same step in a dialog instead. A job or schedule that is not the caller's
answers exactly as one that does not exist.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ..cron import Cron, zone
from ..errors import Conflict, Forbidden, InvalidInput, JoblineError, JobNotFound, NotFound, ScheduleNotFound
from ..errors import Unauthenticated
from ..job import JobStatus, check_name
from ..operations.policy import public_attempt, public_schedule, public_worker_id
from . import web
from .web import first, render

log = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

STATUSES = [s.value for s in JobStatus]
JOB_ACTIONS = {"retry": "Retry", "cancel": "Cancel", "run-now": "Run now", "archive": "Archive"}
CONFIRMED_ACTIONS = {"cancel", "archive"}        # the rest are harmless to repeat
SCHEDULE_ACTIONS = {"pause": "Pause", "resume": "Resume", "trigger": "Trigger now"}
QUEUE_ACTIONS = {"pause": "Pause", "resume": "Resume"}
PAGE_SIZE = 50
MAX_BULK = 200
NOT_FOUND = {"job": "No job with this id is visible to you.",
             "schedule": "No schedule with this name or id is visible to you."}


class Refused(Exception):
    def __init__(self, status: int, title: str, message: str):
        self.status, self.title, self.message = status, title, message


def _error_page(request: Request, session, status: int, title: str, message: str) -> HTMLResponse:
    return render(request, "error.html", {"title": title, "message": message, "status": status},
                  status=status, session=session)


def _from_error(exc: JoblineError) -> Refused:
    if isinstance(exc, JobNotFound):
        return Refused(404, "Not found", NOT_FOUND["job"])
    if isinstance(exc, ScheduleNotFound):
        return Refused(404, "Not found", NOT_FOUND["schedule"])
    if isinstance(exc, NotFound):
        return Refused(404, "Not found", str(exc))
    if isinstance(exc, Conflict):
        return Refused(409, "Not possible now", str(exc))
    if isinstance(exc, Forbidden):
        return Refused(403, "Not allowed", str(exc))
    if isinstance(exc, InvalidInput):
        return Refused(422, "Invalid input", str(exc))
    log.error("dashboard.failed", extra={"code": exc.code, "error": str(exc)}, exc_info=exc)
    return Refused(503, "Unavailable", "The database is unavailable or refused this request; try again shortly.")


async def _page(request: Request, build) -> Response:
    """A screen: the session (else to sign-in), then ``build(session)`` -> (template, context)."""
    session = await web.current_session(request)
    if session is None:
        return web.redirect("/sign-in?" + web.query_string({"next": _next_of(request)}))
    try:
        template, context = await build(session)
    except Refused as refusal:
        return _error_page(request, session, refusal.status, refusal.title, refusal.message)
    except JoblineError as exc:
        refusal = _from_error(exc)
        return _error_page(request, session, refusal.status, refusal.title, refusal.message)
    html = web.with_digest(web.page_html(request, template, context, session))
    return HTMLResponse(html, headers=web.PAGE_HEADERS)


async def _action(request: Request, act) -> Response:
    """An action: a session, the CSRF token, not read-only; then ``act(session, fields)``."""
    session = await web.current_session(request)
    if session is None:
        return _error_page(request, None, 401, "Signed out", "Your session has ended: sign in again.")
    fields = await web.form(request)
    if not web.csrf_ok(request, session, fields):
        return _error_page(request, session, 403, "Refused", "This form is out of date or did not come from this "
                                                             "dashboard (CSRF check): reload the page and try again.")
    if web.read_only(request):
        return _error_page(request, session, 403, "Read-only", "This dashboard is read-only "
                                                               "(JOBLINE_DASHBOARD_READ_ONLY): it cannot change anything.")
    try:
        return await act(session, fields)
    except Refused as refusal:
        return _error_page(request, session, refusal.status, refusal.title, refusal.message)
    except JoblineError as exc:
        refusal = _from_error(exc)
        return _error_page(request, session, refusal.status, refusal.title, refusal.message)


def _next_of(request: Request) -> str:
    path = request.url.path
    return path + ("?" + request.url.query if request.url.query else "")


def _safe_next(value: str | None) -> str:
    """Only a path of this site (never //host or a scheme), else the overview."""
    if value and value.startswith("/") and not value.startswith("//") and "\\" not in value and len(value) < 2000:
        return value
    return "/"


def _id(value: str | None, what: str = "job") -> int:
    found = web.id_in(value)
    if found is None:
        raise Refused(404, "Not found", NOT_FOUND[what])
    return found


# -- sign-in ----------------------------------------------------------------------------------


def _sign_in_page(request: Request, *, error: str | None = None, status: int = 200) -> Response:
    token = request.cookies.get(web.SIGN_IN_COOKIE) or web.new_sign_in_token()
    response = render(request, "sign_in.html", {"error": error, "sign_in_token": token,
                                                "next": _safe_next(request.query_params.get("next"))},
                      status=status)
    response.set_cookie(web.SIGN_IN_COOKIE, token, max_age=3600, path="/sign-in", httponly=True, samesite="strict",
                        secure=web.secure(request))
    return response


@router.get("/sign-in")
async def sign_in_form(request: Request) -> Response:
    if await web.current_session(request) is not None:
        return web.redirect(_safe_next(request.query_params.get("next")))
    return _sign_in_page(request)


@router.post("/sign-in")
async def sign_in(request: Request) -> Response:
    """Sign in with the service key, a user JWT or an API token; failures count toward the same
    per-address limit as the API's (api/security.py FailureLimiter)."""
    api = web.state(request)
    address = request.client.host if request.client else "unknown"
    fields = await web.form(request)
    expected = request.cookies.get(web.SIGN_IN_COOKIE) or ""
    if not expected or not web.same_origin(request) or not web.hmac.compare_digest(
            (first(fields, "sign_in_token") or "").encode(), expected.encode()):
        return _sign_in_page(request, error="This sign-in form is out of date: try again.", status=403)
    wait = api.limiter.retry_after(address)
    if wait is not None:
        api.metrics.auth_failures.labels(reason="rate_limited").inc()
        return _sign_in_page(request, error=f"Too many failed sign-ins from this address: try again in "
                                            f"{max(1, math.ceil(wait))} s.", status=429)
    token = (first(fields, "credential") or "").strip()
    try:
        if not token or len(token) > 8192:
            raise Unauthenticated("empty")
        session_id, session = await api.ops.sessions.sign_in(token)
    except Unauthenticated:
        api.metrics.auth_failures.labels(reason="unauthenticated").inc()
        if api.limiter.record(address):
            log.warning("auth.rate_limited", extra={"client": address, "failures": api.limiter.limit,
                                                    "window_s": api.limiter.window})
        else:
            log.info("auth.refused", extra={"client": address, "route": "/sign-in"})
        return _sign_in_page(request, error="These credentials were not accepted.", status=401)
    except Forbidden:
        api.metrics.auth_failures.labels(reason="forbidden").inc()
        return _sign_in_page(request, error="This credential is valid but names no user: it cannot sign in.",
                             status=403)
    log.info("dashboard.signed_in", extra={"via": session.caller.via, "client": address})
    response = web.redirect(_safe_next(first(fields, "next")))
    web.set_session_cookie(response, request, session_id, session)
    response.delete_cookie(web.SIGN_IN_COOKIE, path="/sign-in")
    return response


@router.get("/sign-in/link")
async def sign_in_link(request: Request) -> Response:
    """`jobline dev`'s one-time link: a service session, once, within two minutes."""
    try:
        session_id, session = await web.ops(request).sessions.redeem_link(request.query_params.get("token", ""))
    except Unauthenticated as exc:
        return _sign_in_page(request, error=str(exc), status=401)
    response = web.redirect("/")
    web.set_session_cookie(response, request, session_id, session)
    return response


@router.post("/sign-out")
async def sign_out(request: Request) -> Response:
    session = await web.current_session(request)
    fields = await web.form(request)
    if session is not None and web.csrf_ok(request, session, fields):
        await web.ops(request).sessions.sign_out(request.cookies.get(web.SESSION_COOKIE))
    response = web.redirect("/sign-in")
    web.clear_session_cookie(response, request)
    return response


# -- overview ---------------------------------------------------------------------------------


@router.get("/")
async def overview(request: Request) -> Response:
    async def build(session):
        return "overview.html", {"o": await web.ops(request).activity.overview(session.caller), "nav": "overview"}
    return await _page(request, build)


# -- jobs -------------------------------------------------------------------------------------


def _job_filters(request: Request, session) -> dict[str, Any]:
    params = request.query_params
    filters: dict[str, Any] = {"status": [s for s in params.getlist("status") if s in STATUSES]}
    for name in ("function", "queue", "owner", "error"):
        value = (params.get(name) or "").strip()
        filters[name] = value or None
    if not session.caller.is_service:
        filters["owner"] = None  # a user's listing is their own (policy.listing_owner)
    for name in ("from", "to"):
        value = (params.get(name) or "").strip()
        filters[name] = value or None
    filters["archived"] = params.get("archived") == "1"
    return filters


def _moment(value: str | None, what: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        moment = dt.datetime.fromisoformat(value)
    except ValueError:
        raise Refused(422, "Invalid input", f"{what} must be a date and time such as 2026-12-03T09:00") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.timezone.utc)


@router.get("/jobs")
async def jobs(request: Request) -> Response:
    async def build(session):
        filters = _job_filters(request, session)
        for name in ("function", "queue", "owner"):
            if filters[name] is not None:
                try:
                    check_name(filters[name], name)
                except InvalidInput as exc:
                    raise Refused(422, "Invalid input", str(exc)) from None
        before = request.query_params.get("before")
        page = await web.ops(request).jobs.list(
            session.caller, statuses=filters["status"] or None, function=filters["function"],
            queue=filters["queue"], owner=filters["owner"], created_after=_moment(filters["from"], "From"),
            created_before=_moment(filters["to"], "To"), before_id=web.id_in(before),
            include_archived=filters["archived"], limit=PAGE_SIZE,
            error=filters["error"])
        kept = {**{k: v for k, v in filters.items() if k != "archived"},
                "archived": "1" if filters["archived"] else None}
        next_url = None
        if page.next_cursor is not None:
            next_url = "/jobs?" + web.query_string({**kept, "before": page.next_cursor})
        return "jobs.html", {"rows": page.rows, "filters": filters, "statuses": STATUSES, "next_url": next_url,
                             "first_page": before is None, "nav": "jobs",
                             "newest_url": "/jobs?" + web.query_string(kept),
                             "done": request.query_params.get("done")}
    return await _page(request, build)


@router.get("/jobs/{job_id}")
async def job(request: Request, job_id: str) -> Response:
    async def build(session):
        ops = web.ops(request)
        found = await ops.jobs.get(session.caller, _id(job_id))
        attempts = [public_attempt(a, session.caller) for a in await ops.jobs.attempts(session.caller, found.id)]
        up, down = await ops.activity.dependencies(session.caller, found)
        return "job.html", {"job": found, "worker": public_worker_id(found.worker_id), "attempts": attempts,
                            "up": up, "down": down, "timeline": _timeline(found, attempts), "nav": "jobs",
                            "actions": _job_actions(found.status, found.archived_at is not None),
                            "done": request.query_params.get("done"), "now": dt.datetime.now(dt.timezone.utc)}
    return await _page(request, build)


def _job_actions(status: str, archived: bool) -> list[str]:
    actions = []
    if status in ("failed", "cancelled"):
        actions.append("retry")
    if status == "pending":
        actions.append("run-now")
    if status in ("waiting", "pending", "running"):
        actions.append("cancel")
    if status in ("succeeded", "failed", "cancelled") and not archived:
        actions.append("archive")
    return actions


def _timeline(found, attempts: list[dict]) -> list[tuple[Any, str, str]]:
    """(when, what, state class) from the job's own times and its attempts, oldest first."""
    events = [(found.created_at, "created", "waiting" if found.depends_on else "pending")]
    if found.run_at and found.run_at > found.created_at + dt.timedelta(seconds=1):
        events.append((found.run_at, "due", "pending"))
    for a in attempts:
        events.append((dt.datetime.fromisoformat(a["started_at"]), f"attempt {a['attempt']} started", "running"))
        events.append((dt.datetime.fromisoformat(a["finished_at"]), f"attempt {a['attempt']} {a['outcome']}",
                       a["outcome"] if a["outcome"] in STATUSES else "pending" if a["outcome"] == "snoozed" else "failed"))
    if found.status == "running" and found.started_at:
        events.append((found.started_at, f"attempt {found.attempts} running", "running"))
    if found.finished_at and found.status in ("succeeded", "failed", "cancelled"):
        events.append((found.finished_at, found.status, found.status))
    if found.archived_at:
        events.append((found.archived_at, "archived", "cancelled"))
    seen, out = set(), []
    for event in sorted(events, key=lambda e: e[0]):
        if (event[0], event[1]) not in seen:
            seen.add((event[0], event[1]))
            out.append(event)
    return out


@router.post("/jobs/{job_id}/{action}")
async def job_action(request: Request, job_id: str, action: str) -> Response:
    async def act(session, fields):
        if action not in JOB_ACTIONS:
            raise Refused(404, "Not found", "No such action.")
        target = _id(job_id)
        ops = web.ops(request)
        if action in CONFIRMED_ACTIONS and first(fields, "confirm") != "yes":
            found = await ops.jobs.get(session.caller, target)  # 404 for another user's job, as for none
            return render(request, "confirm.html", {
                "title": f"{JOB_ACTIONS[action]} job {found.id}?", "action": f"/jobs/{found.id}/{action}",
                "verb": JOB_ACTIONS[action], "jobs": [found], "ids": [], "bulk_action": None,
                "back": f"/jobs/{found.id}", "nav": "jobs"}, session=session)
        method = {"retry": ops.jobs.retry, "cancel": ops.jobs.cancel, "run-now": ops.jobs.run_now,
                  "archive": ops.jobs.archive}[action]
        await method(session.caller, target)
        log.info("dashboard.job_steered", extra={"job_id": target, "action": action})
        return web.redirect(f"/jobs/{target}?done={action}")
    return await _action(request, act)


@router.post("/jobs")
async def jobs_bulk(request: Request) -> Response:
    """Retry, cancel or archive the selected jobs, after a confirm step."""
    async def act(session, fields):
        action = first(fields, "bulk_action")
        if action not in ("retry", "cancel", "archive"):
            raise Refused(422, "Invalid input", "Choose retry, cancel or archive.")
        ids = sorted({found for found in map(web.id_in, fields.get("id", [])) if found is not None})
        if not ids:
            raise Refused(422, "Nothing selected", "Select the jobs to act on first.")
        if len(ids) > MAX_BULK:
            raise Refused(422, "Too many", f"At most {MAX_BULK} jobs at once.")
        ops = web.ops(request)
        back = _safe_next(first(fields, "back") or "/jobs")
        if first(fields, "confirm") != "yes":
            return render(request, "confirm.html", {
                "title": f"{JOB_ACTIONS[action]} {len(ids)} job{'s' if len(ids) != 1 else ''}?", "action": "/jobs",
                "verb": JOB_ACTIONS[action], "jobs": [], "ids": ids, "bulk_action": action, "back": back,
                "nav": "jobs"}, session=session)
        method = {"retry": ops.jobs.retry, "cancel": ops.jobs.cancel, "archive": ops.jobs.archive}[action]
        done = skipped = 0
        for job_id in ids:
            try:
                await method(session.caller, job_id)
                done += 1
            except (Conflict, JobNotFound):  # not in a state for it, or not the caller's: skipped alike
                skipped += 1
        log.info("dashboard.jobs_steered", extra={"action": action, "done": done, "skipped": skipped})
        separator = "&" if "?" in back else "?"
        return web.redirect(f"{back}{separator}done={action}:{done}:{skipped}")
    return await _action(request, act)


# -- schedules --------------------------------------------------------------------------------


@router.get("/schedules")
async def schedules(request: Request) -> Response:
    async def build(session):
        now = dt.datetime.now(dt.timezone.utc)
        rows = [public_schedule(s, session.caller, last, now)
                for s, last in await web.ops(request).schedules.list(session.caller)]
        return "schedules.html", {"rows": rows, "nav": "schedules", "done": request.query_params.get("done")}
    return await _page(request, build)


@router.get("/schedules/{schedule_id}")
async def schedule(request: Request, schedule_id: str) -> Response:
    async def build(session):
        ops = web.ops(request)
        found = await ops.schedules.get(session.caller, _id(schedule_id, "schedule"))
        before = request.query_params.get("before")
        runs = await ops.schedules.runs(session.caller, found.id, limit=PAGE_SIZE,
                                        before_id=web.id_in(before))
        now = dt.datetime.now(dt.timezone.utc)
        return "schedule.html", {"s": public_schedule(found, session.caller, None, now), "runs": runs.rows,
                                 "next_cursor": runs.next_cursor, "upcoming": _upcoming(found, now),
                                 "nav": "schedules", "done": request.query_params.get("done")}
    return await _page(request, build)


def _upcoming(found, now: dt.datetime, count: int = 5) -> list[dt.datetime]:
    """The next ticks, in the schedule's own zone."""
    try:
        cron = Cron.parse(found.expression, found.timezone)
    except InvalidInput:
        return []
    if cron.restart or not found.active:
        return []
    ticks, moment = [], now
    local = zone(found.timezone)
    for _ in range(count):
        moment = cron.next_after(moment)
        ticks.append(moment.astimezone(local))
    return ticks


@router.post("/schedules/{schedule_id}/{action}")
async def schedule_action(request: Request, schedule_id: str, action: str) -> Response:
    async def act(session, fields):
        if action not in SCHEDULE_ACTIONS:
            raise Refused(404, "Not found", "No such action.")
        target = _id(schedule_id, "schedule")
        ops = web.ops(request)
        if action == "trigger":
            await ops.schedules.trigger(session.caller, target)
        else:
            await getattr(ops.schedules, action)(session.caller, target)
        log.info("dashboard.schedule_steered", extra={"schedule_id": target, "action": action})
        back = "/schedules" if first(fields, "back") == "list" else f"/schedules/{target}"
        return web.redirect(f"{back}?done={action}")
    return await _action(request, act)


# -- HTTP calls, workers ----------------------------------------------------------------------


@router.get("/http")
async def http_calls(request: Request) -> Response:
    async def build(session):
        before = request.query_params.get("before")
        page = await web.ops(request).activity.http_calls(
            session.caller, before_id=web.id_in(before),
            limit=PAGE_SIZE)
        return "http.html", {"rows": page.rows, "next_cursor": page.next_cursor, "nav": "http"}
    return await _page(request, build)


@router.get("/queues")
async def queues(request: Request) -> Response:
    async def build(session):
        rows = await web.ops(request).queues.list(session.caller)
        steer = session.caller.is_service and not web.read_only(request)  # pausing is the service's
        return "queues.html", {"rows": rows, "nav": "queues", "steer": steer, "done": request.query_params.get("done")}
    return await _page(request, build)


@router.post("/queues/{action}")
async def queue_action(request: Request, action: str) -> Response:
    """Pause or resume the queue named in the form (a name may hold any printable character)."""
    async def act(session, fields):
        if action not in QUEUE_ACTIONS:
            raise Refused(404, "Not found", "No such action.")
        name = first(fields, "queue") or ""
        await getattr(web.ops(request).queues, action)(session.caller, name)
        log.info("dashboard.queue_steered", extra={"queue": name, "action": action})
        return web.redirect(f"/queues?done={action}")
    return await _action(request, act)


@router.get("/workers")
async def workers(request: Request) -> Response:
    async def build(session):
        rows = await web.ops(request).activity.workers(session.caller) if session.caller.is_service else None
        return "workers.html", {"rows": rows, "nav": "workers", "now": dt.datetime.now(dt.timezone.utc)}
    return await _page(request, build)
