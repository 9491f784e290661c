"""A real HTTP(S) server on a loopback address whose answers a test scripts per path."""

from __future__ import annotations

import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HOLD_LIMIT = 30.0
SHUTDOWN_POLL = 0.02
"""How often ``serve_forever`` looks for a shutdown request; its 0.5 s default would be paid
by every test that stops a server."""


@dataclass(frozen=True)
class Answer:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0
    chunked: bool = False
    hold: threading.Event | None = None
    """When given, the answer waits until the test sets it (at most ``HOLD_LIMIT`` seconds)."""


@dataclass(frozen=True)
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    at: float
    peer: tuple[str, int]
    """The client's address and port: requests on one kept-alive connection share it."""


@dataclass
class ScriptedServer:
    host: str
    port: int = 0
    scheme: str = "http"
    answers: dict[str, Answer | Callable[[Received], Answer]] = field(default_factory=dict)
    received: list[Received] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        return f"{self.scheme}://{host or self.host}:{self.port}/{path.lstrip('/')}"

    def requests_for(self, path: str) -> list[Received]:
        return [r for r in list(self.received) if r.path == "/" + path.lstrip("/")]


@contextmanager
def scripted_server(
    host: str = "127.0.0.1", tls: ssl.SSLContext | None = None
) -> Iterator[ScriptedServer]:
    state = ScriptedServer(host=host, scheme="https" if tls else "http")

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received = Received(
                method=self.command,
                path=self.path,
                headers={k.lower(): v for k, v in self.headers.items()},
                body=self.rfile.read(length),
                at=time.monotonic(),
                peer=(self.client_address[0], self.client_address[1]),
            )
            state.received.append(received)
            answer = state.answers.get(self.path, Answer(status=404))
            if callable(answer):
                answer = answer(received)
            if answer.delay:
                time.sleep(answer.delay)
            if answer.hold is not None:
                answer.hold.wait(HOLD_LIMIT)
            try:
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                if answer.chunked:
                    self.send_header("Transfer-Encoding", "chunked")
                    self.end_headers()
                    for start in range(0, len(answer.body), 4096):
                        piece = answer.body[start : start + 4096]
                        self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                    self.wfile.write(b"0\r\n\r\n")
                else:
                    self.send_header("Content-Length", str(len(answer.body)))
                    self.end_headers()
                    self.wfile.write(answer.body)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                return

        do_GET = _handle
        do_POST = _handle

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer((host, 0), Handler)
    server.daemon_threads = True
    if tls is not None:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
