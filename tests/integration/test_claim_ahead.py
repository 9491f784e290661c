"""A worker holds one task claimed ahead while the engine runs another (DESIGN §3): that task is
heartbeated, fenced and cancellable like the running one, and results and billing are as if the
tasks had run one after the other."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from qwenedit.domain.task import TaskRecord
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes


def edit(image: str, seed: int) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": [image], "seed": seed}


@pytest.fixture
def image() -> str:
    return data_uri(png_bytes(512, 384))


async def stored(app: RunningApp, account: str, task_id: str) -> TaskRecord:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    return await app.runtime.tasks.get(task_id, found.id, retention_seconds=3600)


async def balance_equals_ledger(app: RunningApp, account: str) -> int:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    assert found.balance_milli == await app.runtime.accounts.ledger_sum(found.id)
    return found.balance_milli


async def until(check: Any, attempts: int = 400) -> None:
    for _ in range(attempts):
        if await check():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the condition never held")


async def test_task_claimed_ahead_keeps_its_lease_and_can_be_cancelled(
    db_url: str, tmp_path: Path, image: str
) -> None:
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = make_settings(db_url, tmp_path, lease_seconds=2.0, heartbeat_seconds=0.5)
    async with running_app(settings, engine) as app:
        key = await app.new_key("acme", credits=5)
        running = (await app.create(key, edit(image, 1))).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        ahead = (await app.create(key, edit(image, 2))).json()
        await app.wait_for(key, ahead["id"], statuses=("processing",))
        claimed = await stored(app, "acme", ahead["id"])
        assert claimed.worker_id is not None
        assert claimed.lease_expires_at is not None

        async def lease_renewed_past_first_expiry() -> bool:
            now = await stored(app, "acme", ahead["id"])
            assert now.status.value == "processing"
            assert (now.worker_id, now.attempt) == (claimed.worker_id, claimed.attempt)
            assert now.lease_expires_at is not None and claimed.lease_expires_at is not None
            first_expiry = claimed.lease_expires_at + timedelta(seconds=settings.lease_seconds)
            return now.lease_expires_at > first_expiry

        # held past its first lease, the reaper running all along: heartbeated, never requeued
        await until(lease_renewed_past_first_expiry)

        headers = {"Authorization": f"Bearer {key}"}
        cancelled = await app.client.post(f"/v1/tasks/{ahead['id']}/cancel", headers=headers)
        assert cancelled.json()["error"]["code"] == "request_cancelled"
        engine.release.set()
        done = await app.wait_for(key, running["id"])
        assert done["status"] == "completed"

        final = await app.wait_for(key, ahead["id"])
        assert final["status"] == "failed"
        assert final["error"]["code"] == "request_cancelled"
        # fenced: the worker that held it wrote nothing after the cancel and never ran it
        row = await stored(app, "acme", ahead["id"])
        assert row.result_keys == ()
        assert [job.seed for job in engine.jobs] == [1]
        assert not (tmp_path / "blobs" / ahead["id"]).exists()
        charged = round(done["usage"]["credits_used"] * 1000)
        assert await balance_equals_ledger(app, "acme") == 5000 - charged


async def test_backlog_results_and_billing_are_those_of_one_at_a_time(
    db_url: str, tmp_path: Path, image: str
) -> None:
    engine = SteppingEngine(steps=2)
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=10)
        ids = [(await app.create(key, edit(image, seed))).json()["id"] for seed in range(5)]
        finals = [await app.wait_for(key, task_id) for task_id in ids]
        assert [task["status"] for task in finals] == ["completed"] * 5
        assert sorted(job.seed for job in engine.jobs) == list(range(5))
        for seed, task in enumerate(finals):
            assert task["seed"] == seed
            assert task["progress"] == 100
            assert len(task["results"]) == 1
        charged = sum(round(task["usage"]["credits_used"] * 1000) for task in finals)
        assert charged == 5 * round(finals[0]["usage"]["credits_used"] * 1000) > 0
        assert await balance_equals_ledger(app, "acme") == 10_000 - charged


async def test_a_slow_store_does_not_hold_back_the_next_claim(
    db_url: str, tmp_path: Path, image: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While the first task's outputs are still being stored and the engine runs the second, a
    third is claimed ahead (and prepared): only the tasks not yet through the engine count
    against the one claimed ahead."""
    engine = SteppingEngine(steps=2)
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=5)
        blobs = app.runtime.blobs
        store = blobs.put
        storing, stored_may_go = asyncio.Event(), asyncio.Event()
        first: dict[str, Any] = {}

        async def slow_put(name: str, data: bytes) -> None:
            if first and name.startswith(f"{first['id']}/"):
                storing.set()
                await stored_may_go.wait()
            await store(name, data)

        monkeypatch.setattr(blobs, "put", slow_put)
        first.update((await app.create(key, edit(image, 1))).json())
        await asyncio.wait_for(storing.wait(), 30)  # through the engine, its store held
        engine.hold_at = 1
        second = (await app.create(key, edit(image, 2))).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        third = (await app.create(key, edit(image, 3))).json()
        await app.wait_for(key, third["id"], statuses=("processing",), timeout=10)
        assert (await app.get(key, first["id"])).json()["status"] == "processing"  # storing
        # one task waits for the engine, no more: a fourth is left to other workers
        fourth = (await app.create(key, edit(image, 4))).json()
        await asyncio.sleep(1)  # the worker hears of it at once and polls every 0.1 s
        assert (await app.get(key, fourth["id"])).json()["status"] == "pending"

        stored_may_go.set()
        engine.release.set()
        for task in (first, second, third, fourth):
            done = await app.wait_for(key, task["id"])
            assert done["status"] == "completed", done
        assert await balance_equals_ledger(app, "acme") == 1000
