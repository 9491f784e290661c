"""A real `qwenedit serve` on PostgreSQL rides out database outages, and the exit status tells a
clean stop (0) from a dead loop (1) and a start that cannot work (2)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import httpx
import pytest

from e2e.test_server_process import (
    QWENEDIT,
    balance,
    create_key,
    environment,
    free_port,
    process,
    wait_until,
)
from support.images import data_uri, png_bytes
from support.postgres import PG_PORT, fresh_database, require_postgres, terminate_backends
from support.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.slow
TESTS = Path(__file__).resolve().parents[1]


def with_test_engine(env: dict[str, str]) -> dict[str, str]:
    """Child processes can load ``support.engine``: no torch, one step per image."""
    paths = [str(TESTS), *filter(None, [env.get("PYTHONPATH")])]
    engine = "support.engine:SettingsEngine"
    return {**env, "PYTHONPATH": os.pathsep.join(paths), "QWENEDIT_ENGINE": engine}


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with tcp_proxy(PG_PORT) as proxy:
        yield proxy


@pytest.fixture
def pg_database() -> Iterator[str]:
    require_postgres()
    with fresh_database() as name:
        yield name


def edit_once(client: httpx.Client, seed: int) -> dict[str, Any]:
    body = {"prompt": "p", "image_urls": [data_uri(png_bytes(400, 400))], "seed": seed}
    task = client.post("/v1/images/generations", json=body).json()

    def finished() -> dict[str, Any] | None:
        current: dict[str, Any] = client.get(f"/v1/tasks/{task['id']}").json()
        return current if current["status"] in ("completed", "failed") else None

    done = wait_until(finished, 60, f"task {task['id']}")
    return done


def run(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([QWENEDIT, *args], env=env, capture_output=True, text=True, timeout=120)


def readyz(base: str) -> int:
    """Readiness must answer within seconds whatever the database does."""
    return httpx.get(f"{base}/readyz", timeout=5).status_code


@pytest.mark.postgres
def test_serve_rides_out_database_outages(
    tmp_path: Path, pg_database: str, proxy: TcpProxy
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = with_test_engine(
        environment(
            tmp_path / "data",
            QWENEDIT_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{proxy.port}/{pg_database}",
            QWENEDIT_SECRET_KEY="e2e-secret",
        )
    )
    subprocess.run([QWENEDIT, "db", "upgrade"], env=env, check=True, capture_output=True)
    log = tmp_path / "serve.log"
    with ExitStack() as stack:
        server = stack.enter_context(process(["serve", "--port", str(port)], env, log))
        wait_until(lambda: readyz(base) == 200, 60, "ready")
        key = create_key(env, credits=10)
        client = httpx.Client(base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=10)
        stack.callback(client.close)
        assert edit_once(client, seed=1)["status"] == "completed"

        assert terminate_backends(pg_database) > 0  # every connection, mid-run
        assert edit_once(client, seed=2)["status"] == "completed"
        assert server.poll() is None

        proxy.cut()
        terminate_backends(pg_database)
        wait_until(lambda: readyz(base) == 503, 20, "not ready while the database is away")
        time.sleep(2)  # every loop meets the outage
        assert server.poll() is None
        proxy.restore()
        wait_until(lambda: readyz(base) == 200, 30, "ready again")
        assert edit_once(client, seed=3)["status"] == "completed"
        assert balance(env) == 7

        server.send_signal(signal.SIGTERM)
        assert server.wait(timeout=60) == 0
    text = log.read_text()
    outages = text.count("database unavailable:")
    assert outages >= 1, text  # the cut; the kill mid-run may have been one too
    assert text.count("database reachable again after") == outages, text
    assert "died" not in text
    assert "Traceback" not in text


def test_a_dead_loop_ends_serve_with_status_1(tmp_path: Path) -> None:
    env = environment(tmp_path / "data")
    env = {**with_test_engine(env), "QWENEDIT_ENGINE": "support.engine:NoSuchEngine"}
    done = run(["serve", "--port", str(free_port())], env)
    assert done.returncode == 1, done.stderr
    assert "worker-0 died; stopping" in done.stderr
    assert "a background loop failed" in done.stderr


def test_a_dead_loop_ends_worker_with_status_1(tmp_path: Path) -> None:
    env = environment(tmp_path / "data")
    env = {**with_test_engine(env), "QWENEDIT_ENGINE": "support.engine:NoSuchEngine"}
    done = run(["worker"], env)
    assert done.returncode == 1, done.stderr
    assert "worker-0 died; stopping" in done.stderr


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"]])
def test_an_unreachable_database_at_start_is_one_line_and_status_2(
    tmp_path: Path, command: list[str]
) -> None:
    closed = free_port()
    env = with_test_engine(
        environment(
            tmp_path / "data",
            QWENEDIT_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{closed}/qwenedit",
            QWENEDIT_SECRET_KEY="e2e-secret",
            QWENEDIT_START_TIMEOUT="1",
        )
    )
    done = run(command, env)
    assert done.returncode == 2, done.stderr
    [message] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert message.startswith("error: the database stayed unreachable for 1 s: ")
    assert "ConnectionRefusedError" in message
    assert "Traceback" not in done.stderr


def test_unusable_storage_at_start_is_one_line_and_status_2(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "blobs").write_text("a file where the blob directory should be")
    env = with_test_engine(environment(data, QWENEDIT_START_TIMEOUT="1"))
    done = run(["serve", "--port", str(free_port())], env)
    assert done.returncode == 2, done.stderr
    [message] = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert message.startswith("error: blob storage file://")
    assert "Traceback" not in done.stderr


@pytest.mark.postgres
def test_an_unmigrated_database_at_start_is_one_line_and_status_2(
    tmp_path: Path, pg_database: str
) -> None:
    env = with_test_engine(
        environment(
            tmp_path / "data",
            QWENEDIT_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{PG_PORT}/{pg_database}",
            QWENEDIT_SECRET_KEY="e2e-secret",
        )
    )
    done = run(["worker"], env)
    assert done.returncode == 2, done.stderr
    assert "error: The database is not migrated: run `qwenedit db upgrade`" in done.stderr
    assert "Traceback" not in done.stderr
