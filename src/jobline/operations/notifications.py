"""Notifications: the record of events (a job failed for good, a schedule deactivated itself, a
function keeps failing, a pipeline run finished) and the webhook subscriptions that receive them.

The database raises and delivers events itself (0020_notifications.sql: jobline.record_event,
called from a trigger on jobline.jobs), so every path to a failure notifies, whichever process
took it. Here are what callers do with them:

- A user reads their own events and manages their own subscriptions, which receive their own
  events; the service reads every event (function.failing and events of no user are the
  operators' only) and manages every subscription. A subscription without an owner is the
  operator's, and receives every event.
- The secrets rule (DESIGN section 4): an operator's subscription may use ``{{secret:NAME}}`` in
  its URL and headers, a user's only ``{{owner_secret:NAME}}`` (its deliveries are the user's
  jobs, so that names the user's own secret); a reference to the other party's is refused.

>>> await ops.notifications.subscribe(caller, "https://hooks.example.com/jobline",
...                                   events=["job.failed"])  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from .. import vault
from ..auth import Principal
from ..db.store import Store
from ..egress import Policy, host_as_written
from ..errors import Fail, Forbidden, InvalidInput, NotFound
from ..functions.http import check_headers
from ..job import jsonable
from ..settings import Settings
from . import policy
from .jobs import Page

# The same list as jobline.event_kinds() (tests/db/test_notification_sql.py checks that they agree).
EVENT_KINDS = ("job.failed", "schedule.deactivated", "function.failing", "pipeline.succeeded", "pipeline.failed")
MAX_URL_LENGTH = 2048
MAX_HEADERS = 20
MAX_HEADER_VALUE_LENGTH = 4096
MAX_SUBSCRIPTIONS_PER_USER = 20
MAX_SUBSCRIPTIONS_OF_OPERATOR = 100
# Set by the delivery itself: the event's idempotency key, and its JSON body.
RESERVED_HEADERS = frozenset({"idempotency-key", "content-type", "content-length", "host", "transfer-encoding",
                              "connection"})
_URL_START = re.compile(r"(?i)https?://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def check_kind(kind: Any) -> str:
    if kind not in EVENT_KINDS:
        raise InvalidInput(f"unknown event kind {_clip(kind)}; known: {', '.join(EVENT_KINDS)}")
    return kind


def check_events(events: Sequence[str] | None) -> list[str] | None:
    """None (every kind), or a list of known kinds without repeats."""
    if events is None:
        return None
    if isinstance(events, str) or not isinstance(events, Sequence) or not events:
        raise InvalidInput(f"events must be a non-empty list of event kinds ({', '.join(EVENT_KINDS)}), or left out "
                           "for every kind")
    if len(events) > len(EVENT_KINDS):
        raise InvalidInput(f"events lists {len(events)} kinds; there are only {len(EVENT_KINDS)}")
    checked = [check_kind(kind) for kind in events]
    if len(set(checked)) != len(checked):
        raise InvalidInput("events lists a kind twice")
    return checked


def check_subscription(url: Any, headers: Any, owner: str | None, egress: Policy) -> tuple[str, dict[str, str]]:
    """The URL and headers of a subscription of ``owner`` (None: the operator's), checked:
    InvalidInput names what is wrong, Forbidden a reference to the other party's secret."""
    if not isinstance(url, str) or not url.strip():
        raise InvalidInput("url must be an http:// or https:// URL")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url is longer than {MAX_URL_LENGTH} characters")
    if _CONTROL.search(url):
        raise InvalidInput("url contains a control character (a line break, a tab, NUL...)")
    start = r"\{\{secret:" if owner is None else r"\{\{owner_secret:"
    if not _URL_START.match(url) and not re.match(start, url):
        raise InvalidInput(f"url must be an http:// or https:// URL (or start with a "
                           f"{'{{secret:NAME}}' if owner is None else '{{owner_secret:NAME}}'} reference), "
                           f"got {_clip(url)}")
    if headers is None:
        headers = {}
    if isinstance(headers, Mapping) and len(headers) > MAX_HEADERS:
        raise InvalidInput(f"headers: at most {MAX_HEADERS} headers, got {len(headers)}")
    try:
        headers = check_headers(headers, "headers")
    except Fail as exc:
        raise InvalidInput(exc.reason) from None
    for name, value in headers.items():
        if name.lower() in RESERVED_HEADERS:
            raise InvalidInput(f"headers: {name} is set by the delivery itself and cannot be given")
        if len(value) > MAX_HEADER_VALUE_LENGTH:
            raise InvalidInput(f"headers: the value of {name} is longer than {MAX_HEADER_VALUE_LENGTH} characters")
    operator_names, owner_names = vault.split(vault.references([url, headers]))
    if owner is None and owner_names:
        raise InvalidInput("the operator's subscription has no owner, so {{owner_secret:...}} cannot be filled in: "
                           "use {{secret:NAME}}, the operator's secret")
    if owner is not None and (operator_names or "{{secret:" in url or any("{{secret:" in v for v in headers.values())):
        raise Forbidden("a user's subscription may use only its owner's secrets, {{owner_secret:NAME}}; "
                        "{{secret:NAME}} names an operator's secret")
    if host_as_written(url):  # else the host is a secret's, checked when the delivery fills it in
        egress.check_url(url)  # DestinationBlocked (InvalidInput): a scheme, credentials or address it refuses
    return url, headers


def public_subscription(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "owner": row["owner"], "url": row["url"], "events": row["events"],
            "headers": row["headers"], "created_at": jsonable(row["created_at"])}


def public_notification(row: Mapping[str, Any]) -> dict[str, Any]:
    return {"id": row["id"], "kind": row["kind"], "owner": row["owner"], "subject": row["subject"],
            "data": row["data"], "created_at": jsonable(row["created_at"])}


class Notifications:
    def __init__(self, store: Store, settings: Settings):
        self.store = store
        self.settings = settings

    async def list(self, caller: Principal, *, kind: str | None = None, since: dt.datetime | None = None,
                   owner: str | None = None, before_id: int | None = None, limit: int = 50) -> Page:
        """Events newest first (a user's: their own; the service's: everyone's, or ``owner``'s),
        of ``kind`` and created at or after ``since`` when given, one page at a time."""
        if kind is not None:
            check_kind(kind)
        if since is not None and since.tzinfo is None:
            since = since.replace(tzinfo=dt.timezone.utc)
        owner, visible = policy.listing_owner(caller, owner)
        if not visible:
            return Page([], None)
        rows = await self.store.notification_list(owner=owner, kind=kind, since=since, before_id=before_id,
                                                  limit=limit + 1)  # one more: is there a next page?
        page = [public_notification(row) for row in rows[:limit]]
        return Page(page, page[-1]["id"] if len(rows) > limit else None)

    async def subscribe(self, caller: Principal, url: str, *, events: Sequence[str] | None = None,
                        headers: Mapping[str, str] | None = None, owner: str | None = None) -> dict[str, Any]:
        """Add a webhook subscription: each event (of ``events``; None: every kind) is POSTed to
        ``url`` with ``headers`` by a durable ``http`` job. A user's is theirs and receives their
        own events; the service's without ``owner`` is the operator's and receives every event."""
        owner = policy.owner_of_new(caller, owner, "subscription")
        events = check_events(events)
        url, headers = check_subscription(url, headers, owner, Policy.from_settings(self.settings))
        limit = MAX_SUBSCRIPTIONS_OF_OPERATOR if owner is None else MAX_SUBSCRIPTIONS_PER_USER
        row = await self.store.subscription_insert(owner=owner, url=url, events=events,
                                                   headers_json=json.dumps(headers), max_per_owner=limit)
        if row is None:
            whose = "the operator has" if owner is None else "you have" if not caller.is_service else f"{owner!r} has"
            raise InvalidInput(f"{whose} {limit} subscriptions already, the most allowed: remove one first")
        return public_subscription(row)

    async def subscriptions(self, caller: Principal) -> list[dict[str, Any]]:
        """A user's own subscriptions; for the service, everyone's (the operator's have no owner)."""
        rows = await self.store.subscription_list(owner=policy.scope(caller), every_owner=caller.is_service)
        return [public_subscription(row) for row in rows]

    async def unsubscribe(self, caller: Principal, subscription_id: int) -> dict[str, Any]:
        """Remove a subscription (a user: one of their own; another's answers as one that does
        not exist). Deliveries already queued still run."""
        row = await self.store.subscription_delete(subscription_id, owner=policy.scope(caller),
                                                   every_owner=caller.is_service)
        if row is None:
            raise NotFound(f"no subscription with id {subscription_id}")
        return public_subscription(row)


def _clip(value: Any, limit: int = 100) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
