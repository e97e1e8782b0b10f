"""Credentials, a real `jobline serve` process and an in-process API server for the client and
remote-worker tests (tests/client/): import the fixtures from here."""

from __future__ import annotations

import dataclasses
import secrets
import socket
import subprocess
import time

import httpx
import jwt
import pytest

import asgi_server
from conftest import start_jobline
from jobline import Client
from jobline.settings import Settings

SERVICE_KEY = secrets.token_urlsafe(32)
JWT_SECRET = secrets.token_urlsafe(32)
AUTH_ENV = {"JOBLINE_SERVICE_KEY": SERVICE_KEY, "JOBLINE_JWT_SECRET": JWT_SECRET}


def user_jwt(sub: str, secret: str = JWT_SECRET, **claims) -> str:
    return jwt.encode({"sub": sub, "aud": "authenticated", "exp": int(time.time()) + 3600, **claims}, secret,
                      algorithm="HS256")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def closed_url() -> str:
    """An address where nothing listens: connections are refused at once."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def auth_settings(db_url) -> Settings:
    return Settings(database_url=db_url, service_key=SERVICE_KEY, jwt_secret=JWT_SECRET)


class Server:
    """`python -m jobline serve` on a fixed free port; stop() and start() again on the same port."""

    def __init__(self, db_url: str, **env):
        self.db_url = db_url
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**AUTH_ENV, "JOBLINE_REMOTE_LEASE_SECONDS": "10", "JOBLINE_LOG_LEVEL": "warning", **env}
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> Server:
        self.process = start_jobline(["serve", "--host", "127.0.0.1", "--port", str(self.port)], self.db_url,
                                     **self.env)
        deadline = time.monotonic() + timeout
        while True:
            if self.process.poll() is not None:
                raise AssertionError(f"jobline serve exited: {self.process.communicate()[0]}")
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError("jobline serve did not answer /healthz in time")
            time.sleep(0.1)

    def stop(self) -> str:
        if self.process is None or self.process.poll() is not None:
            return ""
        self.process.terminate()
        try:
            output = self.process.communicate(timeout=15)[0]
        except subprocess.TimeoutExpired:
            self.process.kill()
            output = self.process.communicate()[0]
        return output


@pytest.fixture
def server(db_url):
    running = Server(db_url).start()
    yield running
    running.stop()


@pytest.fixture
def api_server(auth_settings):
    """Start the API in this process with create_app's ``options``; stopped at the end."""
    started: list[asgi_server.Server] = []
    settings = dataclasses.replace(auth_settings, remote_lease_seconds=10)

    def start(**options) -> asgi_server.Server:
        # The App registers no functions; remote leases are 10 s.
        started.append(asgi_server.Server(settings, **options).start())
        return started[-1]

    yield start
    for running in started:
        running.stop()


@pytest.fixture
async def clients():
    made: list[Client] = []
    yield made
    for client in made:
        await client.close_async()
