"""The clients against the real server process: ``qwenedit.client`` (sync and async) and the
task event stream. The API node runs without a worker until a test starts one, so queue
positions and cancellations are seen before anything runs."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from e2e.test_server_process import (
    QWENEDIT,
    create_key,
    environment,
    free_port,
    process,
    wait_until,
)
from qwenedit.client import (
    AsyncClient,
    BadRequestError,
    Client,
    NotFoundError,
    RateLimitError,
    Task,
    TaskFailed,
)
from support.images import data_uri, png_bytes

pytestmark = pytest.mark.slow
HOUSE = Path(__file__).parents[2] / "examples" / "house.png"
MAX_STREAMS = 2


@dataclass
class Server:
    base_url: str
    key: str
    env: dict[str, str]
    start_worker: Callable[[], None]

    def client(self) -> Client:
        return Client(self.base_url, self.key)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    tmp = tmp_path_factory.mktemp("clients")
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    env = environment(
        tmp / "data",
        QWENEDIT_ENGINE="tiny",
        QWENEDIT_PUBLIC_URL=base,
        QWENEDIT_MAX_STREAMS_PER_ACCOUNT=str(MAX_STREAMS),
    )
    with ExitStack() as stack:
        stack.enter_context(
            process(["serve", "--no-worker", "--port", str(port)], env, tmp / "api.log")
        )
        wait_until(lambda: httpx.get(f"{base}/healthz").status_code == 200, 60, "healthz")
        key = create_key(env, credits=100)

        def start_worker() -> None:
            if not started:
                started.append(stack.enter_context(process(["worker"], env, tmp / "worker.log")))

        started: list[object] = []
        yield Server(base, key, env, start_worker)


def cli_edit(server: Server, *args: str) -> subprocess.Popen[str]:
    """``qwenedit edit`` against the server, the key and URL given as flags."""
    command = [QWENEDIT, "edit", *args, "--server", server.base_url, "--key", server.key]
    return subprocess.Popen(
        command, env=server.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def created_task(edit: subprocess.Popen[str]) -> str:
    """The task id the command prints on stderr once it has created the task."""
    assert edit.stderr is not None
    first = edit.stderr.readline()
    assert first.startswith("task "), first
    return first.split()[1]


def events(server: Server, task_id: str, last_event_id: str | None = None) -> list[str]:
    """The ids of the task events one stream sends until it ends."""
    headers = {"Authorization": f"Bearer {server.key}"}
    if last_event_id is not None:
        headers["Last-Event-ID"] = last_event_id
    url = f"{server.base_url}/v1/tasks/{task_id}/events"
    with httpx.stream("GET", url, headers=headers, timeout=30) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        return [line[4:] for line in response.iter_lines() if line.startswith("id: ")]


def test_event_streams_are_bounded_per_account(server: Server) -> None:
    with server.client() as client:
        task = client.tasks.create("p", [data_uri(png_bytes(512, 512))])
        url = f"{server.base_url}/v1/tasks/{task.id}/events"
        headers = {"Authorization": f"Bearer {server.key}"}
        with ExitStack() as streams:
            lines = []  # a line iterator that is dropped closes its stream
            for _ in range(MAX_STREAMS):
                opened = streams.enter_context(httpx.stream("GET", url, headers=headers))
                lines.append(opened.iter_lines())
                assert next(lines[-1]) == "retry: 1000"
            refused = httpx.get(url, headers=headers)
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["type"] == "rate_limit_error"
            started = time.monotonic()
            with pytest.raises(RateLimitError) as raised:
                client.request("GET", f"/v1/tasks/{task.id}/events")
            assert time.monotonic() - started >= 3  # retried after each Retry-After
            assert raised.value.status == 429
        client.tasks.cancel(task.id)


def test_cancelled_edit_raises_task_failed_with_the_refund(server: Server) -> None:
    with server.client() as client:
        before = client.credits().balance
        pending = threading.Event()
        seen: list[Task] = []
        failure: list[BaseException] = []

        def on_update(task: Task) -> None:
            seen.append(task)
            pending.set()

        def edit() -> None:
            try:
                client.edit("add a hat", [HOUSE], on_update=on_update, timeout=60)
            except BaseException as exc:
                failure.append(exc)

        runner = threading.Thread(target=edit)
        runner.start()
        assert pending.wait(30)
        assert seen[0].status == "pending" and seen[0].queue_position == 0
        cancelled = client.tasks.cancel(seen[0].id)
        runner.join(30)
        assert cancelled.error_code == "request_cancelled"
        [error] = failure
        assert isinstance(error, TaskFailed)
        assert (error.task_id, error.code) == (seen[0].id, "request_cancelled")
        assert client.credits().balance == before


def test_errors_carry_the_envelope(server: Server) -> None:
    with server.client() as client:
        with pytest.raises(BadRequestError) as bad:
            client.tasks.create("p", [data_uri(png_bytes(512, 512))], n=9)
        assert (bad.value.status, bad.value.param) == (400, "n")
        assert bad.value.type == "invalid_request_error"
        with pytest.raises(NotFoundError):
            client.tasks.get("task-unified-1757156493-aaaaaaaa")
        with pytest.raises(BadRequestError) as small:
            client.files.upload(png_bytes(100, 100))
        assert small.value.status == 400


def test_cli_ctrl_c_cancels_the_task_and_exits_130(server: Server, tmp_path: Path) -> None:
    with server.client() as client:
        before = client.credits().balance
        edit = cli_edit(server, str(HOUSE), "--prompt", "add a hat", "-o", str(tmp_path))
        task_id = created_task(edit)
        assert client.tasks.get(task_id).status == "pending"
        edit.send_signal(signal.SIGINT)
        _, stderr = edit.communicate(timeout=30)
        assert edit.returncode == 130, stderr
        assert f"cancelled {task_id}; refunded 1 credits" in stderr
        assert client.tasks.get(task_id).error_code == "request_cancelled"
        assert client.credits().balance == before
    assert not list(tmp_path.iterdir())


def test_cli_failed_task_exits_1_with_its_code(server: Server) -> None:
    with server.client() as client:
        edit = cli_edit(server, str(HOUSE), "--prompt", "add a hat", "--json")
        client.tasks.cancel(created_task(edit))
        stdout, stderr = edit.communicate(timeout=30)
    assert edit.returncode == 1
    assert "failed: request_cancelled: The task was cancelled" in stderr.splitlines()
    assert json.loads(stdout)["error"]["code"] == "request_cancelled"


def test_cli_refused_request_exits_1(server: Server) -> None:
    edit = cli_edit(server, str(HOUSE), "--prompt", "x", "-n", "9")
    _, stderr = edit.communicate(timeout=60)
    assert edit.returncode == 1
    assert "400 invalid_request_error" in stderr and "(param: n)" in stderr


def test_openai_client_that_goes_away_cancels_its_task(server: Server) -> None:
    with server.client() as client:
        before = client.credits().balance
        with pytest.raises(httpx.ReadTimeout), HOUSE.open("rb") as image:
            httpx.post(
                f"{server.base_url}/v1/images/edits",
                headers={"Authorization": f"Bearer {server.key}"},
                files={"image": image},
                data={"prompt": "add a hat"},
                timeout=httpx.Timeout(3.0, connect=5.0),
            )
        wait_until(lambda: client.credits().balance == before, 30, "the refund")


def test_openai_errors_and_models(server: Server) -> None:
    api = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.key, max_retries=0)
    with api, HOUSE.open("rb") as image:
        with pytest.raises(openai.BadRequestError) as bad:
            api.images.edit(image=image, prompt="add a hat", n=9)
        assert bad.value.status_code == 400
        assert isinstance(bad.value.body, dict)
        assert (bad.value.body["param"], bad.value.body["type"]) == ("n", "invalid_request_error")
        assert [model.id for model in api.models.list()] == ["qwen-image-edit-plus"]
    wrong = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key="qe_wrong", max_retries=0)
    with wrong, pytest.raises(openai.AuthenticationError) as refused:
        wrong.models.list()
    assert isinstance(refused.value.body, dict)
    assert refused.value.body["type"] == "authentication_error"


def test_queue_positions_and_events_follow_tasks_to_the_end(server: Server) -> None:
    with server.client() as client:
        image = client.files.upload(HOUSE).url
        made = [client.tasks.create("make it blue", [image], n=n) for n in (1, 2, 1)]
        read = [client.tasks.get(task.id) for task in made]
        assert [task.queue_position for task in read] == [0, 1, 2]
        assert read[2].estimated_time >= read[0].estimated_time
        updates: list[Task] = []
        waiter = threading.Thread(
            target=lambda: client.tasks.wait(made[2].id, on_update=updates.append, timeout=120)
        )
        waiter.start()
        wait_until(lambda: updates, 10, "the first update")
        server.start_worker()
        waiter.join(150)
        assert not waiter.is_alive()
    assert updates[0].queue_position == 2
    assert updates[-1].status == "completed" and updates[-1].progress == 100
    positions = [u.queue_position or 0 for u in updates if u.status == "pending"]
    assert positions == sorted(positions, reverse=True)
    assert all(u.queue_position is None for u in updates if u.status != "pending")
    progress = [u.progress for u in updates]
    assert progress == sorted(progress)
    assert len({(u.status, u.progress, u.queue_position) for u in updates}) == len(updates)
    assert events(server, made[2].id) == ["completed.100.-"]
    assert events(server, made[2].id, last_event_id="completed.100.-") == []


def test_sync_edit_uploads_waits_and_saves(server: Server, tmp_path: Path) -> None:
    server.start_worker()
    with server.client() as client:
        before = client.credits().balance
        updates: list[Task] = []
        task = client.edit(
            "add a red hat",
            [HOUSE, png_bytes(512, 512)],
            n=2,
            seed=11,
            watermark=True,
            on_update=updates.append,
            timeout=120,
        )
        assert task.status == "completed" and task.seed == 11
        assert updates[-1] == task
        paths = task.save(tmp_path / "out")
        assert [path.name for path in paths] == [f"{task.id}-0.png", f"{task.id}-1.png"]
        for path in paths:
            with Image.open(path) as saved:
                assert saved.format == "PNG" and saved.width > 0
        assert client.credits().balance == before - 2


async def test_async_edit_with_pil_image_and_url(server: Server, tmp_path: Path) -> None:
    server.start_worker()
    picture = Image.open(io.BytesIO(png_bytes(640, 512)))
    seen: list[str] = []

    async def on_update(task: Task) -> None:
        await asyncio.sleep(0)
        seen.append(task.status)

    async with AsyncClient(server.base_url, server.key) as client:
        started = time.monotonic()
        task = await client.edit(
            "make it night",
            [picture, data_uri(png_bytes(512, 512))],
            size="512x512",
            on_update=on_update,
            timeout=120,
        )
        assert time.monotonic() - started < 120
        [path] = await task.save_async(tmp_path)
        with Image.open(path) as saved:
            assert saved.size == (512, 512)
        again = await client.tasks.get(task.id)
        assert again.results == task.results
    assert seen[-1] == "completed"


def test_cli_edit_saves_the_results(server: Server, tmp_path: Path) -> None:
    server.start_worker()
    edit = cli_edit(server, str(HOUSE), "-p", "add a hat", "-n", "2", "-o", str(tmp_path))
    stdout, stderr = edit.communicate(timeout=120)
    assert edit.returncode == 0, stderr
    paths = [Path(line) for line in stdout.splitlines()]
    assert len(paths) == 2 and all(path.parent == tmp_path for path in paths)
    for path in paths:
        with Image.open(path) as saved:
            assert saved.format == "PNG"
    assert "completed" in stderr and "100%" in stderr
    as_json = cli_edit(server, str(HOUSE), "-p", "x", "--json", "-o", str(tmp_path / "j"))
    stdout, stderr = as_json.communicate(timeout=120)
    assert as_json.returncode == 0, stderr
    task = json.loads(stdout)
    assert task["status"] == "completed" and len(task["results"]) == 1
    assert stderr == f"task {task['id']}\n"  # no bar


def test_openai_package_edits_in_both_response_formats(server: Server) -> None:
    server.start_worker()
    api = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=server.key, max_retries=0)
    with api, server.client() as client:
        before = client.credits().balance
        with HOUSE.open("rb") as image:
            linked = api.images.edit(
                model="qwen-image-edit-plus",
                image=image,
                prompt="add a red hat",
                n=2,
                response_format="url",
            )
        assert linked.data is not None and len(linked.data) == 2
        for item in linked.data:
            assert item.url is not None and item.b64_json is None
            with Image.open(io.BytesIO(httpx.get(item.url).raise_for_status().content)) as got:
                assert got.format == "PNG"
        with HOUSE.open("rb") as first, HOUSE.open("rb") as second:
            inline = api.images.edit(
                image=[first, second],
                prompt="make it night",
                size="512x512",
                response_format="b64_json",
            )
        assert inline.data is not None
        [item] = inline.data
        assert item.b64_json is not None and item.url is None
        with Image.open(io.BytesIO(base64.b64decode(item.b64_json))) as got:
            assert got.size == (512, 512)
        assert client.credits().balance == before - 3
