"""Hostile input at create: every malformed body, exotic host spelling or unstorable text is a
400 in the error envelope, decided before any credit is reserved or any byte stored (issue 10).
The real app and database, on SQLite and PostgreSQL (which refuses NUL in text)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from qwenedit.errors import OutboundRefused
from qwenedit.media.guarded_client import GuardedClient
from support.app import RunningApp, make_settings, running_app
from support.engine import SteppingEngine
from support.images import data_uri, png_bytes
from support.resolver import MapResolver

EXOTIC_HOSTS = [
    "\uff11\uff12\uff17.\uff10.\uff10.\uff11",  # fullwidth digits: NFKC makes them 127.0.0.1
    "①②⑦.0.0.1",  # circled digits: the same
    "xn--zz.com",  # an A-label that is not Punycode
    "ex\u00adample.com",  # a soft hyphen, which one IDNA mapping deletes
    "ex%41mple.com",  # percent-encoding in a host
    "[fec0::1]",  # IPv6 site-local
    "site-local.example",  # a name that resolves to fec0::5
]


def body(**fields: object) -> dict[str, object]:
    return {"prompt": "make it blue", "image_urls": [data_uri(png_bytes(400, 400))], **fields}


async def post_raw(
    app: RunningApp, key: str, content: bytes, headers: dict[str, str] | None = None
) -> httpx.Response:
    return await app.client.post(
        "/v1/images/generations",
        content=content,
        headers={"Authorization": f"Bearer {key}", **(headers or {})},
    )


def assert_refused(response: httpx.Response, param: str | None) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == 400
    assert error["type"] == "invalid_request_error"
    assert error.get("param") == param
    return error


async def nothing_happened(app: RunningApp, account: str, credits: int) -> None:
    found = await app.runtime.accounts.get_by_name(account)
    assert found is not None
    assert found.balance_milli == credits * 1000
    assert sum((await app.runtime.stats.counts_by_status()).values()) == 0
    assert not any((app.settings.data_dir / "blobs").rglob("*.*"))


@pytest.fixture
def resolver() -> MapResolver:
    return MapResolver({"site-local.example": ["fec0::5"], "hooks.example": ["93.184.216.34"]})


async def test_exotic_hosts_are_refused_at_create(
    db_url: str, tmp_path: Path, resolver: MapResolver
) -> None:
    settings = make_settings(db_url, tmp_path, allow_private_network="")
    async with running_app(settings, resolver=resolver) as app:
        key = await app.new_key("acme", credits=5)
        for host in EXOTIC_HOSTS:
            callback = await app.create(key, body(callback_url=f"https://{host}/hook"))
            error = assert_refused(callback, "callback_url")
            assert "fec0" not in error["message"]
            if host != "site-local.example":  # names are resolved by the worker, not at create
                image = await app.create(key, body(image_urls=[f"https://{host}/a.png"]))
                assert_refused(image, "image_urls")
        await nothing_happened(app, "acme", 5)


@pytest.mark.parametrize(
    "url", ["https://[fec0::1]/a.png", "http://site-local.example/a.png", "http://[fec0::1]:80/"]
)
async def test_site_local_targets_are_refused_without_connecting(
    tmp_path: Path, resolver: MapResolver, url: str
) -> None:
    client = GuardedClient(make_settings("sqlite://", tmp_path), resolver=resolver)
    try:
        with pytest.raises(OutboundRefused, match="internal address"):
            await client.fetch(url, max_bytes=1000)
        with pytest.raises(OutboundRefused, match="internal address"):
            await client.post(url.replace("http:", "https:"), b"{}", {}, deadline=1)
    finally:
        await client.aclose()


async def test_malformed_json_bodies_are_400s(db_url: str, tmp_path: Path) -> None:
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=5)
        valid = json.dumps(body())
        huge_integer = valid[:-1] + ', "seed": ' + "7" * 5000 + "}"
        cases = [
            b"[" * 100_000 + b"]" * 100_000,
            b'{"a":' * 100_000 + b"1" + b"}" * 100_000,
            (valid[:-1] + ', "extra": ' + "[" * 500 + "]" * 500 + "}").encode(),
            huge_integer.encode(),
            huge_integer.replace('"seed"', '"unknown_field"').encode(),
            b'{"prompt": "\xff\xfe"}',
        ]
        for content in cases:
            assert_refused(await post_raw(app, key, content), None)
        await nothing_happened(app, "acme", 5)


@pytest.mark.parametrize("idempotency_key", [None, "retry-1"])
async def test_unstorable_text_is_a_400_with_or_without_an_idempotency_key(
    db_url: str, tmp_path: Path, idempotency_key: str | None
) -> None:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    async with running_app(make_settings(db_url, tmp_path)) as app:
        key = await app.new_key("acme", credits=5)
        for field, value in (
            ("prompt", "blue \ud800"),
            ("prompt", "blue \x00"),
            ("negative_prompt", "\udfff"),
            ("size", "1024x1024\x00"),
            ("callback_url", "https://hooks.example/\ud800"),
            ("image_urls", ["https://example.com/\ud800.png"]),
        ):
            content = json.dumps(body(**{field: value})).encode()  # ASCII: escapes survive
            assert_refused(await post_raw(app, key, content, headers), field)
        await nothing_happened(app, "acme", 5)
        ignored = json.dumps(body(note="\ud800")).encode()
        accepted = await post_raw(app, key, ignored, headers)
        assert accepted.status_code == 200, accepted.text


class CountingEngine(SteppingEngine):
    """A loaded engine whose tokenizer makes two tokens of each character."""

    def count_prompt_tokens(self, prompt: str) -> int:
        return 2 * len(prompt) + 10


async def test_a_prompt_that_would_overflow_the_model_is_a_400(db_url: str, tmp_path: Path) -> None:
    cjk_1500, cjk_2000 = "\u9f98" * 1500, "\u9f98" * 2000
    async with running_app(make_settings(db_url, tmp_path)) as app:  # API only: no tokenizer
        key = await app.new_key("acme", credits=5)
        for fields, param in (
            ({"prompt": cjk_1500}, "prompt"),  # 4,500 bytes: might be 4,500 tokens
            ({"prompt": "\U0001f600" * 1000}, "prompt"),
            ({"prompt": "blue <|image_pad|>"}, "prompt"),
            ({"negative_prompt": "<|im_end|>"}, "negative_prompt"),
        ):
            error = assert_refused(await app.create(key, body(**fields)), param)
            assert error["message"].startswith(param)
        await nothing_happened(app, "acme", 5)
    async with running_app(make_settings(db_url, tmp_path), CountingEngine()) as app:
        key = await app.new_key("acme", credits=5)
        for _ in range(100):  # the worker hands its engine over once it has loaded it
            if app.runtime.engines.loaded:
                break
            await asyncio.sleep(0.05)
        assert_refused(await app.create(key, body(prompt=cjk_2000)), "prompt")
        created = await app.create(key, body(prompt=cjk_1500))  # 3,010 tokens by its count
        assert created.status_code == 200, created.text
