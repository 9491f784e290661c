"""The fault run: a cluster under fire, then every promise checked.

300 tasks (n 1-3) with callbacks to a local HTTPS receiver, created round-robin on 2 API nodes,
run by 3 workers, on PostgreSQL + SeaweedFS. During the run a random worker is SIGKILLed every
~3 s and a fresh one started, each API node is restarted once, every PostgreSQL backend of the
database is terminated 3 times, and the S3 server is SIGSTOPped for 5 s twice. Afterwards it
prints what happened and checks what must never happen; it exits 1 if any "must be 0" is not.

    .venv/bin/python bench/faults.py [--tasks 300] [--engine-seconds 0.3]

Needs PostgreSQL at 127.0.0.1:5432 (or BENCH_POSTGRES_URL) and the dev extras (SeaweedFS's
``weed``, trustme). Workers run the no-op engine of ``bench/noop_engine.py``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import random
import secrets
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import httpx
import trustme
from PIL import Image
from serverproc import QWENEDIT, free_port, postgres_database

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))
from support.seaweed import running_seaweed  # noqa: E402

KILL_EVERY = 3.0
MIN_KILLS = 20
SETTLE_SECONDS = 120.0


@dataclass
class Receiver:
    """The HTTPS callback receiver: every delivery, by webhook-id."""

    deliveries: list[tuple[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, webhook_id: str, task_id: str) -> None:
        with self.lock:
            self.deliveries.append((webhook_id, task_id))


def start_receiver(ca: trustme.CA, receiver: Receiver) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length", "0")))
            receiver.record(self.headers.get("webhook-id", ""), json.loads(body)["id"])
            self.send_response(200)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"https://127.0.0.1:{server.server_address[1]}/hook"


@dataclass
class Node:
    """One qwenedit process of the cluster, restartable."""

    name: str
    args: list[str]
    env: dict[str, str]
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        log = (self.root / f"{self.name}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(
            [QWENEDIT, *self.args], env=self.env, stdout=log, stderr=subprocess.STDOUT
        )

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


@dataclass
class Tally:
    kills: int = 0
    restarts: int = 0
    restart_exit_codes: list[int] = field(default_factory=list)
    cuts: int = 0
    storage_stops: int = 0
    accepted: dict[str, str] = field(default_factory=dict)
    """Task id by request number."""
    refused: Counter[str] = field(default_factory=Counter)


def png_data_uri() -> str:
    buffer = io.BytesIO()
    Image.new("RGB", (384, 384), (30, 120, 200)).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def create(api: list[str], key: str, index: int, body: dict[str, Any], tally: Tally) -> None:
    """Create task ``index`` on its node; through restarts and cuts, retry with the same
    Idempotency-Key until the server answers (a 4xx is recorded as refused)."""
    headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": f"fault-run-{index}"}
    deadline = time.monotonic() + 120
    attempt = 0
    while time.monotonic() < deadline:
        base = api[(index + attempt) % len(api)]
        attempt += 1
        try:
            response = httpx.post(
                f"{base}/v1/images/generations", json=body, headers=headers, timeout=15
            )
        except httpx.TransportError:
            time.sleep(0.3)
            continue
        if response.status_code == 200:
            tally.accepted[str(index)] = response.json()["id"]
            return
        if response.status_code < 500:
            tally.refused[f"{response.status_code}"] += 1
            return
        time.sleep(0.3)
    tally.refused["gave up"] += 1


def run_faults(
    workers: list[Node], api: list[Node], database: str, weed: subprocess.Popen[bytes], t: Tally
) -> None:
    """The schedule: kills every ~3 s throughout; API restarts, database cuts and storage stops
    spread across it."""
    events: list[tuple[float, str]] = [(12.0, "restart-0"), (32.0, "restart-1")]
    events += [(8.0, "cut"), (26.0, "cut"), (46.0, "cut")]
    events += [(18.0, "stop-s3"), (52.0, "stop-s3")]
    events.sort()
    started = time.monotonic()
    next_kill = started + KILL_EVERY
    rng = random.Random(7)
    while t.kills < MIN_KILLS or events:
        now = time.monotonic()
        if now >= next_kill and t.kills < MIN_KILLS + 2:
            victim = rng.choice(workers)
            if victim.proc is not None:
                victim.proc.send_signal(signal.SIGKILL)
                victim.proc.wait()
            t.kills += 1
            victim.start()
            next_kill = now + KILL_EVERY * rng.uniform(0.8, 1.2)
        if events and now - started >= events[0][0]:
            _, what = events.pop(0)
            if what.startswith("restart"):
                node = api[int(what[-1])]
                assert node.proc is not None
                node.proc.send_signal(signal.SIGTERM)
                t.restart_exit_codes.append(node.proc.wait(timeout=90))
                node.start()
                t.restarts += 1
            elif what == "cut":
                asyncio.run(terminate_backends(database))
                t.cuts += 1
            else:
                weed.send_signal(signal.SIGSTOP)
                time.sleep(5)
                weed.send_signal(signal.SIGCONT)
                t.storage_stops += 1
        if t.kills >= MIN_KILLS and not events:
            break
        time.sleep(0.05)


async def terminate_backends(database: str) -> None:
    connection = await asyncpg.connect(database.rsplit("/", 1)[0] + "/postgres")
    try:
        await connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = $1 AND pid <> pg_backend_pid()",
            database.rsplit("/", 1)[1],
        )
    finally:
        await connection.close()


async def ledger_checks(database: str) -> dict[str, Any]:
    connection = await asyncpg.connect(database)
    try:
        tasks = await connection.fetch(
            "SELECT t.id, t.status, t.error_code, t.used_milli, t.result_keys, "
            "count(l.id) FILTER (WHERE l.kind = 'reserve') AS reserves, "
            "count(l.id) FILTER (WHERE l.kind = 'refund') AS refunds, "
            "coalesce(sum(l.amount_milli), 0) AS net "
            "FROM tasks t LEFT JOIN ledger l ON l.task_id = t.id GROUP BY t.id"
        )
        accounts = await connection.fetchval(
            "SELECT count(*) FROM accounts a WHERE a.balance_milli <> "
            "(SELECT coalesce(sum(amount_milli), 0) FROM ledger WHERE account_id = a.id)"
        )
    finally:
        await connection.close()
    return {"tasks": tasks, "accounts_off": int(accounts)}


def downloadable_from_both(api: list[str], results: list[str]) -> bool:
    for url in results:
        parts = urlsplit(url)
        for base in api:
            try:
                response = httpx.get(f"{base}{parts.path}?{parts.query}", timeout=30)
            except httpx.TransportError:
                return False
            if response.status_code != 200:
                return False
    return True


def wait_for_http(url: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not answer within {timeout:g} s")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=300)
    parser.add_argument("--engine-seconds", type=float, default=0.3)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="qwenedit-faults-"))
    ca = trustme.CA()
    ca_file = root / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    receiver = Receiver()
    hook_server, hook_url = start_receiver(ca, receiver)
    tally = Tally()
    with running_seaweed(root / "s3") as seaweed, postgres_database() as database:
        s3 = seaweed.server
        ports = [free_port(), free_port()]
        api_urls = [f"http://127.0.0.1:{port}" for port in ports]
        shared = {
            "QWENEDIT_DATABASE_URL": database,
            "QWENEDIT_SECRET_KEY": secrets.token_urlsafe(32),
            "QWENEDIT_STORAGE_URL": f"s3://{s3.bucket}/faults",
            "QWENEDIT_PUBLIC_URL": api_urls[0],
            "QWENEDIT_ENGINE": "noop_engine:SolidEngine",
            "QWENEDIT_LEASE_SECONDS": "6",
            "QWENEDIT_HEARTBEAT_SECONDS": "1",
            "QWENEDIT_REAPER_SECONDS": "1",
            "QWENEDIT_ALLOW_PRIVATE_NETWORK": "127.0.0.0/8",
            "QWENEDIT_CA_BUNDLE": str(ca_file),
            "QWENEDIT_LOG_LEVEL": "INFO",
            "AWS_ENDPOINT_URL": s3.endpoint,
            "AWS_ACCESS_KEY_ID": s3.access_key_id,
            "AWS_SECRET_ACCESS_KEY": s3.secret_access_key,
            "AWS_REGION": s3.region,
            "PYTHONPATH": str(BENCH),
            "BENCH_ENGINE_SECONDS": str(args.engine_seconds),
            "HF_HUB_OFFLINE": "1",
        }
        env = {k: v for k, v in os.environ.items() if not k.startswith("QWENEDIT_")}

        def env_for(name: str) -> dict[str, str]:
            (root / name).mkdir(exist_ok=True)
            return {**env, **shared, "QWENEDIT_DATA_DIR": str(root / name)}

        admin = env_for("admin")
        subprocess.run([QWENEDIT, "db", "upgrade"], env=admin, check=True, capture_output=True)
        created = subprocess.run(
            [QWENEDIT, "keys", "create", "--account", "faults", "--credits", "100000", "--json"],
            env=admin,
            check=True,
            capture_output=True,
            text=True,
        )
        key = json.loads(created.stdout)["api_key"]
        api = [
            Node(
                f"api-{i}", ["serve", "--no-worker", "--port", str(port)], env_for(f"api-{i}"), root
            )
            for i, port in enumerate(ports)
        ]
        workers = [Node(f"worker-{i}", ["worker"], env_for(f"worker-{i}"), root) for i in range(3)]
        for node in api + workers:
            node.start()
        for url in api_urls:
            wait_for_http(f"{url}/healthz", 120)
        image = png_data_uri()
        rng = random.Random(11)
        bodies = [
            {
                "prompt": f"fault run {index}",
                "image_urls": [image],
                "n": rng.randint(1, 3),
                "seed": index,
                "prompt_extend": False,
                "callback_url": hook_url,
            }
            for index in range(args.tasks)
        ]
        print(f"cluster up in {root}; creating {args.tasks} tasks under faults", flush=True)
        started = time.monotonic()
        with ThreadPoolExecutor(8) as pool:
            creating = [
                pool.submit(create, api_urls, key, index, body, tally)
                for index, body in enumerate(bodies)
            ]
            run_faults(workers, api, database, seaweed.process, tally)
            last_fault = time.monotonic()
            for future in creating:
                future.result()
        print(f"faults done after {last_fault - started:.0f} s; waiting for the tasks", flush=True)
        task_ids = set(tally.accepted.values())
        deadline = last_fault + SETTLE_SECONDS
        tasks: list[Any] = []
        while True:
            checked = asyncio.run(ledger_checks(database))
            tasks = [row for row in checked["tasks"] if row["id"] in task_ids]
            open_tasks = [row for row in tasks if row["status"] not in ("completed", "failed")]
            if not open_tasks or time.monotonic() > deadline:
                break
            time.sleep(1)
        time.sleep(3)  # the last callbacks
        checked = asyncio.run(ledger_checks(database))
        tasks = [row for row in checked["tasks"] if row["id"] in task_ids]
        completed = [row for row in tasks if row["status"] == "completed"]
        failed = Counter(row["error_code"] for row in tasks if row["status"] == "failed")
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=30) as client:
            not_downloadable = 0
            for row in completed:
                task = client.get(f"{api_urls[1]}/v1/tasks/{row['id']}").json()
                if not downloadable_from_both(api_urls, task.get("results", [])):
                    not_downloadable += 1
        exited = [
            node.name for node in api + workers if not node.running
        ]  # every process we did not stop ourselves is still running
        for node in api + workers:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
                node.proc.wait(timeout=90)
        hook_server.shutdown()
        webhook_ids = Counter(webhook_id for webhook_id, _ in receiver.deliveries)
        duplicates = sum(webhook_ids.values()) - len(webhook_ids)
        called_back = {task_id for _, task_id in receiver.deliveries}
        finished_ids = {row["id"] for row in tasks if row["status"] in ("completed", "failed")}
        must_be_zero = {
            "tasks charged twice": sum(
                1
                for row in tasks
                if row["reserves"] > 1
                or row["refunds"] > 1
                or -row["net"] > (row["used_milli"] or 0)
            ),
            "failed tasks not refunded": sum(
                1 for row in tasks if row["status"] == "failed" and row["net"] != 0
            ),
            "accounts whose balance is not their ledger": checked["accounts_off"],
            "completed tasks not downloadable from both nodes": not_downloadable,
            f"tasks not terminal {SETTLE_SECONDS:g} s after the last fault": len(
                task_ids - finished_ids
            ),
            "processes that exited on their own": len(exited),
            "API restarts that did not exit 0": sum(1 for c in tally.restart_exit_codes if c != 0),
        }
        rows: list[tuple[str, object]] = [
            ("tasks requested", args.tasks),
            ("tasks accepted", len(task_ids)),
            ("creates refused (4xx)", dict(tally.refused) or 0),
            ("completed", len(completed)),
            ("failed, by code", dict(failed) or 0),
            ("workers SIGKILLed (and replaced)", tally.kills),
            ("API node restarts", tally.restarts),
            ("PostgreSQL cuts (every backend terminated)", tally.cuts),
            ("S3 server SIGSTOPped for 5 s", tally.storage_stops),
            ("callbacks received (deliveries)", len(receiver.deliveries)),
            ("duplicate deliveries (same webhook-id again)", duplicates),
            ("finished tasks with no callback received", len(finished_ids - called_back)),
            ("run time, s", round(last_fault - started)),
        ]
        must_be_zero = {f"{name} (must be 0)": value for name, value in must_be_zero.items()}
        width = max(len(name) for name, _ in rows + list(must_be_zero.items()))
        print(f"\n| {'measure':<{width}} | value |\n| {'-' * width} | ---: |")
        for name, value in rows:
            print(f"| {name:<{width}} | {value} |")
        for name, value in must_be_zero.items():
            print(f"| {name:<{width}} | {value} |")
        if exited:
            print(f"\nexited on their own: {exited}; logs in {root}")
        return 1 if any(must_be_zero.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
