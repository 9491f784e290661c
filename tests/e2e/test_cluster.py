"""A cluster of real processes sharing only PostgreSQL and an S3 store (SeaweedFS): two
``serve --no-worker`` API nodes and two ``worker`` processes, each with its own empty data dir.

What crosses machines must not depend on a local disk: a result made by a worker downloads
through either API node, an upload made on one node feeds a task created on the other, a worker
killed mid-task leaves the task to the other worker (billed once), and ending every database
connection mid-run leaves every process running and every task finished."""

from __future__ import annotations

import io
import json
import secrets
import signal
import subprocess
import threading
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from PIL import Image

from e2e.test_server_process import (
    QWENEDIT,
    environment,
    finished,
    free_port,
    process,
    wait_until,
)
from support.image_server import ImageServer, serve_images
from support.images import data_uri, png_bytes
from support.postgres import PG_HOST, _fetch, fresh_database, require_postgres, terminate_backends
from support.seaweed import SeaweedS3, seaweed  # noqa: F401 - the session's S3 server

pytestmark = [pytest.mark.slow, pytest.mark.postgres]


@dataclass
class Cluster:
    database: str
    api: list[str]
    """Base URLs of the two API nodes."""
    workers: list[subprocess.Popen[bytes]]
    processes: list[subprocess.Popen[bytes]]
    start_worker: Callable[[str], subprocess.Popen[bytes]]
    images: ImageServer
    key: str

    def client(self, node: int) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.key}"}
        return httpx.Client(base_url=self.api[node], headers=headers, timeout=30)

    def through(self, node: int, url: str) -> str:
        """``url`` (a link any node hands out) sent to API node ``node`` instead."""
        parts = urlsplit(url)
        return self.api[node] + parts.path + "?" + parts.query

    def worker_holding(self, task_id: str) -> subprocess.Popen[bytes]:
        [row] = _fetch(self.database, "SELECT worker_id FROM tasks WHERE id = $1", task_id)
        [holder] = [w for w in self.workers if f"-{w.pid}-" in row["worker_id"]]
        return holder

    def credits(self) -> float:
        [row] = _fetch(self.database, "SELECT balance_milli FROM accounts WHERE name = 'e2e'")
        [ledger] = _fetch(
            self.database,
            "SELECT sum(amount_milli) AS total FROM ledger JOIN accounts a ON a.id = account_id "
            "WHERE a.name = 'e2e'",
        )
        assert row["balance_milli"] == ledger["total"]
        return float(row["balance_milli"]) / 1000


def ready(base: str) -> bool:
    return httpx.get(f"{base}/readyz").status_code == 200


@pytest.fixture(scope="module")
def cluster(
    tmp_path_factory: pytest.TempPathFactory,
    seaweed: SeaweedS3,  # noqa: F811
) -> Iterator[Cluster]:
    require_postgres()
    root = tmp_path_factory.mktemp("cluster")
    ports = [free_port(), free_port()]
    api = [f"http://127.0.0.1:{port}" for port in ports]
    with (
        fresh_database() as database,
        serve_images({"in.png": png_bytes(512, 384)}) as images,
        ExitStack() as stack,
    ):
        shared = {
            "QWENEDIT_DATABASE_URL": f"{PG_HOST}/{database}",
            "QWENEDIT_SECRET_KEY": secrets.token_urlsafe(32),
            "QWENEDIT_STORAGE_URL": f"s3://{seaweed.bucket}/cluster-{secrets.token_hex(4)}",
            "QWENEDIT_PUBLIC_URL": api[0],
            "QWENEDIT_ENGINE": "tiny",
            "QWENEDIT_LEASE_SECONDS": "3",
            "QWENEDIT_ALLOW_PRIVATE_NETWORK": "127.0.0.0/8",
            "AWS_ENDPOINT_URL": seaweed.endpoint,
            "AWS_ACCESS_KEY_ID": seaweed.access_key_id,
            "AWS_SECRET_ACCESS_KEY": seaweed.secret_access_key,
            "AWS_REGION": seaweed.region,
        }

        def env_for(name: str) -> dict[str, str]:
            return environment(root / name, **shared)

        admin = env_for("admin")
        subprocess.run([QWENEDIT, "db", "upgrade"], env=admin, check=True, capture_output=True)
        processes = [
            stack.enter_context(
                process(
                    ["serve", "--no-worker", "--port", str(port)],
                    env_for(f"api-{index}"),
                    root / f"api-{index}.log",
                )
            )
            for index, port in enumerate(ports)
        ]

        def start_worker(name: str) -> subprocess.Popen[bytes]:
            return stack.enter_context(process(["worker"], env_for(name), root / f"{name}.log"))

        workers = [start_worker(f"worker-{index}") for index in range(2)]
        created = subprocess.run(
            [QWENEDIT, "keys", "create", "--account", "e2e", "--credits", "100", "--json"],
            env=admin,
            check=True,
            capture_output=True,
            text=True,
        )
        key = str(json.loads(created.stdout)["api_key"])
        for base in api:
            wait_until(partial(ready, base), 180, f"{base} to be ready")
        yield Cluster(database, api, workers, processes + workers, start_worker, images, key)
        for proc in processes + workers:
            assert proc.poll() is None, f"a cluster process exited on its own: {proc.args!r}"


def edit_body(*urls: str, **extra: Any) -> dict[str, Any]:
    return {"prompt": "p", "image_urls": list(urls), "prompt_extend": False, **extra}


def test_a_result_made_by_a_worker_downloads_through_either_node(cluster: Cluster) -> None:
    with cluster.client(0) as on_a, cluster.client(1) as on_b:
        task = on_a.post("/v1/images/generations", json=edit_body(data_uri(png_bytes()))).json()
        done = wait_until(lambda: finished(on_b, task["id"]), 120, "the task, read on node B")
        assert done["status"] == "completed", done
        for node in (0, 1):
            image = httpx.get(cluster.through(node, done["results"][0]), timeout=30)
            assert image.status_code == 200, (node, image.text)
            assert Image.open(io.BytesIO(image.content)).format == "PNG"


def test_an_upload_on_one_node_feeds_a_task_created_on_the_other(cluster: Cluster) -> None:
    with cluster.client(0) as on_a, cluster.client(1) as on_b:
        files = {"file": ("in.png", png_bytes(512, 512), "image/png")}
        uploaded = on_b.post("/v1/files", files=files).json()
        task = on_a.post("/v1/images/generations", json=edit_body(uploaded["url"])).json()
        assert "id" in task, task
        done = wait_until(lambda: finished(on_a, task["id"]), 120, "the task")
        assert done["status"] == "completed", done


def test_a_worker_killed_mid_task_leaves_it_to_the_other_billed_once(cluster: Cluster) -> None:
    gate = threading.Event()
    cluster.images.stall["in.png"] = gate
    cluster.images.stall_once.add("in.png")
    before = cluster.credits()
    with cluster.client(1) as client:
        body = edit_body(cluster.images.url("in.png"), seed=3)
        task = client.post("/v1/images/generations", json=body).json()
        wait_until(lambda: cluster.images.hits.get("in.png") == 1, 120, "a worker to fetch")
        victim = cluster.worker_holding(task["id"])
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=30)
        done = wait_until(lambda: finished(client, task["id"]), 180, "the other worker")
    gate.set()
    assert done["status"] == "completed", done
    assert f"/{task['id']}/2/0.png" in done["results"][0]
    assert done["usage"]["credits_used"] == 1
    assert cluster.credits() == before - 1
    replacement = cluster.start_worker(f"worker-{victim.pid}-replacement")
    cluster.workers[cluster.workers.index(victim)] = replacement
    cluster.processes[cluster.processes.index(victim)] = replacement


def test_every_connection_ended_mid_run_leaves_every_process_running(cluster: Cluster) -> None:
    before = cluster.credits()
    with cluster.client(0) as on_a, cluster.client(1) as on_b:
        tasks = [
            (on_a if index % 2 else on_b)
            .post("/v1/images/generations", json=edit_body(data_uri(png_bytes()), seed=index))
            .json()
            for index in range(6)
        ]
        for _ in range(3):
            assert terminate_backends(cluster.database) > 0
            wait_until(lambda: ready(cluster.api[0]), 60, "node A to be ready again")
        done = [wait_until(partial(finished, on_b, t["id"]), 180, t["id"]) for t in tasks]
    assert [task["status"] for task in done] == ["completed"] * 6, done
    assert cluster.credits() == before - 6
    for proc in cluster.processes:
        assert proc.poll() is None, f"{proc.args!r} exited with {proc.returncode}"
