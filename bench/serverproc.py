"""Shared by the benchmarks: start a real `qwenedit serve` process on a fresh data dir (SQLite)
or a fresh PostgreSQL database, create a funded key, stop everything afterwards."""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import httpx

QWENEDIT = str(Path(sys.executable).with_name("qwenedit"))
POSTGRES_ADMIN_URL = os.environ.get(
    "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Server:
    base_url: str
    api_key: str
    env: dict[str, str]
    data_dir: Path
    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(share * (len(ordered) - 1))))
    return ordered[index]


def p50_p99(seconds: list[float]) -> str:
    p50, p99 = (percentile(seconds, share) * 1000 for share in (0.5, 0.99))
    return f"p50 {p50:7.1f} ms  p99 {p99:7.1f} ms"


def _tree(root: int) -> list[tuple[int, float]]:
    """``root`` and every process below it, each with its utime + stime in seconds."""
    stats: dict[int, tuple[int, float]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / TICKS)
    found, frontier = [], [root]
    while frontier:
        pid = frontier.pop()
        found.append((pid, stats.get(pid, (0, 0.0))[1]))
        frontier.extend(child for child, (parent, _) in stats.items() if parent == pid)
    return found


def tree_cpu_seconds(root: int) -> float:
    """utime + stime of ``root`` and every process below it, in seconds."""
    return sum(cpu for _, cpu in _tree(root))


def thread_run_seconds(pid: int, thread: int) -> float:
    """Time on a CPU of one thread of ``pid``, in seconds (the scheduler's count)."""
    return int(Path(f"/proc/{pid}/task/{thread}/schedstat").read_text().split()[0]) / 1e9


def tree_run_times(root: int) -> dict[str, int]:
    """Nanoseconds on a CPU of every thread alive now in ``root`` and the processes below it,
    by ``/proc/<pid>/task/<tid>``, from the scheduler's own count (its ``schedstat``).

    For idle windows. utime and stime are sampled at each clock tick (10 ms), and a process
    woken by a timer tends to be running just when a tick lands: they then charge a whole tick
    for a wake-up of a few hundred microseconds. Under load the ticks are fair, and they also
    count threads and processes that have exited, which this does not (``run_seconds_between``
    counts a thread only while it lives)."""
    times: dict[str, int] = {}
    for pid, _ in _tree(root):
        for stat in Path(f"/proc/{pid}/task").glob("*/schedstat"):
            try:
                times[str(stat.parent)] = int(stat.read_text().split()[0])
            except OSError:
                continue
    return times


def run_seconds_between(before: dict[str, int], after: dict[str, int]) -> float:
    """Seconds on a CPU between two ``tree_run_times``: of threads alive at both, what they
    ran in between; of threads started in between, all they ran."""
    return sum(ran - before.get(thread, 0) for thread, ran in after.items()) / 1e9


async def _admin(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_ADMIN_URL)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


@contextmanager
def postgres_database() -> Iterator[str]:
    """A database of its own for one run, dropped afterwards."""
    name = f"qwenedit_bench_{secrets.token_hex(4)}"
    asyncio.run(_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        asyncio.run(_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def running_server(
    data_dir: Path, serve_args: list[str], *, database_url: str | None = None, **settings: str
) -> Iterator[Server]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("QWENEDIT_")}
    env.update(
        {"QWENEDIT_DATA_DIR": str(data_dir), "QWENEDIT_LOG_LEVEL": "WARNING", "HF_HUB_OFFLINE": "1"}
    )
    env.update({f"QWENEDIT_{name.upper()}": value for name, value in settings.items()})
    if database_url is not None:
        env["QWENEDIT_DATABASE_URL"] = database_url
        env["QWENEDIT_SECRET_KEY"] = secrets.token_urlsafe(32)
        subprocess.run([QWENEDIT, "db", "upgrade"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [QWENEDIT, "keys", "create", "--account", "bench", "--credits", "1000000", "--json"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = json.loads(created.stdout)["api_key"]
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    log = (data_dir / "server.log").open("wb")
    server = subprocess.Popen(
        [QWENEDIT, "serve", "--port", str(port), *serve_args],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    # an API-only server is never "ready" (no engine, no worker of its own): wait for it to serve
    probe = "/healthz" if "--no-worker" in serve_args else "/readyz"
    try:
        deadline = time.monotonic() + 300
        while True:
            if server.poll() is not None:
                raise SystemExit(
                    f"the server exited with {server.returncode}; see {data_dir / 'server.log'}"
                )
            try:
                if httpx.get(f"{base_url}{probe}", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the server did not become ready")
            time.sleep(0.2)
        yield Server(base_url=base_url, api_key=api_key, env=env, data_dir=data_dir, pid=server.pid)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=60)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()
