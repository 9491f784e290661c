"""Idle loops sleep until they are woken, and the slow fallback poll still finds what no
wake-up announced. Two apps on one SQLite file and data dir stand for two processes: one's
commits wake only its own loops, as on a node whose LISTEN connection went deaf."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from support.app import make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import Answer, scripted_server
from support.images import data_uri, png_bytes

NEVER = 600.0
"""A fallback poll no test waits for: only a wake-up can have done it."""


def edit(**extra: object) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": [data_uri(png_bytes(400, 400))], **extra}


@pytest.fixture
def sqlite_url(sqlite_template: Path, tmp_path: Path) -> str:
    path = tmp_path / "shared.db"
    shutil.copyfile(sqlite_template, path)
    return f"sqlite+aiosqlite:///{path}"


async def test_a_task_created_on_an_idle_node_is_claimed_at_once(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, poll_seconds=NEVER, callback_poll_seconds=NEVER)
    async with running_app(settings, SteppingEngine()) as app:
        key = await app.new_key("acme")
        task = (await app.create(key, edit())).json()
        done = await app.wait_for(key, task["id"], timeout=30)
    assert done["status"] == "completed", done


async def test_a_task_no_wake_up_announced_is_claimed_by_the_fallback_poll(
    sqlite_url: str, tmp_path: Path
) -> None:
    api = make_settings(sqlite_url, tmp_path)
    worker = make_settings(sqlite_url, tmp_path, poll_seconds=0.5)
    async with (
        running_app(api, housekeeping=False) as api_node,
        running_app(worker, SteppingEngine(), housekeeping=False),
    ):
        key = await api_node.new_key("acme")
        task = (await api_node.create(key, edit())).json()
        done = await api_node.wait_for(key, task["id"], timeout=30)
    assert done["status"] == "completed", done


async def test_a_callback_no_wake_up_announced_is_sent_by_the_fallback_poll(
    sqlite_url: str, tmp_path: Path
) -> None:
    insecure: dict[str, Any] = {"allow_insecure_callbacks": True}
    sender = make_settings(sqlite_url, tmp_path, callback_poll_seconds=0.5, **insecure)
    worker = make_settings(sqlite_url, tmp_path, **insecure)
    with scripted_server() as receiver:
        receiver.answers["/hook"] = Answer(status=204)
        async with running_app(sender):  # its dispatcher looks once, then sleeps
            async with running_app(worker, SteppingEngine(), housekeeping=False) as worker_node:
                key = await worker_node.new_key("acme")
                body = edit(callback_url=receiver.url("hook"))
                task = (await worker_node.create(key, body)).json()
                await worker_node.wait_for(key, task["id"], timeout=30)
            deadline = time.monotonic() + 30
            while not receiver.requests_for("hook"):
                assert time.monotonic() < deadline, "the callback was never sent"
                await asyncio.sleep(0.05)
    [sent] = receiver.requests_for("hook")
    assert task["id"].encode() in sent.body
