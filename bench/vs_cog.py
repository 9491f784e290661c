"""qwenedit against Cog 0.23.1, in one run, back to back, around the same no-op model (a solid
512x512 PNG from a decoded 384x384 PNG input; ``noop_engine.SolidEngine`` and
``cog_predictor.Predictor``), with completion callbacks to a loopback receiver in this process:

(a) one task at a time: create → completed callback received, p50/p99;
(b) 8 in flight: completed-with-callback per second, and server CPU per completed task;
(c) creates per second, p50/p99, with 16 clients against ``serve --no-worker`` (Cog has no queue
    to accept into, so it gets no figure), and the framework floor: an authenticated
    ``GET /v1/credits`` per second (Cog: ``GET /health-check``) with the same clients;
    it also shows how busy the server's event loop thread was: one process serves no more than
    that thread can;
idle: server CPU per second of wall time while nothing happens, by the scheduler's nanosecond
    count (``serverproc.tree_run_times``: clock ticks overcharge a process woken by timers).

Server CPU under load is utime + stime from ``/proc/<pid>/stat`` summed over the server's
process tree (Cog runs a Rust HTTP server and a Python worker process). Cog is not a dependency
of the project: on its first run this script installs it into a venv of its own,
``bench/.scratch/cog-venv`` (``cog==0.23.1 coglet==0.23.1 pillow`` from the package index;
``--no-cog`` skips it).

    .venv/bin/python bench/vs_cog.py [--tasks 30] [--seconds 8] [--idle 30]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from idle_cpu import wake_cost_ms
from PIL import Image
from serverproc import (
    free_port,
    percentile,
    postgres_database,
    run_seconds_between,
    running_server,
    thread_run_seconds,
    tree_cpu_seconds,
    tree_run_times,
)

from qwenedit.media.images import quick_png, verify_image
from qwenedit.setting_groups import LimitSettings

BENCH = Path(__file__).resolve().parent
COG_VENV = BENCH / ".scratch" / "cog-venv"
COG_PYTHON = COG_VENV / "bin" / "python"
COG_VERSION = "0.23.1"
COG_PACKAGES = (f"cog=={COG_VERSION}", f"coglet=={COG_VERSION}", "pillow")
IN_FLIGHT = 8
CLIENTS = 16
CORES = len(os.sched_getaffinity(0))
"""The cores this run may use (its affinity), which the server and the load generator share."""
DONE = {"completed", "failed", "succeeded", "canceled"}


def input_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (384, 384), (90, 140, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


class Receiver:
    """A loopback HTTP server that answers 200 to every POST and wakes whoever waits for the
    ended task or prediction named in the body (``id`` and ``status`` in both products)."""

    def __init__(self) -> None:
        self.arrived: dict[str, float] = {}
        self._waiters: dict[str, asyncio.Future[float]] = {}
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.port = 0

    async def start(self) -> asyncio.Server:
        server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        return server

    async def stop(self, server: asyncio.Server) -> None:
        """Stop listening and end the connections still open (kept alive by the server under
        test), so that none is cancelled mid-read when the event loop closes (which Python
        3.11 reports as an error)."""
        server.close()
        for writer in self._connections.values():
            writer.transport.abort()  # the reader sees the end: no task is cancelled
        await asyncio.gather(*self._connections, return_exceptions=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    async def ended(self, ident: str) -> float:
        if ident in self.arrived:
            return self.arrived[ident]
        future = self._waiters.setdefault(ident, asyncio.get_running_loop().create_future())
        return await future

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        this = asyncio.current_task()
        assert this is not None
        self._connections[this] = writer
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                body = await reader.readexactly(length)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                self._record(body)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()
            self._connections.pop(this, None)

    def _record(self, body: bytes) -> None:
        payload = json.loads(body)
        if payload.get("status") not in DONE:
            return
        now = time.perf_counter()
        self.arrived[payload["id"]] = now
        waiter = self._waiters.pop(payload["id"], None)
        if waiter is not None and not waiter.done():
            waiter.set_result(now)


@dataclass
class Target:
    """One product under test: how to start a task and what its cheap authenticated GET is."""

    label: str
    base_url: str
    pid: int
    headers: dict[str, str]
    create: Callable[[httpx.AsyncClient, str], Awaitable[str]]
    floor_path: str
    figures: dict[str, str] = field(default_factory=dict)
    values: dict[str, float] = field(default_factory=dict)


def qwenedit_create(image: str) -> Callable[[httpx.AsyncClient, str], Awaitable[str]]:
    async def create(http: httpx.AsyncClient, callback_url: str) -> str:
        body = {
            "model": "qwen-image-edit-plus",
            "prompt": "make the sky purple",
            "image_urls": [image],
            "size": "512x512",
            "prompt_extend": False,
            "watermark": False,
            "callback_url": callback_url,
        }
        response = await http.post("/v1/images/generations", json=body)
        response.raise_for_status()
        return str(response.json()["id"])

    return create


def cog_create(image: str) -> Callable[[httpx.AsyncClient, str], Awaitable[str]]:
    async def create(http: httpx.AsyncClient, callback_url: str) -> str:
        body = {
            "input": {"image": image, "prompt": "make the sky purple", "width": 512, "height": 512},
            "webhook": callback_url,
            "webhook_events_filter": ["completed"],
        }
        while True:
            response = await http.post(
                "/predictions", json=body, headers={"Prefer": "respond-async"}
            )
            # a slot is freed a moment after its webhook is sent: busy, try again
            if response.status_code != 409:
                break
            await asyncio.sleep(0.002)
        response.raise_for_status()
        return str(response.json()["id"])

    return create


async def one_at_a_time(target: Target, receiver: Receiver, tasks: int) -> None:
    async with httpx.AsyncClient(base_url=target.base_url, headers=target.headers) as http:
        latencies = []
        for index in range(tasks + 2):
            started = time.perf_counter()
            ident = await target.create(http, receiver.url)
            ended = await asyncio.wait_for(receiver.ended(ident), 60)
            if index >= 2:  # the first two warm the path
                latencies.append(ended - started)
    p50, p99 = (percentile(latencies, share) * 1000 for share in (0.5, 0.99))
    target.values["a"] = p50
    target.figures["a"] = f"{p50:.1f} / {p99:.1f}"


async def in_flight(target: Target, receiver: Receiver, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    done = 0

    async def lane(http: httpx.AsyncClient) -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            ident = await target.create(http, receiver.url)
            await asyncio.wait_for(receiver.ended(ident), 60)
            done += 1

    async with httpx.AsyncClient(
        base_url=target.base_url, headers=target.headers, timeout=60
    ) as http:
        cpu_before, started = tree_cpu_seconds(target.pid), time.perf_counter()
        await asyncio.gather(*(lane(http) for _ in range(IN_FLIGHT)))
        elapsed, cpu = time.perf_counter() - started, tree_cpu_seconds(target.pid) - cpu_before
    target.values["b"] = done / elapsed
    target.values["cpu"] = cpu / done * 1000
    target.figures["b"] = f"{done / elapsed:.1f}"
    target.figures["cpu"] = f"{cpu / done * 1000:.1f}"


async def idle(target: Target, seconds: float) -> None:
    await asyncio.sleep(2)  # let deliveries and progress writes settle
    before = tree_run_times(target.pid)
    await asyncio.sleep(seconds)
    value = run_seconds_between(before, tree_run_times(target.pid)) / seconds * 1000
    target.values["idle"] = value
    target.figures["idle"] = f"{value:.1f}"


async def hammer(
    base_url: str,
    headers: dict[str, str],
    seconds: float,
    request: Callable[[httpx.AsyncClient], Awaitable[None]],
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client() -> None:
        async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30) as http:
            while time.perf_counter() < deadline:
                started = time.perf_counter()
                await request(http)
                latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CLIENTS)))
    return len(latencies) / (time.perf_counter() - started), latencies


class CpuPerRequest:
    """CPU per request from now on, of the server (with its children) and of this process, the
    load generator, which shares the machine's cores with it; and how busy the server's event
    loop thread (its main thread) was, which bounds what one process can serve."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._server = tree_cpu_seconds(pid)
        self._client = time.process_time()
        self._loop = thread_run_seconds(pid, pid)
        self._started = time.perf_counter()

    def since(self, requests: int) -> tuple[float, float]:
        """Milliseconds per request: the server's, the load generator's."""
        server = (tree_cpu_seconds(self._pid) - self._server) * 1000 / max(requests, 1)
        client = (time.process_time() - self._client) * 1000 / max(requests, 1)
        return server, client

    def loop_busy(self) -> float:
        """The share of the time since the start that the server's event loop thread ran."""
        ran = thread_run_seconds(self._pid, self._pid) - self._loop
        return ran / (time.perf_counter() - self._started)


async def floor(target: Target, seconds: float) -> None:
    async def get(http: httpx.AsyncClient) -> None:
        (await http.get(target.floor_path)).raise_for_status()

    await hammer(target.base_url, target.headers, 1.0, get)
    cpu = CpuPerRequest(target.pid)
    rate, latencies = await hammer(target.base_url, target.headers, seconds, get)
    p50, p99 = (percentile(latencies, share) * 1000 for share in (0.5, 0.99))
    target.values["floor"] = rate
    target.figures["floor"] = f"{rate:.0f} ({p50:.1f} / {p99:.1f})"
    target.figures["floor_cpu"] = "{:.2f} / {:.2f}".format(*cpu.since(len(latencies)))
    target.figures["floor_loop"] = f"{cpu.loop_busy():.0%}"


async def creates(target: Target, seconds: float, image: str) -> None:
    create = qwenedit_create(image)

    async def post(http: httpx.AsyncClient) -> None:
        await create(http, "http://127.0.0.1:9/hook")

    cpu = CpuPerRequest(target.pid)
    rate, latencies = await hammer(target.base_url, target.headers, seconds, post)
    p50, p99 = (percentile(latencies, share) * 1000 for share in (0.5, 0.99))
    server_cpu, client_cpu = cpu.since(len(latencies))
    target.values["c"] = rate
    target.figures["c"] = f"{rate:.0f} ({p50:.1f} / {p99:.1f})"
    target.figures["c_cpu"] = f"{server_cpu:.2f} / {client_cpu:.2f}"
    target.figures["c_loop"] = f"{cpu.loop_busy():.0%}"
    target.figures["c_ratio"] = f"{rate / target.values['floor']:.2f}"


def check_cpu_ms(image: str) -> float:
    """CPU milliseconds of the check every create makes of its input (``verify_image``: the
    whole image proven to decode, so a corrupt one is a 400 before any credit moves), as the
    create makes it (``services.inputs``), in this process."""
    data = base64.b64decode(image.partition(",")[2])
    limits = LimitSettings()
    verify_image(data, limits, quick_png(data))
    rounds, started = 200, time.process_time()
    for _ in range(rounds):
        verify_image(data, limits, quick_png(data))
    return (time.process_time() - started) * 1000 / rounds


async def tasks_phase(target: Target, args: argparse.Namespace) -> None:
    receiver = Receiver()
    server = await receiver.start()
    try:
        await one_at_a_time(target, receiver, args.tasks)
        await in_flight(target, receiver, args.seconds)
        await idle(target, args.idle)
    finally:
        await receiver.stop(server)


QWENEDIT_SETTINGS = {
    "allow_private_network": "127.0.0.0/8",
    "allow_insecure_callbacks": "true",
}


def measure_qwenedit(
    label: str, data_dir: Path, args: argparse.Namespace, image: str, database: str | None
) -> Target:
    serve = ["--engine", "noop_engine:SolidEngine"]
    for part in ("full", "api"):
        (data_dir / part).mkdir(parents=True)
    with running_server(
        data_dir / "full", serve, database_url=database, **QWENEDIT_SETTINGS
    ) as server:
        target = Target(
            label=label,
            base_url=server.base_url,
            pid=server.pid,
            headers={"Authorization": f"Bearer {server.api_key}"},
            create=qwenedit_create(image),
            floor_path="/v1/credits",
        )
        asyncio.run(tasks_phase(target, args))
    with running_server(
        data_dir / "api", ["--no-worker"], database_url=database, **QWENEDIT_SETTINGS
    ) as server:
        api = Target(
            label,
            server.base_url,
            server.pid,
            {"Authorization": f"Bearer {server.api_key}"},
            target.create,
            "/v1/credits",
        )
        asyncio.run(floor(api, args.seconds))
        asyncio.run(creates(api, args.seconds, image))
    target.values.update({key: api.values[key] for key in ("c", "floor")})
    target.figures.update(
        {
            key: api.figures[key]
            for key in ("c", "c_cpu", "c_loop", "c_ratio", "floor", "floor_cpu", "floor_loop")
        }
    )
    return target


@contextmanager
def cog_server(workdir: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{COG_PYTHON.parent}:{os.environ['PATH']}",
        "PORT": str(port),
        "COG_PREDICT_TYPE_STUB": "cog_predictor.py:Predictor",
        "COG_MAX_CONCURRENCY": str(IN_FLIGHT),
        "COG_LOG_LEVEL": "warning",
    }
    log = (workdir / "cog.log").open("wb")
    process = subprocess.Popen(
        [str(COG_PYTHON), "-m", "cog.server.http", "--host", "127.0.0.1"],
        cwd=BENCH,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            if process.poll() is not None:
                raise RuntimeError(
                    f"Cog exited with {process.returncode}; see {workdir / 'cog.log'}"
                )
            try:
                if httpx.get(f"{base_url}/health-check").json().get("status") == "READY":
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Cog did not become ready")
            time.sleep(0.2)
        yield base_url, process.pid
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def install_cog() -> str | None:
    """Cog in its venv (made on first use); the reason when it cannot be had."""
    if not COG_PYTHON.exists():
        print(f"installing Cog {COG_VERSION} into {COG_VENV} ...", file=sys.stderr)
        made = subprocess.run(
            [sys.executable, "-m", "venv", str(COG_VENV)], capture_output=True, text=True
        )
        if made.returncode != 0:
            return f"could not make {COG_VENV}: {made.stderr.strip()[-200:]}"
    installed = subprocess.run(
        [str(COG_PYTHON), "-m", "pip", "install", "--quiet", *COG_PACKAGES],
        capture_output=True,
        text=True,
    )
    if installed.returncode != 0:
        return f"pip could not install {' '.join(COG_PACKAGES)}: {installed.stderr.strip()[-200:]}"
    return None


def measure_cog(workdir: Path, args: argparse.Namespace, image: str) -> Target | str:
    """The Cog figures, or the reason there are none."""
    if args.no_cog:
        return "skipped (--no-cog)"
    problem = install_cog()
    if problem is not None:
        return problem
    version = subprocess.run(
        [str(COG_PYTHON), "-c", "import cog; print(cog.__version__)"],
        capture_output=True,
        text=True,
    )
    if version.stdout.strip() != COG_VERSION:
        return f"Cog {COG_VERSION} is not in {COG_PYTHON.parent}: {version.stderr.strip()[-200:]}"
    try:
        with cog_server(workdir) as (base_url, pid):
            target = Target(
                f"Cog {COG_VERSION}", base_url, pid, {}, cog_create(image), "/health-check"
            )
            asyncio.run(tasks_phase(target, args))
            asyncio.run(floor(target, args.seconds))
            del target.figures["floor_loop"]  # its main thread is not where it serves
    except RuntimeError as exc:
        return f"Cog could not be run: {exc}"
    target.figures["c"] = "n/a (no queue)"
    return target


ROWS = (
    ("a", "(a) one at a time: create→callback p50 / p99, ms", False),
    ("b", f"(b) {IN_FLIGHT} in flight: completed with callback /s", True),
    ("cpu", "server CPU per completed task, ms", False),
    ("c", f"(c) creates/s, {CLIENTS} clients, --no-worker (p50 / p99 ms)", True),
    ("c_cpu", "    CPU per create, ms: server / load generator", False),
    ("floor", "    framework floor: GET /v1/credits /s (p50 / p99 ms)", True),
    ("floor_cpu", "    CPU per floor GET, ms: server / load generator", False),
    ("c_ratio", "    creates ÷ floor (target ≥ 0.6)", True),
    ("c_loop", "    server event loop thread busy during creates", False),
    ("floor_loop", "    server event loop thread busy during the floor", False),
    ("idle", "idle server CPU, ms per s", False),
)


def table(targets: list[Target], cog: Target | None) -> None:
    columns = [target.label for target in targets] + ([cog.label] if cog else [])
    ratio_columns = [f"{target.label} / Cog" for target in targets] if cog else []
    widths = [max(26, len(label) + 2) for label in columns] + [len(c) + 2 for c in ratio_columns]
    print(
        f"{'':<58}"
        + "".join(f"{c:>{w}}" for c, w in zip(columns + ratio_columns, widths, strict=True))
    )
    for key, label, _higher_better in ROWS:
        cells = [target.figures.get(key, "-") for target in targets]
        if cog:
            cells.append(cog.figures.get(key, "-"))
            for target in targets:
                ours, theirs = target.values.get(key), cog.values.get(key)
                cells.append(f"{ours / theirs:.2f}" if ours and theirs else "-")
        print(f"{label:<58}" + "".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=30, help="tasks for (a)")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of (b) and (c)")
    parser.add_argument("--idle", type=float, default=30.0, help="length of the idle window")
    parser.add_argument("--skip-postgres", action="store_true")
    parser.add_argument("--no-cog", action="store_true", help="qwenedit only, no Cog install")
    args = parser.parse_args()
    os.environ["PYTHONPATH"] = os.pathsep.join(
        [str(BENCH), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    )
    image = input_data_uri()
    targets: list[Target] = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cog = measure_cog(workdir, args, image)
        targets.append(measure_qwenedit("qwenedit SQLite", workdir / "sqlite", args, image, None))
        if not args.skip_postgres:
            with postgres_database() as url:
                targets.append(
                    measure_qwenedit("qwenedit PostgreSQL", workdir / "pg", args, image, url)
                )
    check_ms = check_cpu_ms(image)
    hot, cold = wake_cost_ms()
    print(
        f"{sys.argv[0]} --tasks {args.tasks} --seconds {args.seconds:g} --idle {args.idle:g}; "
        f"{CORES} CPUs; ratios are qwenedit / Cog (higher is better for /s rows)"
    )
    if isinstance(cog, str):
        print(f"Cog: {cog}")
        table(targets, None)
    else:
        print(
            f"Cog runs with COG_MAX_CONCURRENCY={IN_FLIGHT} (an async predictor); qwenedit with "
            "its one embedded worker, which runs tasks one at a time"
        )
        table(targets, cog)
    print(
        f"A create's check of its input: {check_ms:.2f} ms of CPU (verify_image, measured in "
        f"this process). A small write here costs {hot:.2f} ms of CPU hot and {cold:.2f} ms "
        "right after 1 s asleep (bench/idle_cpu.py): the idle row counts wake-ups more than work"
    )


if __name__ == "__main__":
    main()
