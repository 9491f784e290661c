"""Uploads, inline data URIs, body caps and idempotent creates through the real app."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

from PIL import Image

from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes


def edit(*urls: str) -> dict[str, object]:
    return {"model": "qwen-image-edit-plus", "prompt": "make it blue", "image_urls": list(urls)}


async def upload(app: RunningApp, key: str, data: bytes, name: str = "in.png") -> dict[str, object]:
    response = await app.client.post(
        "/v1/files",
        files={"file": (name, data, "application/octet-stream")},
        headers={"Authorization": f"Bearer {key}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_an_upload_flows_into_a_completed_task(db_url: str, tmp_path: Path) -> None:
    engine = SteppingEngine()
    async with running_app(make_settings(db_url, tmp_path), engine) as app:
        key = await app.new_key("acme", credits=5)
        stored = await upload(app, key, png_bytes(640, 480, (200, 10, 10)))
        assert stored["bytes"] == len(png_bytes(640, 480, (200, 10, 10)))
        assert (stored["mime_type"], stored["width"], stored["height"]) == ("image/png", 640, 480)
        assert isinstance(stored["expires_at"], int)
        assert isinstance(stored["created_at"], int)
        assert stored["expires_at"] - stored["created_at"] == 72 * 3600
        url = str(stored["url"])
        created = await app.create(key, edit(url, data_uri(png_bytes(400, 400))))
        assert created.status_code == 200, created.text
        done = await app.wait_for(key, created.json()["id"])
        assert done["status"] == "completed", done
        first_input = engine.jobs[0].images[0]
        assert first_input.size == (640, 480)
        assert first_input.getpixel((5, 5)) == (200, 10, 10)


async def test_uploads_are_private_to_their_account(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        owner = await app.new_key("acme", credits=5)
        other = await app.new_key("globex", credits=5)
        stored = await upload(app, owner, png_bytes())
        refused = await app.create(other, edit(str(stored["url"])))
        assert refused.status_code == 400
        assert refused.json()["error"]["param"] == "image_urls"
        peek = await app.client.get(
            f"/v1/files/{stored['id']}", headers={"Authorization": f"Bearer {other}"}
        )
        assert peek.status_code == 404
        mine = await app.client.get(
            f"/v1/files/{stored['id']}/content", headers={"Authorization": f"Bearer {owner}"}
        )
        assert mine.content == png_bytes()


async def test_uploads_are_checked_on_arrival(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_image_bytes=200_000)
    async with running_app(settings) as app:
        key = await app.new_key("acme")
        headers = {"Authorization": f"Bearer {key}"}
        gif = io.BytesIO()
        Image.new("RGB", (400, 400)).save(gif, format="GIF")
        cases = [
            (gif.getvalue(), 400, "unsupported image format"),
            (png_bytes(200, 400), 400, "each side must be 384 to 3072"),
            (b"", 400, "empty"),
            (b"\x00" * 300_000, 413, "larger than"),
        ]
        for data, status, message in cases:
            response = await app.client.post(
                "/v1/files", files={"file": ("x.png", data, "image/png")}, headers=headers
            )
            assert response.status_code == status, response.text
            assert message in response.json()["error"]["message"]


async def test_expired_uploads_are_refused_and_deleted(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(
        db_url, tmp_path, upload_ttl=0.5, reaper_seconds=0.1, retention_sweep_seconds=0.1
    )
    async with running_app(settings, SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        stored = await upload(app, key, png_bytes())
        blob = tmp_path / "blobs" / "files" / str(stored["id"])
        assert blob.exists()
        for _ in range(100):
            if not blob.exists():
                break
            await asyncio.sleep(0.05)
        assert not blob.exists()
        refused = await app.create(key, edit(str(stored["url"])))
        assert refused.status_code == 400


async def test_an_oversized_body_is_refused_before_parsing(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path, max_body_bytes=50_000)
    async with running_app(settings) as app:
        key = await app.new_key("acme", credits=5)
        response = await app.create(key, edit(data_uri(os.urandom(60_000))))
        assert response.status_code == 413
        assert response.json()["error"]["type"] == "request_too_large_error"


async def test_idempotent_retries_create_one_task(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=5)
        body = edit(data_uri(png_bytes()))
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": "order-42"}
        first, second = await asyncio.gather(
            app.client.post("/v1/images/generations", json=body, headers=headers),
            app.client.post("/v1/images/generations", json=body, headers=headers),
        )
        assert first.status_code == second.status_code == 200
        assert first.json()["id"] == second.json()["id"]
        account = await app.runtime.accounts.get_by_name("acme")
        assert account is not None
        assert account.balance_milli == 4000
        changed = await app.client.post(
            "/v1/images/generations", json={**body, "n": 2}, headers=headers
        )
        assert changed.status_code == 409
        assert changed.json()["error"]["type"] == "invalid_request_error"
