"""What every dashboard page shares: templates, the session cookie, CSRF, security headers.

Pages are Jinja2 templates with autoescaping on, so every stored field (a payload, an error, a
function name) is text, never markup. The only script is static/dashboard.js, a file of ours
served from this package; the Content-Security-Policy allows nothing else (no inline script or
style, no other origin, no framing).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import re
import secrets
from collections.abc import Mapping
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlencode

import jinja2
from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from ..auth import Principal
from ..job import MAX_ID
from ..operations import Operations, Session
from .charts import bars
from .describe import describe

SESSION_COOKIE = "jobline_session"
SIGN_IN_COOKIE = "jobline_sign_in"   # the sign-in form's own CSRF token (double submit)
MAX_FORM_BYTES = 64 * 1024

CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
PAGE_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    # same-origin, not no-referrer: under no-referrer a browser sends `Origin: null` with its form
    # posts, and the CSRF check wants to see our own origin there.
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
}

_LIVE = re.compile(r"<!--live:([a-z0-9-]+)-->(.*?)<!--/live-->", re.S)


def id_in(text: str | None) -> int | None:
    """The id (1 to MAX_ID) that ``text`` spells in ASCII digits, else None (str.isdigit alone
    also takes '²', which int() then refuses)."""
    if not text or not (text.isascii() and text.isdigit()):
        return None
    value = int(text)
    return value if 1 <= value <= MAX_ID else None


def _static_version() -> str:
    folder = resources.files(__package__).joinpath("static")
    digest = hashlib.sha256()
    for name in sorted(e.name for e in folder.iterdir() if e.is_file()):
        digest.update(folder.joinpath(name).read_bytes())
    return digest.hexdigest()[:12]


def _when(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    return value.astimezone(dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def _ago(value: Any, now: dt.datetime | None = None) -> str:
    if value is None:
        return ""
    seconds = ((now or dt.datetime.now(dt.timezone.utc)) - value).total_seconds()
    return duration(abs(seconds)) + (" ago" if seconds >= 0 else " from now")


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    whole = round(seconds)  # once, so 119.6 s is "2 min", not "1 min 60 s"
    if whole < 60:
        return f"{whole} s"
    if whole < 3600:
        return _two_units(whole // 60, "min", whole % 60, "s")
    if whole < 86400:
        return _two_units(whole // 3600, "h", whole % 3600 // 60, "min")
    return _two_units(whole // 86400, "d", whole % 86400 // 3600, "h")


def _two_units(first: int, unit: str, rest: int, rest_unit: str) -> str:
    """"10 min 5 s", and "10 min" when the rest is nothing (a window of 600 s)."""
    return f"{first} {unit}" + (f" {rest} {rest_unit}" if rest else "")


def _pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=str)


def _percent(rate: float | None) -> str:
    return "—" if rate is None else f"{rate * 100:.1f} %"


ENV = jinja2.Environment(loader=jinja2.PackageLoader("jobline.dashboard", "templates"), autoescape=True,
                         trim_blocks=True, lstrip_blocks=True, undefined=jinja2.StrictUndefined)
ENV.filters.update(when=_when, ago=_ago, duration=duration, pretty=_pretty, percent=_percent, describe=describe)
ENV.globals.update(bars=bars, STATIC_VERSION=_static_version())


def state(request: Request):
    return request.app.state.jobline


def ops(request: Request) -> Operations:
    return state(request).ops


def read_only(request: Request) -> bool:
    return state(request).settings.dashboard_read_only


def secure(request: Request) -> bool:
    return request.url.scheme == "https"


async def current_session(request: Request) -> Session | None:
    return await ops(request).sessions.get(request.cookies.get(SESSION_COOKIE))


def render(request: Request, template: str, context: Mapping[str, Any], *, status: int = 200,
           session: Session | None = None) -> HTMLResponse:
    html = page_html(request, template, context, session)
    return HTMLResponse(html, status_code=status, headers=PAGE_HEADERS)


def page_html(request: Request, template: str, context: Mapping[str, Any], session: Session | None) -> str:
    caller: Principal | None = session.caller if session else None
    return ENV.get_template(template).render(
        request_path=request.url.path, query=request.url.query, session=session, caller=caller,
        read_only=read_only(request), csrf=session.csrf_token if session else "",
        who=_who(caller), live_digest="", **context)


def live_regions(html: str) -> dict[str, str]:
    """The live parts of a rendered page, by id (templates mark them <!--live:ID-->...<!--/live-->)."""
    return {m.group(1): m.group(2) for m in _LIVE.finditer(html)}


def digest(regions: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(regions, sort_keys=True).encode()).hexdigest()[:16]


def with_digest(html: str) -> str:
    """The page with the digest of its live parts in its <meta name="jobline-live">, so the live
    stream can tell at once whether the page is already out of date."""
    return html.replace('<meta name="jobline-live" content="">',
                        f'<meta name="jobline-live" content="{digest(live_regions(html))}">', 1)


def _who(caller: Principal | None) -> str:
    if caller is None:
        return ""
    if caller.is_service:
        return "service" if caller.via != "link" else "service (dev link)"
    return caller.user_id or ""


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


def set_session_cookie(response: Response, request: Request, session_id: str, session: Session) -> None:
    max_age = max(int((session.expires_at - dt.datetime.now(dt.timezone.utc)).total_seconds()), 0)
    response.set_cookie(SESSION_COOKIE, session_id, max_age=max_age, path="/", httponly=True, samesite="strict",
                        secure=secure(request))


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(SESSION_COOKIE, path="/", httponly=True, samesite="strict", secure=secure(request))


def new_sign_in_token() -> str:
    return secrets.token_urlsafe(24)


async def form(request: Request) -> dict[str, list[str]]:
    """The urlencoded body of a form POST (at most MAX_FORM_BYTES; an empty dict otherwise)."""
    if not request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        return {}
    body = await request.body()
    if len(body) > MAX_FORM_BYTES:
        return {}
    try:
        return parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=2000)
    except (UnicodeDecodeError, ValueError):
        return {}


def first(fields: Mapping[str, list[str]], name: str) -> str | None:
    values = fields.get(name)
    return values[0] if values else None


def same_origin(request: Request) -> bool:
    """Whether the browser says this request came from a page of ours (Origin and
    Sec-Fetch-Site, when sent; a browser sends them on every cross-site POST)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:  # not sent (an older browser, a same-origin GET form): the token decides
        return True
    host = request.headers.get("host", "")
    return origin in (f"http://{host}", f"https://{host}")


def csrf_ok(request: Request, session: Session, fields: Mapping[str, list[str]]) -> bool:
    token = first(fields, "csrf") or ""
    return same_origin(request) and hmac.compare_digest(token.encode(), session.csrf_token.encode())


def query_string(params: Mapping[str, Any]) -> str:
    pairs = []
    for key, value in params.items():
        if value is None or value == "" or value == []:
            continue
        for v in value if isinstance(value, list) else [value]:
            pairs.append((key, v))
    return urlencode(pairs)
