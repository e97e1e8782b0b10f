"""Real local HTTP receivers for tests of outbound calls, and a guard on the test's own network use.

``Receiver`` is a ThreadingHTTPServer on 127.0.0.1 (or ``host``, such as ``::1``; a free port)
that answers with scripted replies (one per request, in order, then its default, or computed
from the request), records every request and counts every TCP connection it accepts, so a test
can assert that a refused call never reached it.

``network_guard()`` records every ``socket.connect`` and ``socket.getaddrinfo`` this process
makes (through Python's audit hooks, so nothing is patched), and refuses, while active, any
connection to a non-loopback address and any lookup of a name other than ``localhost``: tests
may only talk to servers they start on 127.0.0.1 / ::1, and the egress policy must refuse
everything else before a connection is even attempted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import ipaddress
import json
import os
import socket
import ssl
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from psycopg.conninfo import conninfo_to_dict


@dataclasses.dataclass
class Reply:
    status: int = 200
    body: Any = b""                 # bytes, str, or anything else (sent as JSON)
    headers: dict[str, str] = dataclasses.field(default_factory=dict)
    hang: bool = False              # accept, read the request, never answer (until stop())
    delay: float = 0.0
    disconnect: bool = False        # read the request, then close the connection without a word


@dataclasses.dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]         # names in lower case
    body: bytes
    at: float                       # time.monotonic()
    raw_headers: list[tuple[str, str]] = dataclasses.field(default_factory=list)  # as sent, in order

    def json(self) -> Any:
        return json.loads(self.body)


class Receiver:
    def __init__(self, *replies: Reply, default: Reply | None = None,
                 respond: Callable[[Seen], Reply] | None = None, tls: tuple[str, str] | None = None,
                 host: str = "127.0.0.1"):
        self.replies = list(replies)
        self.default = default or Reply(200, {"ok": True})
        self.respond = respond
        self.requests: list[Seen] = []
        self.connections = 0
        self._released = threading.Event()
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                seen = Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body,
                            time.monotonic(), list(self.headers.items()))
                reply = receiver._reply_for(seen)
                if reply.hang:
                    receiver._released.wait(60)
                    self.close_connection = True
                    return
                if reply.delay:
                    time.sleep(reply.delay)
                if reply.disconnect:
                    self.close_connection = True
                    return
                payload = reply.body
                headers = dict(reply.headers)
                if not isinstance(payload, (bytes, str)):
                    payload = json.dumps(payload)
                    headers.setdefault("Content-Type", "application/json")
                if isinstance(payload, str):
                    payload = payload.encode()
                    headers.setdefault("Content-Type", "text/plain; charset=utf-8")
                self.send_response(reply.status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    with contextlib.suppress(OSError):  # a client that stopped reading (size cap)
                        self.wfile.write(payload)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _any

            def log_message(self, *args) -> None:
                pass

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET
            daemon_threads = True
            block_on_close = False

            def verify_request(self, request, client_address) -> bool:
                with receiver._lock:
                    receiver.connections += 1
                return True

            def handle_error(self, request, client_address) -> None:
                pass  # clients that time out or stop reading are expected here

        self._server = Server((host, 0), Handler)
        self.host = host
        self.port = self._server.server_address[1]
        self.scheme = "http"
        if tls is not None:  # (certificate chain file, key file): serve HTTPS
            context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)

    def _reply_for(self, seen: Seen) -> Reply:
        with self._lock:
            self.requests.append(seen)
            if self.respond is not None:
                return self.respond(seen)
            return self.replies.pop(0) if self.replies else self.default

    def url(self, path: str = "/", host: str | None = None) -> str:
        host = host or self.host
        return f"{self.scheme}://{f'[{host}]' if ':' in host else host}:{self.port}{path}"

    def start(self) -> Receiver:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> Receiver:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


# -- the guard ---------------------------------------------------------------------------------

_recorders: list[list[tuple]] = []


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.split("%", 1)[0])
        return True
    except ValueError:
        return False


def _audit(event: str, args: tuple) -> None:
    if not _recorders:
        return
    if event == "socket.connect":
        sock, address = args
        if sock.family not in (socket.AF_INET, socket.AF_INET6):
            return
        for recorder in _recorders:
            recorder.append(("connect", address[0], address[1]))
        if not _is_loopback(address[0]):
            raise PermissionError(f"test network guard: connection to {address[0]} refused")
    elif event == "socket.getaddrinfo":
        host = args[0].decode() if isinstance(args[0], bytes) else str(args[0])
        for recorder in _recorders:
            recorder.append(("resolve", host))
        if host not in _ALLOWED_NAMES and not _is_literal(host):
            raise PermissionError(f"test network guard: lookup of {host!r} refused")


def _allowed_names() -> frozenset[str]:
    names = {"localhost"}
    if os.environ.get("JOBLINE_TEST_DATABASE_URL"):  # the test database may be named, not numbered
        names.update(conninfo_to_dict(os.environ["JOBLINE_TEST_DATABASE_URL"]).get("host", "").split(","))
    return frozenset(names)


_ALLOWED_NAMES = _allowed_names()
sys.addaudithook(_audit)


@contextlib.contextmanager
def network_guard() -> Iterator[list[tuple]]:
    """Record (and police) this process's connections and lookups while active."""
    events: list[tuple] = []
    _recorders.append(events)
    try:
        yield events
    finally:
        _recorders.remove(events)


def connections_to(events: list[tuple], host: str) -> list[tuple]:
    return [e for e in events if e[0] == "connect" and e[1] == host]
