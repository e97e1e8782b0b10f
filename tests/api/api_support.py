"""Shared by the HTTP API tests: a real uvicorn server on 127.0.0.1 (in a thread of the test
process, so a test can move its clock), credentials of every kind, and small helpers.

Imported by the test modules of tests/api (not a conftest: tests/conftest.py is imported by name
elsewhere)."""

from __future__ import annotations

import dataclasses
import secrets
import time

import httpx
import jwt
import pytest
import asgi_server
from apps.api import register
from conftest import enqueue  # noqa: F401  (the API tests import it from here)

from jobline.settings import Settings

SERVICE_KEY = "svc_" + secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(48)  # 64 bytes: long enough to sign the HS512 forgeries too
RUNNER_SECRET = "run_" + secrets.token_urlsafe(32)


class Server(asgi_server.Server):
    """The API over an App with the test functions of tests/apps/api.py."""

    def __init__(self, settings: Settings, *, functions=register, **options) -> None:
        options.setdefault("clock", asgi_server.Clock())  # the tests move the limiter's clock
        super().__init__(settings, functions=functions, **options)


def api_settings(settings: Settings) -> Settings:
    return dataclasses.replace(settings, service_key=SERVICE_KEY, jwt_secret=JWT_SECRET, runner_secret=RUNNER_SECRET,
                               remote_lease_seconds=300)


@pytest.fixture
def server(settings):
    running = Server(api_settings(settings)).start()
    yield running
    running.stop()


@pytest.fixture
def client(server):
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


SERVICE = bearer(SERVICE_KEY)


def user_jwt(sub: str | None = "alice", *, secret: str = JWT_SECRET, algorithm: str = "HS256", **claims) -> str:
    """A Supabase-style user JWT (aud authenticated, role authenticated, exp in an hour)."""
    now = int(time.time())
    body = {"aud": "authenticated", "role": "authenticated", "iat": now, "exp": now + 3600, **claims}
    if sub is not None:
        body["sub"] = sub
    body = {k: v for k, v in body.items() if v is not None}
    return jwt.encode(body, secret, algorithm=algorithm)


def as_user(sub: str) -> dict[str, str]:
    return bearer(user_jwt(sub))


def assert_error(response: httpx.Response, status: int, code: str) -> dict:
    """The response is `status` with the error shape and `code`, and holds no traceback."""
    assert response.status_code == status, (response.status_code, response.text)
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == code, body
    assert "Traceback" not in response.text and 'File "' not in response.text
    return body["error"]
