"""The task API end to end in-process (real app, real database, real worker loop), on SQLite and
PostgreSQL. The engine is a test engine; the real pipeline runs in the engine and e2e tests."""

from __future__ import annotations

import asyncio
import io
import re
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from PIL import Image

from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.image_server import serve_images
from support.images import data_uri, png_bytes
from support.leaks import assert_not_leaked

TASK_ID = re.compile(r"^task-unified-\d+-[a-z0-9]{8}$")


def edit(*urls: str, **extra: object) -> dict[str, object]:
    return {
        "model": "qwen-image-edit-plus",
        "prompt": "make it blue",
        "image_urls": list(urls),
        **extra,
    }


@pytest.fixture
def image() -> str:
    return data_uri(png_bytes(512, 384))


async def balance_equals_ledger(app: RunningApp, account: str) -> int:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    assert found.balance_milli == await app.runtime.accounts.ledger_sum(found.id)
    return found.balance_milli


async def test_create_poll_download(db_url: str, tmp_path: Path, image: str) -> None:
    engine = SteppingEngine()
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=10)
        response = await app.create(key, edit(image, n=2, seed=7, negative_prompt="x" * 600))
        assert response.status_code == 200
        created = response.json()
        assert TASK_ID.match(created["id"])
        assert created["id"].split("-")[2] == str(created["created"])
        assert created["model"] == "qwen-image-edit-plus"
        assert created["object"] == "image.generation.task"
        assert created["type"] == "image"
        assert created["status"] in ("pending", "processing")
        assert isinstance(created["progress"], int)
        assert created["task_info"]["can_cancel"] is True
        assert isinstance(created["task_info"]["estimated_time"], int)
        assert created["task_info"]["estimated_time"] >= 1
        assert created["usage"] == {
            "billing_rule": "per_call",
            "credits_reserved": 2,
            "user_group": "default",
        }
        done = await app.wait_for(key, created["id"])
        assert done["status"] == "completed", done
        assert done["progress"] == 100
        assert done["task_info"]["can_cancel"] is False
        assert done["usage"]["credits_used"] == 2
        assert done["seed"] == 7
        assert "actual_prompt" not in done
        assert isinstance(done["completed_at"], int)
        assert len(done["results"]) == 2
        job = engine.jobs[-1]
        assert job.negative_prompt == "x" * 500
        assert (job.width, job.height) == (1184, 896)  # 4:3 at about 1024², multiples of 32
        for url in done["results"]:
            parts = urlsplit(url)
            got = await app.client.get(f"{parts.path}?{parts.query}")  # no bearer key
            assert got.status_code == 200
            assert got.headers["content-type"] == "image/png"
            assert Image.open(io.BytesIO(got.content)).size == (1184, 896)
        assert await balance_equals_ledger(app, "acme") == 8000
        again = (await app.get(key, created["id"])).json()
        assert again["results"] == done["results"]  # the same links on every read


async def test_size_is_rounded_and_exact(db_url: str, tmp_path: Path, image: str) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme")
        created = (await app.create(key, edit(image, size="1030*1000"))).json()
        done = await app.wait_for(key, created["id"])
        parts = urlsplit(done["results"][0])
        got = await app.client.get(f"{parts.path}?{parts.query}")
        assert Image.open(io.BytesIO(got.content)).size == (1024, 1008)


async def test_result_link_tampered_or_expired_is_refused(
    db_url: str, tmp_path: Path, image: str
) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme")
        created = (await app.create(key, edit(image))).json()
        done = await app.wait_for(key, created["id"])
        parts = urlsplit(done["results"][0])
        other_key = parts.path.replace("/0.png", "/1.png")
        expired = re.sub(r"expires=\d+", "expires=1000", parts.query)
        for path, query in ((other_key, parts.query), (parts.path, expired)):
            got = await app.client.get(f"{path}?{query}")
            assert got.status_code == 403
            assert got.json()["error"]["type"] == "permission_error"


async def test_concurrent_creates_never_overdraw(db_url: str, tmp_path: Path, image: str) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:  # no worker: nothing settles
        key = await app.new_key("tight", credits=2)
        responses = await asyncio.gather(*(app.create(key, edit(image)) for _ in range(3)))
        codes = sorted(response.status_code for response in responses)
        assert codes == [200, 200, 402]
        refused = next(r for r in responses if r.status_code == 402).json()
        assert refused["error"]["type"] == "insufficient_quota_error"
        assert await balance_equals_ledger(app, "tight") == 0


async def test_cancel_pending_refunds_and_is_final(db_url: str, tmp_path: Path, image: str) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(image, n=3))).json()
        assert await balance_equals_ledger(app, "acme") == 2000
        headers = {"Authorization": f"Bearer {key}"}
        cancelled = await app.client.post(f"/v1/tasks/{created['id']}/cancel", headers=headers)
        assert cancelled.status_code == 200
        body = cancelled.json()
        assert body["status"] == "failed"
        assert body["error"]["code"] == "request_cancelled"
        assert body["usage"]["credits_used"] == 0
        assert body["task_info"]["can_cancel"] is False
        assert await balance_equals_ledger(app, "acme") == 5000
        again = await app.client.post(f"/v1/tasks/{created['id']}/cancel", headers=headers)
        assert again.status_code == 409
        assert again.json()["error"]["type"] == "invalid_request_error"


async def test_cancel_while_denoising(db_url: str, tmp_path: Path, image: str) -> None:
    engine = SteppingEngine(steps=6, hold_at=3)
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(image))).json()
        assert await asyncio.to_thread(engine.holding.wait, 30)
        running = await app.wait_for(key, created["id"], statuses=("processing",))
        for _ in range(100):  # progress is stored with the next heartbeat
            if running["progress"] > 0:
                break
            await asyncio.sleep(0.05)
            running = (await app.get(key, created["id"])).json()
        assert running["status"] == "processing"
        assert running["progress"] > 0
        headers = {"Authorization": f"Bearer {key}"}
        cancelled = await app.client.post(f"/v1/tasks/{created['id']}/cancel", headers=headers)
        assert cancelled.json()["error"]["code"] == "request_cancelled"
        # the engine stops at its next step by itself (it is never released)
        for _ in range(200):
            if not engine._lock.locked():
                break
            await asyncio.sleep(0.05)
        assert not engine._lock.locked()
        final = (await app.get(key, created["id"])).json()
        assert final["status"] == "failed"
        assert final["error"]["code"] == "request_cancelled"
        assert await balance_equals_ledger(app, "acme") == 5000


async def test_progress_rises_through_steps(db_url: str, tmp_path: Path, image: str) -> None:
    engine = SteppingEngine(steps=8, hold_at=5)
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme")
        created = (await app.create(key, edit(image))).json()
        seen = [created["progress"]]
        assert await asyncio.to_thread(engine.holding.wait, 30)
        deadline = time.monotonic() + 10
        while seen[-1] <= 10 and time.monotonic() < deadline:  # stored at the next watch tick
            await asyncio.sleep(0.05)
            seen.append((await app.get(key, created["id"])).json()["progress"])
        engine.release.set()
        seen.append((await app.wait_for(key, created["id"]))["progress"])
        assert seen == sorted(seen)
        assert 10 < max(seen[:-1]) < 100
        assert seen[-1] == 100


async def test_other_accounts_task_is_not_found(db_url: str, tmp_path: Path, image: str) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key_a = await app.new_key("a")
        key_b = await app.new_key("b")
        created = (await app.create(key_a, edit(image))).json()
        for response in (
            await app.get(key_b, created["id"]),
            await app.get(key_a, "task-unified-1757156493-zzzzzzzz"),
            await app.client.post(
                f"/v1/tasks/{created['id']}/cancel", headers={"Authorization": f"Bearer {key_b}"}
            ),
        ):
            assert response.status_code == 404
            assert response.json()["error"] == {
                "code": 404,
                "message": "Task not found or expired",
                "type": "not_found_error",
                "param": "task_id",
            }
        malformed = await app.get(key_a, "not-a-task")
        assert malformed.status_code == 400
        assert malformed.json()["error"]["param"] == "task_id"


async def test_http_errors_use_the_envelope(db_url: str, tmp_path: Path, image: str) -> None:
    async with running_app(make_settings(db_url, tmp_path, max_body_bytes=4096)) as app:
        key = await app.new_key("acme")
        auth = {"Authorization": f"Bearer {key}"}
        cases = [
            (await app.client.post("/v1/images/generations", json=edit(image)), 401),
            (
                await app.client.post(
                    "/v1/images/generations",
                    json=edit(image),
                    headers={"Authorization": "Bearer qe_x_y"},
                ),
                401,
            ),
            (await app.client.post("/v1/images/generations", content=b"{nope", headers=auth), 400),
            (await app.client.post("/v1/images/generations", json=[1], headers=auth), 400),
            (
                await app.client.post("/v1/images/generations", json={"prompt": "x"}, headers=auth),
                400,
            ),
            (await app.client.get("/v1/nothing-here", headers=auth), 404),
            (await app.client.delete("/v1/credits", headers=auth), 405),
            (
                await app.client.post(
                    "/v1/images/generations",
                    json=edit("data:image/png;base64," + "A" * 8000),
                    headers=auth,
                ),
                413,
            ),
            (await app.create(key, edit(image, model="dall-e-3")), 404),
        ]
        for response, status in cases:
            assert response.status_code == status, response.text
            error = response.json()["error"]
            assert error["code"] == status
            assert isinstance(error["message"], str)
            assert isinstance(error["type"], str)
            assert "detail" not in response.json()
            assert "Traceback" not in response.text


async def test_credits_endpoint(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=3, group="pro")
        response = await app.client.get("/v1/credits", headers={"Authorization": f"Bearer {key}"})
        assert response.json() == {"account": "acme", "balance": 3, "user_group": "pro"}


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("http://127.0.0.1/a.png", "127.0.0.1"),
        ("http://10.0.0.1/a.png", "10.0.0.1"),
        ("http://169.254.169.254/latest/meta-data", "169.254.169.254"),
        ("http://[::1]/a.png", "::1"),
        ("http://localhost/a.png", "127.0.0.1"),
    ],
)
async def test_internal_image_urls_are_refused_at_create(
    db_url: str, tmp_path: Path, url: str, address: str
) -> None:
    async with running_app(make_settings(db_url, tmp_path, allow_private_network="")) as app:
        key = await app.new_key("acme")
        response = await app.create(key, edit(url))
        assert response.status_code == 400
        assert response.json()["error"]["param"] == "image_urls"
        assert_not_leaked(response.json()["error"]["message"], address)


async def test_loopback_image_url_allowed_when_private_network_is_on(
    db_url: str, tmp_path: Path
) -> None:
    with serve_images({"in.png": png_bytes(384, 384)}) as server:
        async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
            key = await app.new_key("acme")
            created = (await app.create(key, edit(server.url("in.png")))).json()
            done = await app.wait_for(key, created["id"])
            assert done["status"] == "completed", done
            assert server.hits["in.png"] == 1


@pytest.mark.parametrize(
    ("size", "ok"),
    [((384, 384), True), ((3072, 3072), True), ((383, 512), False), ((512, 3073), False)],
)
async def test_inline_input_dimension_limits_are_checked_at_create(
    db_url: str, tmp_path: Path, image: str, size: tuple[int, int], ok: bool
) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        response = await app.create(key, edit(image, data_uri(png_bytes(*size))))
        if ok:
            done = await app.wait_for(key, response.json()["id"])
            assert done["status"] == "completed", done
            assert await balance_equals_ledger(app, "acme") == 4000
        else:
            assert response.status_code == 400
            error = response.json()["error"]
            assert error["param"] == "image_urls"
            assert error["message"].startswith("image_urls[2]: ")
            assert "each side must be 384 to 3072" in error["message"]
            assert await balance_equals_ledger(app, "acme") == 5000


async def test_remote_input_dimension_limits_fail_the_task_with_refund(
    db_url: str, tmp_path: Path, image: str
) -> None:
    with serve_images({"small.png": png_bytes(383, 512)}) as server:
        async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
            key = await app.new_key("acme", credits=5)
            created = (await app.create(key, edit(image, server.url("small.png")))).json()
            done = await app.wait_for(key, created["id"])
            assert done["status"] == "failed"
            assert done["error"]["code"] == "image_processing_error"
            assert done["error"]["message"].startswith("Image 2")
            assert done["usage"]["credits_used"] == 0
            assert await balance_equals_ledger(app, "acme") == 5000


async def test_unreachable_image_fails_with_refund(db_url: str, tmp_path: Path) -> None:
    with serve_images({}) as server:
        async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
            key = await app.new_key("acme", credits=2)
            created = (await app.create(key, edit(server.url("missing.png")))).json()
            done = await app.wait_for(key, created["id"])
            assert done["error"]["code"] == "image_processing_error"
            assert "Image 1" in done["error"]["message"]
            assert str(server.port) not in done["error"]["message"]
            assert await balance_equals_ledger(app, "acme") == 2000
