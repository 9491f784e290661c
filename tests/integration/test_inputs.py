"""Inputs stored at create: an inline image is checked in full before any credit is reserved;
a small one stays in the task row, a larger one is written to the blob store and referenced by
the task (never its base64); both are deleted with the task at retention."""

from __future__ import annotations

import asyncio
import io
import struct
import time
import zlib
from pathlib import Path

import pytest
from PIL import Image
from sqlalchemy import select

from qwenedit.services.inputs import INLINE_MAX_BYTES
from qwenedit.store.tables import tasks as task_table
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, noise_png_bytes, png_bytes


def edit(*urls: str) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": list(urls), "prompt_extend": False}


async def stored_params(app: RunningApp, task_id: str) -> str:
    async with app.runtime.db.transaction(write=False) as connection:
        params = await connection.scalar(
            select(task_table.c.params).where(task_table.c.id == task_id)
        )
    assert isinstance(params, str)
    return params


def blob_files(root: Path) -> list[str]:
    return sorted(str(path.relative_to(root)) for path in root.rglob("*") if path.is_file())


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG whose header claims a huge image, and a few bytes of data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + body))
        return struct.pack(">I", len(body)) + kind + body + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", b"\x00" * 64) + chunk(b"IEND", b"")


def gif_bytes() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (400, 400)).save(buffer, format="GIF")
    return buffer.getvalue()


async def test_a_large_inline_image_is_stored_and_the_task_keeps_a_reference(
    db_url: str, tmp_path: Path
) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        inline = noise_png_bytes()
        assert len(inline) > INLINE_MAX_BYTES
        created = (await app.create(key, edit(data_uri(inline)))).json()
        params = await stored_params(app, created["id"])
        assert "base64" not in params and len(params) < 1000
        assert f'"stored:inputs/{created["id"]}/0"' in params
        assert (tmp_path / "blobs" / "inputs" / created["id"] / "0").read_bytes() == inline
        done = await app.wait_for(key, created["id"])
        assert done["status"] == "completed", done


async def test_a_small_inline_image_stays_in_the_task_row(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        small = png_bytes(512, 384)
        assert len(small) <= INLINE_MAX_BYTES
        created = (await app.create(key, edit(data_uri(small, kind="jpeg")))).json()
        params = await stored_params(app, created["id"])
        assert data_uri(small) in params  # its type as its bytes say, not as the client did
        assert blob_files(tmp_path / "blobs") == []
        done = await app.wait_for(key, created["id"])
        assert done["status"] == "completed", done


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (png_bytes(512, 512)[:200], "corrupt or truncated"),
        (gif_bytes(), "unsupported image format"),
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", "unsupported image format"),
        (png_header_claiming(50000, 50000), "pixels"),
    ],
    ids=["truncated-png", "gif-labelled-png", "svg-labelled-png", "50000x50000-header"],
)
async def test_a_bad_inline_image_is_a_400_that_costs_and_stores_nothing(
    db_url: str, tmp_path: Path, content: bytes, reason: str
) -> None:
    async with running_app(make_settings(db_url, tmp_path), SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        good = data_uri(noise_png_bytes())
        response = await app.create(key, edit(good, data_uri(content)))
        assert response.status_code == 400
        error = response.json()["error"]
        assert (error["param"], error["type"]) == ("image_urls", "invalid_request_error")
        assert error["message"].startswith("image_urls[2]: ") and reason in error["message"]
        account = await app.runtime.accounts.get_by_name("acme")
        assert account is not None and account.balance_milli == 5000
        assert sum((await app.runtime.stats.counts_by_status()).values()) == 0
        assert blob_files(tmp_path / "blobs") == []


async def test_a_refused_create_leaves_no_stored_input(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=0)
        response = await app.create(key, edit(data_uri(noise_png_bytes())))
        assert response.status_code == 402
        assert blob_files(tmp_path / "blobs") == []


async def test_stored_inputs_and_results_are_deleted_with_the_task(
    db_url: str, tmp_path: Path
) -> None:
    settings = make_settings(db_url, tmp_path, task_retention=0.5)
    async with running_app(settings, SteppingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        created = (await app.create(key, edit(data_uri(noise_png_bytes())))).json()
        async with app.runtime.db.transaction(write=False) as connection:
            assert await connection.scalar(select(task_table.c.id)) == created["id"]
        deadline = time.monotonic() + 30
        while blob_files(tmp_path / "blobs") or await app.runtime.stats.counts_by_status() != {
            "pending": 0,
            "processing": 0,
            "completed": 0,
            "failed": 0,
        }:
            assert time.monotonic() < deadline, blob_files(tmp_path / "blobs")
            await asyncio.sleep(0.1)
