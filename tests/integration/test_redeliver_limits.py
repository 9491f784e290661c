"""``POST /v1/tasks/{id}/callbacks/redeliver`` is bounded (issue 10): one delivery under way at a
time, ``MAX_REDELIVERIES`` in all, and concurrent calls queue one. The receiver holds each POST
until the test lets it answer, so "under way" is a state the test controls, not a race."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path
from typing import Any

import httpx

from qwenedit.domain.webhooks import MAX_REDELIVERIES
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import Answer, Received, scripted_server
from support.images import data_uri, png_bytes


async def deliveries(app: RunningApp, key: str, task_id: str) -> list[dict[str, Any]]:
    response = await app.client.get(
        f"/v1/tasks/{task_id}/callbacks", headers={"Authorization": f"Bearer {key}"}
    )
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def all_delivered(app: RunningApp, key: str, task_id: str, count: int) -> None:
    deadline = time.monotonic() + 20
    while True:
        found = await deliveries(app, key, task_id)
        if len(found) == count and all(d["status"] == "delivered" for d in found):
            return
        assert time.monotonic() < deadline, found
        await asyncio.sleep(0.05)


def assert_conflict(response: httpx.Response, words: str) -> None:
    assert response.status_code == 409, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == "task_id"
    assert words in error["message"]


async def test_redeliveries_are_one_at_a_time_and_bounded(db_url: str, tmp_path: Path) -> None:
    gate = threading.Event()

    def held(_: Received) -> Answer:
        gate.wait(8)
        return Answer(200)

    settings = make_settings(db_url, tmp_path, allow_insecure_callbacks=True)
    with scripted_server() as receiver:
        receiver.answers["/hook"] = held
        async with running_app(settings, SteppingEngine(steps=1)) as app:
            key = await app.new_key("acme", credits=5)
            auth = {"Authorization": f"Bearer {key}"}
            body = {
                "prompt": "p",
                "image_urls": [data_uri(png_bytes(400, 400))],
                "callback_url": receiver.url("hook"),
            }
            task_id = (await app.create(key, body)).json()["id"]
            redeliver = f"/v1/tasks/{task_id}/callbacks/redeliver"
            await app.wait_for(key, task_id)
            while not receiver.requests_for("hook"):
                await asyncio.sleep(0.05)
            assert_conflict(await app.client.post(redeliver, headers=auth), "still pending")
            gate.set()
            await all_delivered(app, key, task_id, 1)

            for count in range(2, MAX_REDELIVERIES + 2):
                gate.clear()
                answers = await asyncio.gather(
                    *(app.client.post(redeliver, headers=auth) for _ in range(8))
                )
                assert sorted(a.status_code for a in answers) == [200] + [409] * 7
                assert len(await deliveries(app, key, task_id)) == count
                assert_conflict(await app.client.post(redeliver, headers=auth), "still pending")
                gate.set()
                await all_delivered(app, key, task_id, count)

            assert_conflict(await app.client.post(redeliver, headers=auth), "the most allowed")
            assert len(await deliveries(app, key, task_id)) == MAX_REDELIVERIES + 1
            assert len(receiver.requests_for("hook")) == MAX_REDELIVERIES + 1
