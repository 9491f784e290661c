"""Outcomes the review found untested: admission limits answer 429/503 with Retry-After at the
HTTP level, TASK_TIMEOUT ends a hung task with generation_timeout, an engine out of memory is
resource_exhausted, and a fenced-out attempt leaves no result files behind. Every failure is
refunded in full."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from qwenedit.engines.diffusers_engine import DiffusersEngine
from qwenedit.resilience import Outages
from qwenedit.worker.runner import Worker
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes


def edit(**extra: object) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": [data_uri(png_bytes(400, 400))], **extra}


async def balance(app: RunningApp, account: str) -> int:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    assert found.balance_milli == await app.runtime.accounts.ledger_sum(found.id)
    return found.balance_milli


async def test_the_active_task_limit_is_a_429_with_retry_after(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_active_per_account=1)
    async with running_app(settings) as app:  # no worker: the first task stays pending
        key = await app.new_key("acme", credits=5)
        assert (await app.create(key, edit())).status_code == 200
        refused = await app.create(key, edit())
        assert refused.status_code == 429
        assert refused.headers["retry-after"] == "5"
        assert refused.json()["error"]["type"] == "rate_limit_error"
        assert await balance(app, "acme") == 4000
        other = await app.new_key("globex", credits=5)
        assert (await app.create(other, edit())).status_code == 200  # per account


async def test_a_full_queue_is_a_503_with_retry_after(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_queue_depth=1)
    async with running_app(settings) as app:
        first = await app.new_key("acme", credits=5)
        second = await app.new_key("globex", credits=5)
        assert (await app.create(first, edit())).status_code == 200
        refused = await app.create(second, edit())
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "10"
        assert refused.json()["error"]["type"] == "service_unavailable_error"
        assert await balance(app, "globex") == 5000


async def test_task_timeout_ends_a_hung_task_with_generation_timeout(
    db_url: str, tmp_path: Path
) -> None:
    engine = SteppingEngine(steps=4, hold_at=2)  # never released: it hangs at step 2
    async with running_app(make_settings(db_url, tmp_path, task_timeout=1.0), engine) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(n=2))).json()
        done = await app.wait_for(key, created["id"], timeout=30)
        assert done["status"] == "failed"
        assert done["error"]["code"] == "generation_timeout"
        assert done["usage"]["credits_used"] == 0
        assert await balance(app, "acme") == 5000


class _Resize:
    def resize(self, image: Image.Image, height: int, width: int) -> Image.Image:
        return image.resize((width, height))


class OutOfMemoryPipeline:
    """What the engine sees of a pipeline whose GPU is full: the first allocation fails."""

    image_processor = _Resize()

    def encode_prompt(self, **_: Any) -> Any:
        raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


async def test_an_engine_out_of_memory_is_resource_exhausted(db_url: str, tmp_path: Path) -> None:
    engine = DiffusersEngine(
        OutOfMemoryPipeline(),
        name="oom",
        steps=2,
        true_cfg_scale=4.0,
        max_batch=1,
    )
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit())).json()
        done = await app.wait_for(key, created["id"], timeout=30)
        assert done["status"] == "failed"
        assert done["error"] == {
            "code": "resource_exhausted",
            "message": "The GPU ran out of memory",
        }
        assert await balance(app, "acme") == 5000


@pytest.mark.parametrize("fence", ["cancelled", "reassigned"])
async def test_a_fenced_out_attempt_deletes_its_result_files(
    db_url: str, tmp_path: Path, fence: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The attempt runs to the end and writes its files, then finds it no longer holds the
    task: the worker's log says so and the files are gone."""
    async with running_app(make_settings(db_url, tmp_path)) as app:  # the test is the worker
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(n=2))).json()
        rt = app.runtime
        task = await rt.queue.claim("stale-worker", 60.0)
        assert task is not None and task.id == created["id"]
        if fence == "cancelled":
            owner = await rt.accounts.get_by_name("acme")
            assert owner is not None
            await rt.tasks.cancel(task.id, owner.id)
        else:  # its lease was handed to another attempt
            await rt.queue.release(task.id, "stale-worker", task.attempt)
            assert (await rt.queue.claim("new-worker", 60.0)) is not None
        with caplog.at_level(logging.WARNING, logger="qwenedit.worker.runner"):
            stale = Worker(rt, SteppingEngine(steps=1), "stale-worker", outages=Outages())
            await stale.process(task, asyncio.Event(), lambda: None)
        assert f"task {task.id}: attempt 1 lost its lease; result discarded" in caplog.text
        for index in range(2):
            assert await rt.blobs.get(f"{task.id}/1/{index}.png") is None
        final = (await app.get(key, task.id)).json()
        assert "results" not in final
