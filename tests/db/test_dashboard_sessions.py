"""operations.sessions and operations.activity on a real database: sessions tied to their
credential, one-time links, and the overview's counts (closed hours cached)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import jwt
import pytest

from jobline.auth import SERVICE, Principal
from jobline.errors import Unauthenticated
from jobline.operations import Operations

KEY = "k" * 40
SECRET = "s" * 40


@pytest.fixture
async def ops(app):
    return Operations(app.store, dataclasses.replace(app.settings, service_key=KEY, jwt_secret=SECRET))


async def test_a_link_signs_in_once_and_not_after_it_expires(ops):
    token = await ops.sessions.create_link(SERVICE)
    session_id, session = await ops.sessions.redeem_link(token)
    assert session.caller.is_service and (await ops.sessions.get(session_id)).caller.via == "link"
    with pytest.raises(Unauthenticated):
        await ops.sessions.redeem_link(token)
    stale = await ops.sessions.create_link(SERVICE, seconds=-1)
    with pytest.raises(Unauthenticated):
        await ops.sessions.redeem_link(stale)


async def test_only_the_service_makes_links(ops):
    with pytest.raises(Exception, match="service"):
        await ops.sessions.create_link(Principal(user_id="alice", via="jwt"))


async def test_a_jwt_session_ends_with_the_token(ops, sql):
    token = jwt.encode({"sub": "alice", "aud": "authenticated", "exp": int(time.time()) + 90}, SECRET)
    session_id, session = await ops.sessions.sign_in(token)
    assert session.caller == Principal("alice", "jwt")
    assert session.expires_at <= dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=91)


async def test_changing_the_service_key_ends_its_sessions(ops, app):
    session_id, _ = await ops.sessions.sign_in(KEY)
    assert await ops.sessions.get(session_id) is not None
    rotated = Operations(app.store, dataclasses.replace(ops.settings, service_key="n" * 40))
    assert await rotated.sessions.get(session_id) is None


async def test_overview_counts_live_and_finished_jobs_and_caches_closed_hours(ops, sql):
    sql("SELECT jobline.enqueue('a', owner => 'alice') FROM generate_series(1, 3)")
    sql("SELECT jobline.enqueue('b', owner => 'bob')")
    sql("UPDATE jobline.jobs SET status = 'failed', finished_at = now() - interval '3 hours' "
        "WHERE id = (SELECT min(id) FROM jobline.jobs)")
    alice = Principal("alice", "jwt")
    first = await ops.activity.overview(alice)
    assert first["by_status"]["pending"] == 2 and first["by_status"]["failed"] == 1
    assert set(first["by_function"]) == {"a"} and first["workers"] is None
    assert first["windows"]["24h"]["failed"] == 1 and first["windows"]["1h"]["failed"] == 0
    # The closed hour is now cached: a change to it is not read again (hours that ended never
    # change, short of retention), while the open hour is.
    sql("UPDATE jobline.jobs SET status = 'succeeded' WHERE status = 'failed'")
    sql("UPDATE jobline.jobs SET status = 'succeeded', finished_at = now() WHERE id = "
        "(SELECT max(id) FROM jobline.jobs WHERE owner = 'alice')")
    again = await ops.activity.overview(alice)
    assert again["windows"]["24h"]["failed"] == 1 and again["windows"]["1h"]["succeeded"] == 1
    service = await ops.activity.overview(SERVICE)
    assert service["by_status"]["pending"] == 2 and service["workers"] == []
    assert service["unserved"] == ["a", "b"]
