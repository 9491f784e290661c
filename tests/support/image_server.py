"""A real HTTP server on 127.0.0.1 that serves test images, optionally stalling requests."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from support.http_server import SHUTDOWN_POLL


@dataclass
class ImageServer:
    port: int = 0
    files: dict[str, bytes] = field(default_factory=dict)
    stall: dict[str, threading.Event] = field(default_factory=dict)
    """Path -> event: a request for that path waits until the event is set."""
    stall_once: set[str] = field(default_factory=set)
    """Paths whose FIRST request waits on its stall event; later ones are served at once."""
    hits: dict[str, int] = field(default_factory=dict)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"


@contextmanager
def serve_images(files: dict[str, bytes]) -> Iterator[ImageServer]:
    state = ImageServer(files=dict(files))
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.lstrip("/")
            with lock:
                state.hits[path] = state.hits.get(path, 0) + 1
                first = state.hits[path] == 1
            gate = state.stall.get(path)
            if gate is not None and (path not in state.stall_once or first):
                gate.wait(timeout=120)
            body = state.files.get(path)
            if body is None:
                self.send_response(404)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    state.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, args=(SHUTDOWN_POLL,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        for gate in state.stall.values():
            gate.set()
        server.shutdown()
        server.server_close()
