"""A node rides out an outage of its S3 store (a real SeaweedFS behind a TCP proxy the test
cuts): the store's failures read as an outage, a task whose results cannot be written waits
until they can and completes once, and a request that needs the store answers 503 meanwhile."""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from qwenedit.blobs.factory import open_blob_store
from qwenedit.errors import StorageError, StorageUnavailable
from qwenedit.resilience import STORAGE, dependency_of
from support.app import make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes
from support.seaweed import SeaweedS3
from support.tcp_proxy import TcpProxy, tcp_proxy


@pytest.fixture
def proxy(seaweed: SeaweedS3) -> Iterator[TcpProxy]:
    port = urlsplit(seaweed.endpoint).port
    assert port is not None
    with tcp_proxy(port) as proxy:
        yield proxy


def through(seaweed: SeaweedS3, proxy: TcpProxy) -> dict[str, object]:
    """Settings for a store reached through ``proxy``, under a prefix of its own."""
    return seaweed.settings(secrets.token_hex(4), aws_endpoint_url=f"http://127.0.0.1:{proxy.port}")


async def test_an_unreachable_store_is_an_outage(
    seaweed: SeaweedS3, proxy: TcpProxy, tmp_path: Path
) -> None:
    blobs = open_blob_store(
        make_settings("sqlite+aiosqlite://", tmp_path, **through(seaweed, proxy))
    )
    try:
        await blobs.put("t/0.png", b"png")
        proxy.cut()
        for operation in (
            lambda: blobs.put("t/1.png", b"png"),
            lambda: blobs.get("t/0.png"),
            lambda: blobs.delete_prefix("t/"),
        ):
            with pytest.raises(StorageUnavailable) as raised:
                await operation()
            assert dependency_of(raised.value) == STORAGE
        proxy.restore()
        assert await blobs.get("t/0.png") == b"png"
    finally:
        blobs.close()


async def test_a_store_that_refuses_is_no_outage(seaweed: SeaweedS3, tmp_path: Path) -> None:
    """A bucket that is gone answers 404: waiting would not bring it back."""
    settings = seaweed.settings("p", storage_url="s3://qwenedit-gone/p")
    blobs = open_blob_store(make_settings("sqlite+aiosqlite://", tmp_path, **settings))
    try:
        with pytest.raises(StorageError) as raised:
            await blobs.put("t/0.png", b"png")
        assert not isinstance(raised.value, StorageUnavailable)
        assert dependency_of(raised.value) is None
    finally:
        blobs.close()


async def test_a_task_waits_out_a_store_outage_and_completes_once(
    db_url: str,
    seaweed: SeaweedS3,
    proxy: TcpProxy,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    settings = make_settings(db_url, tmp_path, **through(seaweed, proxy))
    engine = SteppingEngine(steps=2, hold_at=2)
    # No reaper: its sweep lists the store too, and only the task is to wait out this outage.
    async with running_app(settings, engine, housekeeping=False) as app:
        key = await app.new_key("acme", credits=10)
        auth = {"Authorization": f"Bearer {key}"}
        task = (
            await app.create(key, {"prompt": "blue", "image_urls": [data_uri(png_bytes(512, 384))]})
        ).json()
        assert await asyncio.to_thread(engine.holding.wait, 20)
        proxy.cut()
        engine.release.set()
        await asyncio.sleep(1.5)  # the result write fails and is tried again meanwhile
        during = await app.client.get(f"/v1/tasks/{task['id']}", headers=auth)
        assert during.json()["status"] == "processing"
        upload = await app.client.post(
            "/v1/files", headers=auth, files={"file": ("a.png", png_bytes(512, 384), "image/png")}
        )
        assert upload.status_code == 503, upload.text
        assert upload.headers["Retry-After"] == "2"
        proxy.restore()
        done = await app.wait_for(key, task["id"])
        assert done["status"] == "completed", done
        assert len(done["results"]) == 1
        found = await app.runtime.accounts.get_by_name("acme")
        assert found is not None
        assert found.balance_milli == 9000 == await app.runtime.accounts.ledger_sum(found.id)
    outage = [r.getMessage() for r in caplog.records if r.name == "qwenedit.resilience"]
    assert outage[0].startswith("storage unavailable: ")
    assert any(line.startswith("storage reachable again after ") for line in outage)
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
