"""The HTTP API served in a thread of the test process: uvicorn on 127.0.0.1 with a free port and
the options `jobline serve` gives it (uvicorn_options), over ``create_app`` with any of its
options (so a test can move the limiter's clock, or make the failure limit small). Shared by
tests/api and tests/client."""

from __future__ import annotations

import threading
import time

import uvicorn

from jobline import App
from jobline.api import create_app, uvicorn_options
from jobline.settings import Settings


class Clock:
    """A clock the test moves (the authentication-failure window reads it)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class Server:
    """`create_app` over a fresh App, served by uvicorn in a thread on 127.0.0.1 (a free port)."""

    def __init__(self, settings: Settings, *, functions=lambda app: app, **options) -> None:
        self.app = functions(App(settings=settings))
        self.clock = options.get("clock")  # a Clock the test moves, else real time
        self.asgi = create_app(self.app, **options)
        config = uvicorn.Config(self.asgi, host="127.0.0.1", port=0, **uvicorn_options(settings))
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="api-server", daemon=True)

    def start(self) -> Server:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API server did not start")
            time.sleep(0.01)
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=20)
