"""A node rides out database outages (issue 9): the app runs in-process against the real
PostgreSQL, reached through a TCP proxy the test cuts, and every backend of the test database is
ended with ``pg_terminate_backend``. Every background loop keeps going, a running task finishes
once and is billed once, and the outage is logged once when it starts and once when it ends.

SQLite is a file in this process: it has no outage to ride out, so these run on PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import pytest

from qwenedit.resilience import DATABASE, dependency_of
from qwenedit.services import events
from qwenedit.store.database import Database
from qwenedit.store.queue import QueueRepo
from qwenedit.store.tasks import TaskRepo
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import ScriptedServer, scripted_server
from support.images import data_uri, png_bytes
from support.postgres import PG_PORT, terminate_backends
from support.tcp_proxy import TcpProxy, tcp_proxy

pytestmark = pytest.mark.postgres
LOOPS = ("reaper", "callback dispatcher", "claim", "heartbeat")
"""Callers every node with a worker has polling the database (names in the recovery line)."""


@pytest.fixture
def proxy() -> Iterator[TcpProxy]:
    with tcp_proxy(PG_PORT) as proxy:
        yield proxy


def through(url: str, proxy: TcpProxy) -> str:
    return url.replace(f"@127.0.0.1:{PG_PORT}/", f"@127.0.0.1:{proxy.port}/")


def database_of(url: str) -> str:
    return url.rsplit("/", 1)[1]


@asynccontextmanager
async def outage(proxy: TcpProxy, url: str, *, hang: bool = False) -> AsyncIterator[None]:
    """Inside the block the database cannot be reached: the proxy refuses connections (or
    accepts and never answers), and every backend of the test database has been ended."""
    if hang:
        proxy.hang()
    else:
        proxy.cut()
    await asyncio.to_thread(terminate_backends, database_of(url))
    try:
        yield
    finally:
        proxy.restore()


def edit(**extra: object) -> dict[str, object]:
    return {
        "model": "qwen-image-edit-plus",
        "prompt": "make it blue",
        "image_urls": [data_uri(png_bytes(400, 400))],
        **extra,
    }


def outage_lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        record.getMessage()
        for record in caplog.records
        if record.name == "qwenedit.resilience" and record.levelno == level
    ]


async def wait_for_recovery(caplog: pytest.LogCaptureFixture, timeout: float = 20) -> str:
    deadline = time.monotonic() + timeout
    while not (lines := outage_lines(caplog, logging.INFO)):
        if time.monotonic() > deadline:
            raise AssertionError("the outage never ended in the log")
        await asyncio.sleep(0.05)
    [line] = lines
    return line


def assert_logged_once(caplog: pytest.LogCaptureFixture, recovered: str) -> None:
    [started] = outage_lines(caplog, logging.WARNING)
    assert started.startswith("database unavailable: ")
    assert recovered.startswith("database reachable again after ")
    assert outage_lines(caplog, logging.INFO) == [recovered]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a loop died or erred"
    assert not [r for r in caplog.records if r.name == "qwenedit.resilience" and r.exc_info]


def assert_loops_running() -> None:
    running = {task.get_name() for task in asyncio.all_tasks() if not task.done()}
    assert {"reaper", "callback-dispatcher", "worker-0"} <= running
    assert any(name.endswith("-w0-beat") for name in running)


async def balance_equals_ledger(app: RunningApp, account: str) -> int:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    assert found.balance_milli == await app.runtime.accounts.ledger_sum(found.id)
    return found.balance_milli


async def wait_for_request(server: ScriptedServer, path: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not server.requests_for(path):
        if time.monotonic() > deadline:
            raise AssertionError(f"no request to {path}")
        await asyncio.sleep(0.05)


async def readyz(app: RunningApp) -> tuple[int, dict[str, Any]]:
    """Readiness, which must answer within a few seconds whatever the database does."""
    response = await asyncio.wait_for(app.client.get("/readyz"), timeout=5)
    return response.status_code, response.json()


async def wait_ready(app: RunningApp, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while (await readyz(app))[0] != 200:
        if time.monotonic() > deadline:
            raise AssertionError("never ready")
        await asyncio.sleep(0.1)


async def test_a_refused_database_connection_is_a_database_outage() -> None:
    """A refused connect reaches the loops as a bare ``ConnectionRefusedError``."""
    with tcp_proxy(PG_PORT) as proxy:
        url = f"postgresql+asyncpg://postgres@127.0.0.1:{proxy.port}/postgres"
        proxy.cut()
        db = Database.connect(url)
        try:
            with pytest.raises(OSError) as raised:
                await db.ping()
        finally:
            await db.close()
    assert dependency_of(raised.value) == DATABASE


async def test_a_connection_the_server_ended_during_set_up_is_a_database_outage(
    pg_url: str,
) -> None:
    """SQLAlchemy sets up codecs on each new connection before its first statement; a
    connection the server ends in between gives asyncpg's bare ``InterfaceError``, unwrapped."""
    connection = await asyncpg.connect(pg_url.replace("+asyncpg", ""), timeout=10)
    try:
        await asyncio.to_thread(terminate_backends, database_of(pg_url))
        deadline = time.monotonic() + 10
        while not connection.is_closed():
            assert time.monotonic() < deadline, "the server never ended the connection"
            await asyncio.sleep(0.01)
        with pytest.raises(asyncpg.InterfaceError) as raised:
            await connection.set_type_codec("json", encoder=str, decoder=str, schema="pg_catalog")
    finally:
        connection.terminate()
    assert dependency_of(raised.value) == DATABASE


async def test_an_idle_node_rides_out_an_outage(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(through(pg_url, proxy), tmp_path, allow_insecure_callbacks=True)
    with scripted_server() as receiver:
        async with running_app(settings, SteppingEngine(steps=2)) as app:
            key = await app.new_key("acme", credits=10)
            await wait_ready(app)
            async with outage(proxy, pg_url):
                await asyncio.sleep(2)  # every loop polls the database within 0.5 s
                status, body = await readyz(app)
                assert status == 503
                assert body["checks"]["database"] is False
            recovered = await wait_for_recovery(caplog)
            assert_loops_running()
            await wait_ready(app)
            task = (await app.create(key, edit(callback_url=receiver.url("hook")))).json()
            done = await app.wait_for(key, task["id"])
            assert done["status"] == "completed", done
            await wait_for_request(receiver, "/hook")
            assert await balance_equals_ledger(app, "acme") == 9000
    assert_logged_once(caplog, recovered)
    for loop in LOOPS:
        assert loop in recovered


async def test_a_running_task_rides_out_an_outage_and_is_billed_once(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Heartbeats and progress fail while the engine runs on; its commit waits for the
    database and lands, the lease (5 s) being still this attempt's."""
    caplog.set_level(logging.INFO)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(through(pg_url, proxy), tmp_path)
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=10)
        task = (await app.create(key, edit())).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        async with outage(proxy, pg_url):
            await asyncio.sleep(1.5)  # three heartbeats are due meanwhile
            engine.release.set()  # the engine finishes during the outage
            await asyncio.sleep(1)
        recovered = await wait_for_recovery(caplog)
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        assert f"/{task['id']}/1/0.png" in done["results"][0]
        assert len(engine.jobs) == 1  # never interrupted, never run again
        assert done["usage"]["credits_used"] == 1
        assert await balance_equals_ledger(app, "acme") == 9000
        assert (await app.client.get(done["results"][0])).status_code == 200
        assert_loops_running()
    assert_logged_once(caplog, recovered)
    assert f"w0 lease {task['id']}" in recovered
    assert f"w0 finalize {task['id']}" in recovered


async def test_a_lease_lost_in_an_outage_ends_in_one_completion_billed_once(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The outage outlasts the lease. Whether the first attempt's heartbeat or the reaper
    reaches the database first, the fence lets exactly one attempt complete and charge."""
    caplog.set_level(logging.INFO)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(
        through(pg_url, proxy), tmp_path, lease_seconds=1.5, heartbeat_seconds=0.5
    )
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=10)
        task = (await app.create(key, edit())).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        async with outage(proxy, pg_url):
            await asyncio.sleep(3)
        engine.release.set()
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        assert done["usage"]["credits_used"] == 1
        assert await balance_equals_ledger(app, "acme") == 9000
        assert (await app.client.get(done["results"][0])).status_code == 200
        kept = sorted(path.name for path in (tmp_path / "blobs" / task["id"]).iterdir())
        assert kept == [done["results"][0].split(f"/{task['id']}/")[1].split("/")[0]]
        assert_loops_running()
        recovered = await wait_for_recovery(caplog)
    assert_logged_once(caplog, recovered)


async def wait_for_file(path: Path, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        await asyncio.sleep(0.05)


@pytest.fixture
async def other_node(pg_url: str) -> AsyncIterator[Database]:
    """The same database as another node sees it: directly, not through the cut proxy."""
    db = Database.connect(pg_url)
    yield db
    await db.close()


async def test_an_attempt_fenced_out_during_an_outage_is_discarded(
    pg_url: str,
    proxy: TcpProxy,
    other_node: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Another node's reaper requeues the task while this node cannot reach the database. The
    attempt's commit, retried after the outage, is fenced out and its files are deleted; the
    next attempt completes, and the task is billed once."""
    caplog.set_level(logging.INFO)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(
        through(pg_url, proxy), tmp_path, lease_seconds=1.5, heartbeat_seconds=0.5
    )
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=10)
        task = (await app.create(key, edit())).json()
        files = tmp_path / "blobs" / task["id"]
        assert await asyncio.to_thread(engine.holding.wait, 30)
        async with outage(proxy, pg_url):
            await asyncio.sleep(2)  # the lease runs out
            reaped = await QueueRepo(other_node).reap(max_attempts=3)
            assert reaped.requeued == [task["id"]]
            engine.release.set()
            await wait_for_file(files / "1" / "0.png")  # stored; the commit waits
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        assert f"/{task['id']}/2/0.png" in done["results"][0]
        assert sorted(path.name for path in files.iterdir()) == ["2"]
        assert len(engine.jobs) == 2
        assert done["usage"]["credits_used"] == 1
        assert await balance_equals_ledger(app, "acme") == 9000
        recovered = await wait_for_recovery(caplog)
    assert_logged_once(caplog, recovered)
    assert f"task {task['id']}: attempt 1 lost its lease; result discarded" in caplog.messages


async def test_a_commit_that_landed_unseen_in_an_outage_is_kept(
    pg_url: str,
    proxy: TcpProxy,
    other_node: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The worker's commit reaches the database but its answer is lost with the connection
    (done here from the other connection, with the worker's own fence). The retried commit is
    then fenced out by that very commit: the worker must keep the files, not discard them."""
    caplog.set_level(logging.INFO)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(through(pg_url, proxy), tmp_path)
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=10)
        account = await app.runtime.accounts.get_by_name("acme")
        assert account is not None
        task = (await app.create(key, edit())).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        tasks = TaskRepo(other_node)
        claimed = await tasks.get(task["id"], account.id, retention_seconds=3600)
        assert claimed.worker_id is not None
        async with outage(proxy, pg_url):
            engine.release.set()
            await wait_for_file(tmp_path / "blobs" / task["id"] / "1" / "0.png")
            landed = await tasks.complete(
                task["id"],
                claimed.worker_id,
                claimed.attempt,
                result_keys=[f"{task['id']}/1/0.png"],
                actual_prompt=None,
                engine_seconds=0.1,
            )
            assert landed is not None
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        await wait_for_recovery(caplog)
        assert (await app.client.get(done["results"][0])).status_code == 200
        assert len(engine.jobs) == 1
        assert await balance_equals_ledger(app, "acme") == 9000
    assert not [message for message in caplog.messages if "discarded" in message]
    assert f"task {task['id']} completed: 1 image(s)" in caplog.text


async def test_a_stopping_worker_hands_its_task_back_through_an_outage(
    pg_url: str,
    proxy: TcpProxy,
    other_node: Database,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Shutdown during an outage: past the grace period (2 s) the worker gives its task back,
    and that write waits for the database instead of failing; the attempt is not counted."""
    caplog.set_level(logging.INFO)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(through(pg_url, proxy), tmp_path)
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=10)
        account = await app.runtime.accounts.get_by_name("acme")
        assert account is not None
        task = (await app.create(key, edit())).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        proxy.cut()
        await asyncio.to_thread(terminate_backends, database_of(pg_url))
        restore = asyncio.get_running_loop().call_later(4, proxy.restore)
    restore.cancel()
    released = await TaskRepo(other_node).get(task["id"], account.id, retention_seconds=3600)
    assert (released.status, released.attempt, released.worker_id) == ("pending", 0, None)
    assert f"task {task['id']} released by its stopping worker: True" in caplog.messages


async def test_readiness_answers_quickly_while_the_database_hangs(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(through(pg_url, proxy), tmp_path)
    async with running_app(settings, SteppingEngine(steps=2)) as app:
        key = await app.new_key("acme", credits=10)
        await wait_ready(app)
        async with outage(proxy, pg_url, hang=True):
            status, body = await readyz(app)
            assert status == 503
            assert body["checks"]["database"] is False
        await wait_ready(app)
        task = (await app.create(key, edit())).json()
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        assert_loops_running()


async def test_requests_during_an_outage_answer_503_with_retry_after(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(through(pg_url, proxy), tmp_path)
    async with running_app(settings) as app:
        key = await app.new_key("acme", credits=10)
        unseen = await app.new_key("beta")  # not in the key cache: checking it needs the database
        auth = {"Authorization": f"Bearer {key}"}
        async with outage(proxy, pg_url):
            answers = [
                await app.client.get("/v1/credits", headers=auth),
                await app.create(key, edit()),
                await app.client.get("/v1/credits", headers={"Authorization": f"Bearer {unseen}"}),
            ]
        for answer in answers:
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "2"
            error = answer.json()["error"]
            assert error["type"] == "service_unavailable_error"
            assert "database" not in error["message"]
        assert (await app.create(key, edit())).status_code == 200
        assert await balance_equals_ledger(app, "acme") == 9000
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not [r for r in caplog.records if r.name == "qwenedit.api.errors" and r.exc_info]


async def test_an_event_stream_stays_open_through_an_outage(
    pg_url: str, proxy: TcpProxy, tmp_path: Path
) -> None:
    settings = make_settings(through(pg_url, proxy), tmp_path, event_poll_seconds=0.05)
    async with running_app(settings) as app:
        key = await app.new_key("acme", credits=10)
        auth = {"Authorization": f"Bearer {key}"}
        task = (await app.create(key, edit())).json()
        caller = await app.runtime.callers.authenticate(key)
        assert caller is not None
        stream = asyncio.create_task(
            app.client.get(f"/v1/tasks/{task['id']}/events", headers=auth, timeout=30)
        )
        async with asyncio.timeout(10):  # the stream has started: its answer is under way
            while app.runtime.events.open_count(caller) == 0:
                await asyncio.sleep(0.01)
        async with outage(proxy, pg_url):
            await asyncio.sleep(0.5)  # ten polls fail
        cancel = await app.client.post(f"/v1/tasks/{task['id']}/cancel", headers=auth)
        assert cancel.status_code == 200
        answer = await asyncio.wait_for(stream, 20)
    assert answer.status_code == 200
    ids = [line[4:] for line in answer.text.splitlines() if line.startswith("id: ")]
    assert ids[0].startswith("pending.0.")
    assert ids[-1] == "failed.0.-"


async def test_an_event_stream_keeps_alive_while_the_database_hangs(
    pg_url: str, proxy: TcpProxy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events, "KEEPALIVE_SECONDS", 0.3)
    settings = make_settings(through(pg_url, proxy), tmp_path, event_poll_seconds=0.05)
    async with running_app(settings) as app:
        key = await app.new_key("acme", credits=10)
        task = (await app.create(key, edit())).json()
        caller = await app.runtime.callers.authenticate(key)
        assert caller is not None
        frames = await app.runtime.events.open(caller, task["id"], None)
        assert (await anext(frames)).startswith("retry:")
        assert (await anext(frames)).startswith("id: pending.0.")
        async with outage(proxy, pg_url, hang=True):
            for _ in range(3):  # a poll that hangs is given up after a keepalive's interval
                assert await asyncio.wait_for(anext(frames), 2) == ": keepalive\n\n"
        await frames.aclose()
