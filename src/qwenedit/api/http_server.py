"""uvicorn's ``Server`` without its 0.1 s tick, so an idle ``serve`` sleeps until something
happens.

uvicorn's ``main_loop`` wakes ten times a second to refresh the ``Date`` header (once a second)
and to see whether ``should_exit`` was set; on our machines each wake of the event loop costs
about 0.3 ms of CPU, half of what an idle server spent. Here:

- the ``Date`` header is made when a request reads the default headers, so it is the second the
  request arrived in, whatever the loop did before;
- ``should_exit`` wakes the main loop when it is set, from a signal handler (SIGTERM, SIGINT),
  from a callback on the loop or from another thread; shutdown then runs as in uvicorn
  (connections asked to close, the graceful timeout, the lifespan shutdown).

uvicorn's tick also served ``limit_max_requests`` and ``callback_notify`` (gunicorn workers);
``serve`` uses neither, and this server refuses a config that sets them."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from email.utils import formatdate

import uvicorn
from uvicorn.server import ServerState


class DatedServerState(ServerState):
    """``default_headers`` are the configured ones; reading them adds the current ``Date``."""

    def __init__(self, with_date: bool, clock: Callable[[], float] = time.time) -> None:
        self._with_date = with_date
        self._clock = clock
        self._second = -1
        self._date = b""
        super().__init__()

    @property
    def default_headers(self) -> list[tuple[bytes, bytes]]:
        if not self._with_date:
            return self._configured
        second = int(self._clock())
        if second != self._second:
            self._second, self._date = second, formatdate(second, usegmt=True).encode()
        return [(b"date", self._date), *self._configured]

    @default_headers.setter
    def default_headers(self, headers: list[tuple[bytes, bytes]]) -> None:
        self._configured = headers


class HttpServer(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        if config.limit_max_requests is not None or config.callback_notify is not None:
            raise ValueError("HttpServer has no tick: limit_max_requests and callback_notify")
        self._exit_requested = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._should_exit = False
        super().__init__(config)
        self.server_state = DatedServerState(config.date_header)

    @property
    def should_exit(self) -> bool:
        return self._should_exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._should_exit = value
        loop = self._loop
        if value and loop is not None:
            loop.call_soon_threadsafe(self._exit_requested.set)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        self.server_state.default_headers = self.config.encoded_headers  # made by config.load()
        await super().startup(sockets)

    async def main_loop(self) -> None:
        """Sleep until ``should_exit`` is set."""
        self._loop = asyncio.get_running_loop()
        try:
            if not self.should_exit:  # set before the line above, it scheduled no wake-up
                await self._exit_requested.wait()
        finally:
            self._loop = None
