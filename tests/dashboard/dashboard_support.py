"""Shared by the dashboard tests: a real `jobline serve` app (uvicorn in a thread, as the API
tests use), and browsers-as-httpx-clients signed in with each kind of credential."""

from __future__ import annotations

import dataclasses
import pathlib
import re
import sys

import httpx
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).parents[1] / "api"))  # the API tests' server and credentials
from api_support import SERVICE_KEY, Server, api_settings, user_jwt  # noqa: F401

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def sign_in(base_url: str, credential: str, *, next_path: str = "/") -> httpx.Client:
    """An httpx client that signed in through the form, as a browser does (cookies kept)."""
    client = httpx.Client(base_url=base_url, timeout=30, headers={"Origin": base_url})
    form = client.get("/sign-in")
    token = re.search(r'name="sign_in_token" value="([^"]+)"', form.text)[1]
    answer = client.post("/sign-in", data={"sign_in_token": token, "credential": credential, "next": next_path})
    assert answer.status_code == 303, answer.text
    return client


def csrf_of(client: httpx.Client, path: str = "/") -> str:
    return CSRF.search(client.get(path).text)[1]


def post(client: httpx.Client, path: str, **fields) -> httpx.Response:
    """A form POST with the session's CSRF token."""
    return client.post(path, data={"csrf": csrf_of(client), **fields})


def dashboard_settings(settings, **changes):
    return dataclasses.replace(api_settings(settings), **changes)


# Fixtures for every dashboard test module (import the ones a module uses): the server of the
# test's App, and a browser signed in as the service, as alice and as bob. A module that needs
# another App defines its own `server`.

@pytest.fixture
def server(settings):
    running = Server(dashboard_settings(settings)).start()
    yield running
    running.stop()


def _signed_in(server, credential: str):
    client = sign_in(server.url, credential)
    yield client
    client.close()


@pytest.fixture
def service(server):
    yield from _signed_in(server, SERVICE_KEY)


@pytest.fixture
def alice(server):
    yield from _signed_in(server, user_jwt("alice"))


@pytest.fixture
def bob(server):
    yield from _signed_in(server, user_jwt("bob"))
