"""Callback delivery end to end in-process: real app, real database, real HTTPS receivers on
loopback with a CA made here and trusted through ``CA_BUNDLE`` (issue: callbacks never lost)."""

from __future__ import annotations

import asyncio
import itertools
import json
import ssl
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from qwenedit.config import Settings
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.http_server import Answer, Received, ScriptedServer, scripted_server
from support.images import data_uri, png_bytes
from support.resolver import MapResolver

HOOK_HOST = "hooks.example"


@pytest.fixture(scope="module")
def authority() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def receiver(authority: trustme.CA) -> Iterator[ScriptedServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    authority.issue_cert(HOOK_HOST).configure_cert(context)
    with scripted_server(tls=context) as server:
        yield server


@pytest.fixture
def resolver() -> MapResolver:
    return MapResolver({HOOK_HOST: ["127.0.0.1"], "internal.example": ["10.0.0.5"]})


@dataclass
class Hooks:
    authority: trustme.CA
    receiver: ScriptedServer
    resolver: MapResolver


@pytest.fixture
def hooks(authority: trustme.CA, receiver: ScriptedServer, resolver: MapResolver) -> Hooks:
    return Hooks(authority, receiver, resolver)


def hook_settings(db_url: str, tmp_path: Path, authority: trustme.CA, **extra: Any) -> Settings:
    bundle = tmp_path / "ca.pem"
    authority.cert_pem.write_to_path(str(bundle))
    return make_settings(db_url, tmp_path, ca_bundle=bundle, **extra)


def edit(callback_url: str, **extra: object) -> dict[str, object]:
    return {
        "model": "qwen-image-edit-plus",
        "prompt": "make it blue",
        "image_urls": [data_uri(png_bytes(400, 400))],
        "callback_url": callback_url,
        **extra,
    }


async def wait_for_requests(server: ScriptedServer, path: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while len(server.requests_for(path)) < count:
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(server.requests_for(path))} of {count} requests arrived")
        await asyncio.sleep(0.05)


async def history(app: RunningApp, key: str, task_id: str) -> list[dict[str, Any]]:
    response = await app.client.get(
        f"/v1/tasks/{task_id}/callbacks", headers={"Authorization": f"Bearer {key}"}
    )
    assert response.status_code == 200
    data: list[dict[str, Any]] = response.json()["data"]
    return data


async def wait_for_delivery_status(
    app: RunningApp, key: str, task_id: str, status: str, timeout: float = 15
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        deliveries = await history(app, key, task_id)
        if deliveries and deliveries[0]["status"] == status:
            return deliveries[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery never became {status}: {deliveries}")
        await asyncio.sleep(0.1)


async def test_delivered_after_billing_with_a_valid_signature(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    billed_at_delivery: list[dict[str, Any]] = []

    def answer(request: Received) -> Answer:
        billed_at_delivery.append(json.loads(request.body))
        return Answer(status=200)

    receiver.answers["/hook"] = answer
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        url = receiver.url("hook", host=HOOK_HOST)
        created = (await app.create(key, edit(url))).json()
        await wait_for_requests(receiver, "hook", 1, timeout=20)
        task = (await app.get(key, created["id"])).json()
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
        account = await app.runtime.accounts.get_by_name("acme")
        assert account is not None
        secret = await app.runtime.accounts.webhook_secret(account.id)
    request = receiver.requests_for("hook")[0]
    body = billed_at_delivery[0]
    assert body["id"] == created["id"]
    assert body["status"] == "completed"
    assert body["usage"]["credits_used"] == 1
    assert body["results"] == task["results"]
    assert request.headers["content-type"] == "application/json"
    assert request.headers["user-agent"].startswith("qwenedit/")
    assert request.headers["host"] == f"{HOOK_HOST}:{receiver.port}"
    assert Webhook(secret).verify(request.body, request.headers) == body
    assert [a["status_code"] for a in delivery["attempts"]] == [200]
    assert len(receiver.received) == 1


async def test_retries_at_1_2_4_seconds_then_gives_up(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    answers = iter([Answer(302, headers={"Location": "/elsewhere"}), Answer(404), Answer(503)])
    receiver.answers["/hook"] = lambda _: next(answers, Answer(500))
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        delivery = await wait_for_delivery_status(app, key, created["id"], "failed", timeout=20)
        await asyncio.sleep(1.5)  # no fifth attempt comes
    arrivals = [r.at for r in receiver.requests_for("hook")]
    assert len(arrivals) == 4
    gaps = [later - earlier for earlier, later in itertools.pairwise(arrivals)]
    for gap, expected in zip(gaps, (1.0, 2.0, 4.0), strict=True):
        assert expected - 0.05 <= gap <= expected + 0.8, gaps
    assert [a["status_code"] for a in delivery["attempts"]] == [302, 404, 503, 500]
    assert receiver.requests_for("elsewhere") == []
    webhook_ids = {r.headers["webhook-id"] for r in receiver.requests_for("hook")}
    assert len(webhook_ids) == 1


async def test_a_2xx_ends_the_retries(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    answers = iter([Answer(500), Answer(202)])
    receiver.answers["/hook"] = lambda _: next(answers, Answer(500))
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
        await asyncio.sleep(2.5)
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 202]
    assert len(receiver.requests_for("hook")) == 2


async def test_a_timeout_is_a_failed_attempt(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from qwenedit.delivery import dispatcher

    monkeypatch.setattr(dispatcher, "CALLBACK_TIMEOUT", 0.5)
    answers = iter([Answer(200, delay=1.5)])
    receiver.answers["/hook"] = lambda _: next(answers, Answer(200))
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
    first, second = delivery["attempts"]
    assert first["status_code"] is None
    assert "no answer within" in first["error"]
    assert second["status_code"] == 200


async def test_a_restart_between_attempts_resumes_the_schedule(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    answers = iter([Answer(500)])
    receiver.answers["/hook"] = lambda _: next(answers, Answer(200))
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        await wait_for_requests(receiver, "hook", 1, timeout=20)
    stopped_at = time.monotonic()
    assert len(receiver.requests_for("hook")) == 1
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
    first, second = receiver.requests_for("hook")
    assert second.at - first.at >= 0.95
    assert second.at >= stopped_at
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]


@pytest.mark.parametrize(
    "callback_url",
    [
        "http://hooks.example/hook",
        "https://127.0.0.1/hook",
        "https://10.1.2.3/hook",
        "https://internal.example/hook",
        "https://unknown.example/hook",
        "https://hooks.example/" + "a" * (2049 - len("https://hooks.example/")),
    ],
)
async def test_bad_callback_urls_are_refused_at_create(
    db_url: str, tmp_path: Path, authority: trustme.CA, resolver: MapResolver, callback_url: str
) -> None:
    settings = hook_settings(db_url, tmp_path, authority, allow_private_network="")
    resolver.names[HOOK_HOST] = ["93.184.216.34"]
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        response = await app.create(key, edit(callback_url))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "callback_url"
        assert "10." not in response.json()["error"]["message"]
        assert sum((await app.runtime.stats.counts_by_status()).values()) == 0


async def test_dns_changed_after_create_is_refused_at_delivery(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    receiver.answers["/hook"] = Answer(200)
    engine = SteppingEngine(steps=4, hold_at=2)
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, engine, resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        assert await asyncio.to_thread(engine.holding.wait, 20)
        resolver.names[HOOK_HOST] = ["10.0.0.9"]
        engine.release.set()
        delivery = await wait_for_delivery_status(app, key, created["id"], "failed", timeout=20)
    assert receiver.received == []
    assert all("internal address" in a["error"] for a in delivery["attempts"])
    assert len(delivery["attempts"]) == 4


async def test_a_hanging_receiver_does_not_hold_up_others(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    receiver.answers["/slow"] = Answer(200, delay=4.0)
    receiver.answers["/fast"] = Answer(200)
    settings = hook_settings(db_url, tmp_path, authority)
    async with running_app(settings, SteppingEngine(steps=1), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        await app.create(key, edit(receiver.url("slow", host=HOOK_HOST)))
        await wait_for_requests(receiver, "slow", 1, timeout=20)
        slow_started = time.monotonic()
        await app.create(key, edit(receiver.url("fast", host=HOOK_HOST)))
        await wait_for_requests(receiver, "fast", 1, timeout=20)
        assert time.monotonic() - slow_started < 3.5
