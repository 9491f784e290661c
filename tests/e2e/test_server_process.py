"""The real `qwenedit` processes: serve with the tiny engine, worker scale-out, SIGKILL recovery."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from PIL import Image

from support.image_server import serve_images
from support.images import data_uri, png_bytes

pytestmark = pytest.mark.slow
QWENEDIT = str(Path(sys.executable).with_name("qwenedit"))
T = TypeVar("T")


@pytest.fixture
def closing() -> Iterator[ExitStack]:
    with ExitStack() as stack:
        yield stack


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def environment(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("QWENEDIT_")}
    env.update(
        {
            "QWENEDIT_DATA_DIR": str(data_dir),
            "QWENEDIT_STEPS": "2",
            "QWENEDIT_POLL_SECONDS": "0.2",
            "QWENEDIT_HEARTBEAT_SECONDS": "0.5",
            "QWENEDIT_REAPER_SECONDS": "0.5",
            "HF_HUB_OFFLINE": "1",
            **extra,
        }
    )
    return env


@contextmanager
def process(args: list[str], env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("wb") as sink:
        proc = subprocess.Popen([QWENEDIT, *args], env=env, stdout=sink, stderr=subprocess.STDOUT)
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def wait_until(check: Callable[[], T | None], timeout: float, what: str) -> T:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except httpx.TransportError:
            result = None
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def finished(client: httpx.Client, task_id: str) -> dict[str, Any] | None:
    task: dict[str, Any] = client.get(f"/v1/tasks/{task_id}").json()
    return task if task["status"] in ("completed", "failed") else None


def holding_worker(data_dir: Path, task_id: str) -> str:
    """The id (``<host>-<pid>-w<n>``) of the worker holding the task, from the database."""
    uri = f"file:{data_dir / 'qwenedit.db'}?mode=ro"
    database = sqlite3.connect(uri, uri=True)
    try:
        row = database.execute("SELECT worker_id FROM tasks WHERE id = ?", (task_id,)).fetchone()
    finally:
        database.close()
    return str(row[0])


def create_key(env: dict[str, str], credits: int) -> str:
    done = subprocess.run(
        [QWENEDIT, "keys", "create", "--account", "e2e", "--credits", str(credits), "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    created = json.loads(done.stdout)
    assert created["account"] == "e2e"
    assert created["balance"] == credits
    return str(created["api_key"])


def balance(env: dict[str, str]) -> int:
    shown = subprocess.run(
        [QWENEDIT, "credits", "show", "e2e", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    value = json.loads(shown.stdout)["balance"]
    assert isinstance(value, int)
    return value


def test_serve_tiny_engine_end_to_end(tmp_path: Path, closing: ExitStack) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(tmp_path / "data")
    with process(
        ["serve", "--engine", "tiny", "--port", str(port)], env, tmp_path / "serve.log"
    ) as server:
        wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
        key = create_key(env, credits=5)  # while the engine loads
        wait_until(lambda: httpx.get(f"{base}/readyz").status_code == 200, 120, "readyz")
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30)
        closing.callback(client.close)
        body = {
            "model": "qwen-image-edit-plus",
            "prompt": "add a hat",
            "image_urls": [data_uri(png_bytes(512, 512))],
            "n": 2,
            "watermark": True,
            "seed": 5,
        }
        task = client.post("/v1/images/generations", json=body).json()
        assert task["status"] == "pending"
        done = wait_until(lambda: finished(client, task["id"]), 120, "the task")
        assert done["status"] == "completed", done
        assert done["usage"]["credits_used"] == 2
        for url in done["results"]:
            image = Image.open(io.BytesIO(httpx.get(url).raise_for_status().content))
            assert image.format == "PNG"
            assert image.size == (1024, 1024)
        assert balance(env) == 3
        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    log = (tmp_path / "serve.log").read_text()
    assert f"task {task['id']} completed" in log
    assert "add a hat" not in log  # no prompts at INFO
    assert key not in log


def test_serve_refuses_qwen_engine_without_cuda(tmp_path: Path) -> None:
    env = environment(tmp_path / "data")
    done = subprocess.run(
        [QWENEDIT, "serve", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "--engine tiny" in done.stderr


def test_sigkilled_worker_task_completes_on_another_billed_once(
    tmp_path: Path, closing: ExitStack
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(
        tmp_path / "data",
        QWENEDIT_LEASE_SECONDS="3",
        QWENEDIT_ALLOW_PRIVATE_NETWORK="127.0.0.0/8",
        QWENEDIT_PUBLIC_URL=base,
        QWENEDIT_ENGINE="tiny",
    )
    gate = threading.Event()
    with serve_images({"in.png": png_bytes(512, 384)}) as images:
        images.stall["in.png"] = gate
        images.stall_once.add("in.png")
        with process(["serve", "--no-worker", "--port", str(port)], env, tmp_path / "api.log"):
            wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
            key = create_key(env, credits=10)
            client = httpx.Client(
                base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
            )
            closing.callback(client.close)
            with (
                process(["worker"], env, tmp_path / "worker-a.log") as worker_a,
                process(["worker"], env, tmp_path / "worker-b.log") as worker_b,
            ):
                task = client.post(
                    "/v1/images/generations",
                    json={"prompt": "p", "image_urls": [images.url("in.png")], "seed": 1},
                ).json()
                wait_until(lambda: images.hits.get("in.png") == 1, 120, "a worker to fetch")
                assert client.get(f"/v1/tasks/{task['id']}").json()["status"] == "processing"
                holder = holding_worker(tmp_path / "data", task["id"])
                [victim] = [w for w in (worker_a, worker_b) if f"-{w.pid}-" in holder]
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                done = wait_until(lambda: finished(client, task["id"]), 180, "the other worker")
    assert done["status"] == "completed", done
    assert f"/{task['id']}/2/0.png" in done["results"][0]  # the second attempt's files
    assert done["usage"]["credits_used"] == 1
    assert balance(env) == 9
    assert images.hits["in.png"] == 2
