"""S3 object storage against a real SeaweedFS: the start-up check, presigned URLs, result links
streamed from the bucket (or handed out presigned), ``doctor`` and ``serve`` with a bad bucket."""

from __future__ import annotations

import asyncio
import io
import json
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from PIL import Image

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.factory import open_blob_store
from qwenedit.config import Settings
from qwenedit.doctor import probe_storage
from qwenedit.errors import ConfigError
from support.app import make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes
from support.seaweed import SeaweedS3, free_ports

QWENEDIT = str(Path(sys.executable).with_name("qwenedit"))


def s3_settings(seaweed: SeaweedS3, tmp_path: Path, **overrides: Any) -> Settings:
    return Settings(data_dir=tmp_path, **seaweed.settings(secrets.token_hex(4), **overrides))


@pytest.fixture
def s3_blobs(seaweed: SeaweedS3, tmp_path: Path) -> Iterator[BlobStore]:
    store = open_blob_store(s3_settings(seaweed, tmp_path))
    yield store
    store.close()


def edit(image: str) -> dict[str, object]:
    return {"model": "qwen-image-edit-plus", "prompt": "make it blue", "image_urls": [image]}


async def check_store(settings: Settings) -> None:
    """The start-up check of the store ``settings`` name."""
    blobs = open_blob_store(settings)
    try:
        await blobs.check()
    finally:
        blobs.close()


async def test_a_missing_bucket_fails_the_start_check(seaweed: SeaweedS3, tmp_path: Path) -> None:
    settings = s3_settings(seaweed, tmp_path, storage_url="s3://qwenedit-missing/x")
    with pytest.raises(ConfigError) as failure:
        await check_store(settings)
    message = str(failure.value)
    assert "s3://qwenedit-missing/x" in message
    assert seaweed.endpoint in message
    assert "the bucket does not exist" in message
    assert "\n" not in message


async def test_wrong_credentials_fail_the_start_check(seaweed: SeaweedS3, tmp_path: Path) -> None:
    for wrong in (
        {"aws_secret_access_key": "not-the-secret"},
        {"aws_access_key_id": "nobody"},
    ):
        settings = s3_settings(seaweed, tmp_path, **wrong)
        with pytest.raises(ConfigError, match="the credentials were refused") as failure:
            await check_store(settings)
        assert f"s3://{seaweed.bucket}/" in str(failure.value)
        assert "not-the-secret" not in str(failure.value)


async def test_an_unreachable_endpoint_fails_the_start_check(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    (closed,) = free_ports(1)
    endpoint = f"http://127.0.0.1:{closed}"
    settings = s3_settings(seaweed, tmp_path, aws_endpoint_url=endpoint, storage_timeout=2.0)
    with pytest.raises(ConfigError, match=f"at {endpoint}: cannot connect"):
        await check_store(settings)


def test_s3_without_credentials_is_a_config_error(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, storage_url="s3://some-bucket")
    with pytest.raises(ConfigError, match="needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"):
        open_blob_store(settings)


async def test_presigned_urls_download_without_credentials_and_expire(
    s3_blobs: BlobStore,
) -> None:
    await s3_blobs.put("task-1/1/0.png", b"picture")
    lasting = s3_blobs.presigned_url("task-1/1/0.png", timedelta(hours=1))
    brief = s3_blobs.presigned_url("task-1/1/0.png", timedelta(seconds=2))
    async with httpx.AsyncClient() as client:
        got = await client.get(lasting)
        assert (got.status_code, got.content) == (200, b"picture")
        assert (await client.get(brief)).status_code == 200
        await asyncio.sleep(2.5)  # SigV4 times are whole seconds
        assert (await client.get(brief)).status_code == 403
        assert (await client.get(lasting)).status_code == 200


async def test_the_local_store_has_no_presigned_urls(tmp_path: Path) -> None:
    store = open_blob_store(Settings(data_dir=tmp_path))
    with pytest.raises(ConfigError, match="QWENEDIT_RESULT_LINKS=signed"):
        store.presigned_url("a/b.png", timedelta(minutes=1))


@pytest.mark.parametrize("storage", ["local", "s3"])
async def test_result_links_stream_from_storage_and_a_deleted_one_is_404(
    request: pytest.FixtureRequest, db_url: str, tmp_path: Path, storage: str
) -> None:
    overrides: dict[str, Any] = {}
    if storage == "s3":
        seaweed: SeaweedS3 = request.getfixturevalue("seaweed")
        overrides = seaweed.settings(secrets.token_hex(4))
    settings = make_settings(db_url, tmp_path, **overrides)
    async with running_app(settings, SteppingEngine()) as app:
        key = await app.new_key("acme")
        created = (await app.create(key, edit(data_uri(png_bytes(512, 384))))).json()
        done = await app.wait_for(key, created["id"])
        assert done["status"] == "completed", done
        parts = urlsplit(done["results"][0])
        blob_key = parts.path.removeprefix("/v1/results/")
        stored = await app.runtime.blobs.get(blob_key)
        assert stored is not None
        got = await app.client.get(f"{parts.path}?{parts.query}")
        assert got.status_code == 200
        assert got.headers["content-type"] == "image/png"
        assert got.headers["content-length"] == str(len(stored))
        assert got.content == stored
        assert Image.open(io.BytesIO(got.content)).size == (1184, 896)
        assert await app.runtime.blobs.delete_prefix(f"{created['id']}/") == 1
        gone = await app.client.get(f"{parts.path}?{parts.query}")
        assert gone.status_code == 404
        assert gone.json()["error"]["type"] == "not_found_error"


async def test_presigned_results_download_from_the_bucket(
    seaweed: SeaweedS3, db_url: str, tmp_path: Path
) -> None:
    overrides = seaweed.settings(secrets.token_hex(4), result_links="presigned")
    async with running_app(make_settings(db_url, tmp_path, **overrides), SteppingEngine()) as app:
        key = await app.new_key("acme")
        created = (await app.create(key, edit(data_uri(png_bytes(512, 384))))).json()
        done = await app.wait_for(key, created["id"])
        assert done["status"] == "completed", done
        (url,) = done["results"]
        assert url.startswith(f"{seaweed.endpoint}/{seaweed.bucket}/")
        assert "X-Amz-Signature=" in url
        async with httpx.AsyncClient() as plain:
            got = await plain.get(url)
        assert got.status_code == 200
        assert Image.open(io.BytesIO(got.content)).size == (1184, 896)
        (expires_in,) = parse_qs(urlsplit(url).query)["X-Amz-Expires"]
        assert abs(int(expires_in) - app.settings.result_ttl) < 60


async def test_doctor_probes_the_store(seaweed: SeaweedS3, tmp_path: Path) -> None:
    report = await probe_storage(s3_settings(seaweed, tmp_path))
    assert report.ok, report
    assert report.location.startswith(f"s3://{seaweed.bucket}/")
    failed = await probe_storage(s3_settings(seaweed, tmp_path, aws_secret_access_key="wrong"))
    assert not failed.ok
    assert "the credentials were refused" in failed.detail
    local = await probe_storage(Settings(data_dir=tmp_path))
    assert local.ok, local
    assert list((tmp_path / "blobs").rglob("*probe*")) == []


def command_env(tmp_path: Path, seaweed: SeaweedS3, **extra: str) -> dict[str, str]:
    env = {
        key: value for key, value in os.environ.items() if not key.startswith(("QWENEDIT_", "AWS_"))
    }
    env.update(
        QWENEDIT_DATA_DIR=str(tmp_path),
        QWENEDIT_STORAGE_URL=f"s3://{seaweed.bucket}/{secrets.token_hex(4)}",
        AWS_ENDPOINT_URL=seaweed.endpoint,
        AWS_ACCESS_KEY_ID=seaweed.access_key_id,
        AWS_SECRET_ACCESS_KEY=seaweed.secret_access_key,
        AWS_REGION=seaweed.region,
    )
    env.update(extra)
    return env


def test_serve_with_a_missing_bucket_stops_with_one_line(
    seaweed: SeaweedS3, tmp_path: Path
) -> None:
    (port,) = free_ports(1)
    env = command_env(tmp_path, seaweed, QWENEDIT_STORAGE_URL="s3://qwenedit-missing")
    done = subprocess.run(
        [QWENEDIT, "serve", "--no-worker", "--port", str(port)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    assert "s3://qwenedit-missing" in done.stderr
    assert "the bucket does not exist" in done.stderr


@pytest.mark.slow
def test_doctor_json_reports_storage(seaweed: SeaweedS3, tmp_path: Path) -> None:
    done = subprocess.run(
        [QWENEDIT, "doctor", "--json"],
        env=command_env(tmp_path, seaweed),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    storage = json.loads(done.stdout)["storage"]
    assert storage["ok"] is True
    assert storage["location"].startswith(f"s3://{seaweed.bucket}/")
