"""A real ``qwenedit serve`` process on a free loopback port, for tests that need the actual
HTTP server (sockets, timeouts, connection limits) rather than the app in-process."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

QWENEDIT = str(Path(sys.executable).with_name("qwenedit"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    env: dict[str, str]
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def connect(self, timeout: float = 10.0) -> socket.socket:
        return socket.create_connection(("127.0.0.1", self.port), timeout=timeout)

    def new_key(self, account: str, credits: int = 5) -> str:
        done = subprocess.run(
            [QWENEDIT, "keys", "create", "--account", account, "--credits", str(credits), "--json"],
            env=self.env,
            check=True,
            capture_output=True,
            text=True,
        )
        return str(json.loads(done.stdout)["api_key"])


@contextmanager
def serve_api_only(data_dir: Path, **settings: str) -> Iterator[Server]:
    """``qwenedit serve --no-worker`` with ``QWENEDIT_<NAME>`` settings; stopped with SIGTERM."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("QWENEDIT_")}
    env.update({f"QWENEDIT_{name.upper()}": value for name, value in settings.items()})
    env.update({"QWENEDIT_DATA_DIR": str(data_dir), "HF_HUB_OFFLINE": "1"})
    port = free_port()
    log = data_dir.with_suffix(".log")
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [QWENEDIT, "serve", "--no-worker", "--port", str(port)],
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
        try:
            server = Server(port=port, env=env, log=log)
            deadline = time.monotonic() + 60
            while True:
                try:
                    if httpx.get(f"{server.base_url}/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert proc.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the server did not start"
                time.sleep(0.2)
            yield server
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
