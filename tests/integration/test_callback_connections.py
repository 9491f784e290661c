"""Callback connections against a raw loopback receiver that misbehaves on purpose."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from qwenedit.config import Settings
from qwenedit.errors import OutboundRefused
from qwenedit.media import callback_connections
from qwenedit.media.guarded_client import GuardedClient

OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"

Script = Callable[[int, int], bytes | None]
"""What the receiver does with request number ``n`` (from 0) on connection number ``c``:
the bytes it answers, or ``None`` to close that connection without answering."""


class RawReceiver:
    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[int, bytes]] = []
        self.heads: list[bytes] = []
        self.port = 0
        self.writers: list[asyncio.StreamWriter] = []
        self.handlers: list[asyncio.Task[None]] = []

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        number = self.connections
        self.connections += 1
        self.writers.append(writer)
        this = asyncio.current_task()
        assert this is not None
        self.handlers.append(this)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = next(
                    int(line.split(b":")[1])
                    for line in head.split(b"\r\n")
                    if line.lower().startswith(b"content-length:")
                )
                body = await reader.readexactly(length)
                answer = self.script(len(self.requests), number)
                self.requests.append((number, body))
                self.heads.append(head)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


@asynccontextmanager
async def raw_receiver(script: Script) -> AsyncIterator[RawReceiver]:
    receiver = RawReceiver(script)
    server = await asyncio.start_server(receiver._serve, "127.0.0.1", 0)
    receiver.port = server.sockets[0].getsockname()[1]
    try:
        yield receiver
    finally:
        server.close()
        for writer in receiver.writers:
            writer.transport.abort()  # each handler sees its connection end, none is cancelled
        await asyncio.gather(*receiver.handlers, return_exceptions=True)


def header(head: bytes, name: bytes) -> bytes | None:
    for line in head.split(b"\r\n")[1:]:
        key, _, value = line.partition(b":")
        if key.strip().lower() == name:
            return value.strip()
    return None


@pytest.fixture
def client(tmp_path: Path) -> GuardedClient:
    return GuardedClient(
        Settings(
            data_dir=tmp_path, allow_private_network="127.0.0.0/8", allow_insecure_callbacks=True
        )
    )


async def post_all(client: GuardedClient, url: str, bodies: list[bytes]) -> list[int]:
    try:
        return [await client.post(url, body, {}, deadline=5) for body in bodies]
    finally:
        await client.aclose()


async def test_a_kept_connection_carries_the_next_callback(client: GuardedClient) -> None:
    async with raw_receiver(lambda n, c: OK) as receiver:
        assert await post_all(client, receiver.url, [b"1", b"2", b"3"]) == [200] * 3
    assert receiver.requests == [(0, b"1"), (0, b"2"), (0, b"3")]


async def test_a_kept_connection_closed_unanswered_is_replaced_once(
    client: GuardedClient,
) -> None:
    """The receiver closes its kept connection as the second callback arrives: that callback
    goes again on a new connection (at least once; the webhook id lets a receiver dedupe)."""
    async with raw_receiver(lambda n, c: None if (n, c) == (1, 0) else OK) as receiver:
        assert await post_all(client, receiver.url, [b"1", b"2"]) == [200, 200]
    assert receiver.requests == [(0, b"1"), (0, b"2"), (1, b"2")]


async def test_a_new_connection_closed_unanswered_is_a_failure(client: GuardedClient) -> None:
    async with raw_receiver(lambda n, c: None) as receiver:
        with pytest.raises(OutboundRefused, match="the request failed"):
            await post_all(client, receiver.url, [b"1"])
    assert receiver.connections == 1


async def test_an_answer_that_closes_or_sends_more_is_not_kept(client: GuardedClient) -> None:
    answers = [
        b"HTTP/1.1 204 No Content\r\nconnection: close\r\n\r\n",
        OK + b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",  # an answer nobody asked for
        OK,
        OK,
    ]
    async with raw_receiver(lambda n, c: answers[n]) as receiver:
        statuses = await post_all(client, receiver.url, [b"1", b"2", b"3", b"4"])
    assert statuses == [204, 200, 200, 200]
    assert [connection for connection, _ in receiver.requests] == [0, 1, 2, 2]


async def test_an_idle_connection_expires(
    client: GuardedClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(callback_connections, "KEEPALIVE_SECONDS", 0.05)
    async with raw_receiver(lambda n, c: OK) as receiver:
        try:
            assert await client.post(receiver.url, b"1", {}, deadline=5) == 200
            await asyncio.sleep(0.2)
            assert await client.post(receiver.url, b"2", {}, deadline=5) == 200
        finally:
            await client.aclose()
    assert [connection for connection, _ in receiver.requests] == [0, 1]


async def test_a_malformed_answer_is_a_failure(client: GuardedClient) -> None:
    async with raw_receiver(lambda n, c: b"SMTP ready\r\n\r\n") as receiver:
        with pytest.raises(OutboundRefused, match="the request failed"):
            await post_all(client, receiver.url, [b"1"])


async def test_credentials_in_the_url_are_sent_as_basic_auth(client: GuardedClient) -> None:
    async with raw_receiver(lambda n, c: OK) as receiver:
        url = receiver.url.replace("http://", "http://hook%40user:s%3Acret@")
        try:
            assert await client.post(url, b"1", {}, deadline=5) == 200
            assert await client.post(url, b"2", {"Authorization": "Bearer own"}, deadline=5) == 200
        finally:
            await client.aclose()
    expected = b"Basic " + base64.b64encode(b"hook@user:s:cret")
    assert [header(head, b"authorization") for head in receiver.heads] == [
        expected,
        b"Bearer own",
    ]
    assert header(receiver.heads[0], b"host") == f"127.0.0.1:{receiver.port}".encode()


async def test_an_answer_with_a_large_head_is_read(client: GuardedClient) -> None:
    cookie = b"set-cookie: " + b"c" * 40_000 + b"\r\n"
    answer = b"HTTP/1.1 200 OK\r\n" + cookie + b"content-length: 0\r\n\r\n"
    async with raw_receiver(lambda n, c: answer) as receiver:
        assert await post_all(client, receiver.url, [b"1"]) == [200]
