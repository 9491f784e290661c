"""Bodies are read only after the key is checked, and an upload stops being read at the first
byte past its cap (issue 10). The app is called as an ASGI app, so the test sees every read."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, MutableMapping
from pathlib import Path
from typing import Any

import pytest

from support.app import RunningApp, make_settings, running_app

BOUNDARY = "hostile-boundary"
CHUNK = 16 * 1024


def scope(method: str, path: str, headers: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("203.0.113.9", 40000),
        "server": ("testserver", 80),
    }


@pytest.mark.parametrize(
    ("path", "content_type"),
    [
        ("/v1/files", f"multipart/form-data; boundary={BOUNDARY}"),
        ("/v1/images/generations", "application/json"),
    ],
)
@pytest.mark.parametrize("authorization", [None, "Bearer qe_nobody00_wrong"])
async def test_a_client_without_a_valid_key_is_answered_before_its_body_is_read(
    tmp_path: Path, path: str, content_type: str, authorization: str | None
) -> None:
    headers = {"content-type": content_type, "content-length": str(30 * 1024 * 1024)}
    if authorization:
        headers["authorization"] = authorization
    reads = 0
    never = asyncio.Event()

    async def receive() -> dict[str, Any]:
        nonlocal reads
        reads += 1
        await never.wait()  # the body never comes
        raise AssertionError("unreachable")

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    settings = make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)
    async with running_app(settings) as app:
        await asyncio.wait_for(app.app(scope("POST", path, headers), receive, send), 10)
    assert reads == 0
    assert sent[0]["status"] == 401
    assert b"authentication_error" in sent[1]["body"]


def form(file_bytes: int) -> list[bytes]:
    """A multipart body with one text field and a file of ``file_bytes`` bytes, in chunks."""
    head = (
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="note"\r\n\r\nhello\r\n'
        f"--{BOUNDARY}\r\n"
        'Content-Disposition: form-data; name="file"; filename="x.png"\r\n'
        "Content-Type: application/octet-stream\r\n\r\n"
    ).encode()
    payload = b"\x89PNG" + b"\0" * (file_bytes - 4)
    chunks = [head] + [payload[i : i + CHUNK] for i in range(0, len(payload), CHUNK)]
    return [*chunks, f"\r\n--{BOUNDARY}--\r\n".encode()]


async def upload_chunked(app: RunningApp, key: str, chunks: list[bytes]) -> tuple[Any, int]:
    """POST the chunks without a Content-Length; returns the answer and the bytes read."""
    consumed = 0

    async def body() -> AsyncIterator[bytes]:
        nonlocal consumed
        for chunk in chunks:
            consumed += len(chunk)
            yield chunk

    response = await app.client.post(
        "/v1/files",
        content=body(),
        headers={
            "Authorization": f"Bearer {key}",
            "Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
        },
    )
    return response, consumed


@pytest.mark.parametrize("file_bytes", [200 * 1024, 600 * 1024])
async def test_an_upload_over_the_cap_is_a_413_read_no_further(
    tmp_path: Path, file_bytes: int
) -> None:
    settings = make_settings(
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        tmp_path,
        max_image_bytes=100 * 1024,
        max_body_bytes=500 * 1024,
    )
    async with running_app(settings) as app:
        key = await app.new_key("acme")
        response, consumed = await upload_chunked(app, key, form(file_bytes))
    assert response.status_code == 413, response.text
    assert response.json()["error"]["type"] == "request_too_large_error"
    assert consumed <= 100 * 1024 + 2 * CHUNK
    assert not any((tmp_path / "blobs").rglob("*"))


@pytest.mark.parametrize(
    ("content", "content_type", "message"),
    [
        (b"not a form", "multipart/form-data; boundary=b", "malformed"),
        (b"--b\r\nContent-Disposition: form-data; name=x\r\n\r\n1\r\n--b--\r\n", None, "no field"),
        (b"--b\r\nContent-Disposition: form-data; name=file\r\n\r\n\x89PNG", None, "ends inside"),
        (b"{}", "application/json", "multipart/form-data"),
    ],
)
async def test_a_malformed_upload_is_a_400(
    tmp_path: Path, content: bytes, content_type: str | None, message: str
) -> None:
    async with running_app(make_settings(f"sqlite:///{tmp_path / 'db.sqlite'}", tmp_path)) as app:
        key = await app.new_key("acme")
        response = await app.client.post(
            "/v1/files",
            content=content,
            headers={
                "Authorization": f"Bearer {key}",
                "Content-Type": content_type or "multipart/form-data; boundary=b",
            },
        )
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == "file"
    assert message in response.json()["error"]["message"]
