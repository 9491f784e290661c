"""``HttpServer`` in-process on a loopback port: it has no tick, so what the tick did (the
``Date`` header, noticing ``should_exit``) must happen without one."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
import pytest
import uvicorn

from qwenedit.api.http_server import HttpServer


async def hello(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"hello"})


@asynccontextmanager
async def serving() -> AsyncIterator[tuple[HttpServer, asyncio.Task[None], str]]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(hello, lifespan="off", log_config=None, ws="none")
    server = HttpServer(config)
    running = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            assert not running.done(), running
            await asyncio.sleep(0.01)
        yield server, running, f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(running, timeout=10)
        sock.close()


async def test_answers_carry_the_date_of_the_second_they_were_made_in() -> None:
    async with serving() as (_server, _running, base), httpx.AsyncClient(base_url=base) as http:
        for _ in range(2):
            before = int(time.time())
            response = await http.get("/")
            after = time.time()
            assert response.text == "hello"
            assert response.headers["server"] == "uvicorn"
            date = parsedate_to_datetime(response.headers["date"]).timestamp()
            assert before <= date <= after
            await asyncio.sleep(1.1)  # the next answer is in another second


@pytest.mark.parametrize("from_thread", [False, True])
async def test_setting_should_exit_stops_the_idle_server(from_thread: bool) -> None:
    async with serving() as (server, running, _base):
        await asyncio.sleep(0.3)  # idle inside the main loop
        if from_thread:
            setter = threading.Thread(target=setattr, args=(server, "should_exit", True))
            setter.start()
            setter.join()
        else:
            server.should_exit = True
        await asyncio.wait_for(asyncio.shield(running), timeout=10)


def test_a_config_that_needs_the_tick_is_refused() -> None:
    with pytest.raises(ValueError, match="limit_max_requests"):
        HttpServer(uvicorn.Config(hello, limit_max_requests=10))
