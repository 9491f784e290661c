"""Callback delivery end to end in-process: real app, real database, real HTTPS receivers on
loopback with a CA made here and trusted through ``CA_BUNDLE`` (issue: callbacks never lost).

The tests that step through the 1/2/4 s retry schedule run their own dispatcher on a
``ManualClock``: each retry must be scheduled exactly that long after the failure before it and
is not sent until the test moves the clock there. The others use the app's own dispatcher on
wall time."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trustme
from standardwebhooks.webhooks import Webhook

from qwenedit.config import Settings
from qwenedit.delivery.dispatcher import Dispatcher
from qwenedit.resilience import Outages, Retry
from support.app import RunningApp, make_settings, running_app
from support.clock import ManualClock
from support.engine import SteppingEngine
from support.http_server import Answer, Received, ScriptedServer, scripted_server
from support.images import data_uri, png_bytes
from support.leaks import assert_not_leaked
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
        await asyncio.sleep(0.05)


async def wait_for_attempts(
    app: RunningApp, key: str, task_id: str, count: int, timeout: float = 20
) -> dict[str, Any]:
    """The first delivery of the task once ``count`` of its attempts are recorded."""
    deadline = time.monotonic() + timeout
    while True:
        deliveries = await history(app, key, task_id)
        if deliveries and len(deliveries[0]["attempts"]) >= count:
            return deliveries[0]
        if time.monotonic() > deadline:
            raise AssertionError(f"{count} attempts never came: {deliveries}")
        await asyncio.sleep(0.02)


def clock_ahead() -> ManualClock:
    """Whole seconds (so the wire's milliseconds are exact), a minute ahead of wall time (so the
    delivery a finishing task writes is due at once)."""
    return ManualClock(datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=1))


@asynccontextmanager
async def dispatching(app: RunningApp, clock: ManualClock) -> AsyncIterator[None]:
    """A dispatcher on ``clock`` for an app started without its own; on leaving, it has stopped
    and every attempt it claimed has been sent and recorded."""
    stop = asyncio.Event()
    runtime = app.runtime
    dispatcher = Dispatcher(
        runtime.outbox,
        runtime.client,
        runtime.presenter.callback_body,
        runtime.metrics,
        poll_seconds=0.02,
        clock=clock,
    )
    running = asyncio.create_task(dispatcher.run(stop, Retry("test dispatcher", Outages())))
    try:
        yield
    finally:
        stop.set()
        await running


async def retry_after(
    app: RunningApp, key: str, task_id: str, clock: ManualClock, attempts: int, seconds: float
) -> float:
    """Once ``attempts`` attempts have failed: the next is scheduled ``seconds`` after the last
    failure ended, is not claimed while the dispatcher keeps looking, and the clock is moved to
    it. Returns when the clock moved (``time.monotonic()``)."""
    delivery = await wait_for_attempts(app, key, task_id, attempts)
    assert delivery["status"] == "pending", delivery
    assert len(delivery["attempts"]) == attempts
    last = delivery["attempts"][-1]
    failed_at = last["attempted_at"] + last["duration_ms"] / 1000
    assert round(delivery["next_attempt_at"] - failed_at, 3) == seconds, (failed_at, delivery)
    await clock.read_again()
    assert await history(app, key, task_id) == [delivery]  # not claimed: its lease would show
    moved_at = time.monotonic()
    clock.advance(seconds)
    return moved_at


async def no_attempt_follows(clock: ManualClock) -> None:
    """Far past any schedule, the dispatcher looks twice more (then leaving ``dispatching``
    waits for whatever it claimed)."""
    clock.advance(3600)
    await clock.read_again()


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
    clock = clock_ahead()
    async with (
        running_app(settings, SteppingEngine(), resolver=resolver, housekeeping=False) as app,
        dispatching(app, clock),
    ):
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        moves = [
            await retry_after(app, key, created["id"], clock, attempts, seconds)
            for attempts, seconds in ((1, 1.0), (2, 2.0), (3, 4.0))
        ]
        delivery = await wait_for_delivery_status(app, key, created["id"], "failed")
        await no_attempt_follows(clock)
    arrivals = [r.at for r in receiver.requests_for("hook")]
    assert len(arrivals) == 4
    assert all(arrival >= moved for arrival, moved in zip(arrivals[1:], moves, strict=True))
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
    clock = clock_ahead()
    async with (
        running_app(settings, SteppingEngine(), resolver=resolver, housekeeping=False) as app,
        dispatching(app, clock),
    ):
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        await retry_after(app, key, created["id"], clock, attempts=1, seconds=1.0)
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
        await no_attempt_follows(clock)
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
    clock = clock_ahead()
    async with (
        running_app(settings, SteppingEngine(), resolver=resolver, housekeeping=False) as app,
        dispatching(app, clock),
    ):
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        await wait_for_attempts(app, key, created["id"], 1)
    assert len(receiver.requests_for("hook")) == 1
    async with (
        running_app(settings, SteppingEngine(), resolver=resolver, housekeeping=False) as app,
        dispatching(app, clock),
    ):
        moved_at = await retry_after(app, key, created["id"], clock, attempts=1, seconds=1.0)
        delivery = await wait_for_delivery_status(app, key, created["id"], "delivered")
    first, second = receiver.requests_for("hook")
    assert second.at >= moved_at
    assert first.headers["webhook-id"] == second.headers["webhook-id"]
    assert [a["status_code"] for a in delivery["attempts"]] == [500, 200]


@pytest.mark.parametrize(
    ("callback_url", "address"),
    [
        ("http://hooks.example/hook", None),
        ("https://127.0.0.1/hook", "127.0.0.1"),
        ("https://10.1.2.3/hook", "10.1.2.3"),
        ("https://internal.example/hook", "10.0.0.5"),
        ("https://unknown.example/hook", None),
        ("https://hooks.example/" + "a" * (2049 - len("https://hooks.example/")), None),
    ],
)
async def test_bad_callback_urls_are_refused_at_create(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    resolver: MapResolver,
    callback_url: str,
    address: str | None,
) -> None:
    settings = hook_settings(db_url, tmp_path, authority, allow_private_network="")
    resolver.names[HOOK_HOST] = ["93.184.216.34"]
    async with running_app(settings, SteppingEngine(), resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        response = await app.create(key, edit(callback_url))
        assert response.status_code == 400, response.text
        assert response.json()["error"]["param"] == "callback_url"
        if address is not None:
            assert_not_leaked(response.json()["error"]["message"], address)
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
    clock = clock_ahead()
    async with (
        running_app(settings, engine, resolver=resolver, housekeeping=False) as app,
        dispatching(app, clock),
    ):
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(receiver.url("hook", host=HOOK_HOST)))).json()
        assert await asyncio.to_thread(engine.holding.wait, 20)
        resolver.names[HOOK_HOST] = ["10.0.0.9"]
        engine.release.set()
        for attempts, seconds in ((1, 1.0), (2, 2.0), (3, 4.0)):
            await retry_after(app, key, created["id"], clock, attempts, seconds)
        delivery = await wait_for_delivery_status(app, key, created["id"], "failed")
    assert receiver.received == []
    assert len(delivery["attempts"]) == 4
    for attempt in delivery["attempts"]:
        assert "internal address" in attempt["error"]
        assert_not_leaked(attempt["error"], "10.0.0.9")


async def test_a_hanging_receiver_does_not_hold_up_others(
    db_url: str,
    tmp_path: Path,
    authority: trustme.CA,
    receiver: ScriptedServer,
    resolver: MapResolver,
) -> None:
    hang = threading.Event()
    receiver.answers["/slow"] = Answer(200, hold=hang)
    receiver.answers["/fast"] = Answer(200)
    settings = hook_settings(db_url, tmp_path, authority)
    try:
        async with running_app(settings, SteppingEngine(steps=1), resolver=resolver) as app:
            key = await app.new_key("acme", credits=5)
            slow = (await app.create(key, edit(receiver.url("slow", host=HOOK_HOST)))).json()
            await wait_for_requests(receiver, "slow", 1, timeout=20)
            fast = (await app.create(key, edit(receiver.url("fast", host=HOOK_HOST)))).json()
            await wait_for_delivery_status(app, key, fast["id"], "delivered")
            [hanging] = await history(app, key, slow["id"])
            assert (hanging["status"], hanging["attempts"]) == ("pending", [])
            hang.set()
            await wait_for_delivery_status(app, key, slow["id"], "delivered")
    finally:
        hang.set()
