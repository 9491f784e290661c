"""A TCP forwarder on loopback that a test can cut and restore: the database behind it stays
real, but for a while it cannot be reached (refused, or hanging), as in a network outage."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager, suppress
from typing import Any


class TcpProxy:
    """Forwards ``127.0.0.1:port`` to ``target``. Runs its own event loop in a thread, so both
    sync tests (a server process) and async tests (the app in the test's loop) can use it."""

    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self._target = (target_host, target_port)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.Server | None = None
        self._transports: set[asyncio.BaseTransport] = set()
        self._handlers: set[asyncio.Task[Any]] = set()
        """The connections being forwarded, held here: asyncio drops its own hold on a stream
        server's handler once the connection is lost (a cut), and a handler collected while
        still pending is logged as an error, which the outage tests count."""
        self._hanging = False
        self.port = 0

    def _call(self, coroutine: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coroutine, self._loop).result(timeout=10)

    def start(self) -> None:
        self._thread.start()
        self._call(self._listen())

    def cut(self) -> None:
        """Close every forwarded connection and stop listening: connects are refused."""
        self._call(self._close())

    def hang(self) -> None:
        """Close every forwarded connection, then accept connections and never answer."""
        self._call(self._close())
        self._hanging = True
        self._call(self._listen())

    def restore(self) -> None:
        """Forward again on the same port."""
        self._call(self._close())
        self._hanging = False
        self._call(self._listen())

    def close(self) -> None:
        self._call(self._close())
        self._call(self._end_handlers())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for transport in list(self._transports):
            assert isinstance(transport, asyncio.WriteTransport)
            transport.abort()
        self._transports.clear()

    async def _end_handlers(self) -> None:
        for handler in self._handlers:
            handler.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        handler = asyncio.current_task()
        assert handler is not None
        self._handlers.add(handler)
        handler.add_done_callback(self._handlers.discard)
        self._transports.add(writer.transport)
        if self._hanging:
            return
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*self._target)
        except OSError:
            writer.transport.abort()
            return
        self._transports.add(upstream_writer.transport)
        pipes = {
            asyncio.ensure_future(_pipe(reader, upstream_writer)),
            asyncio.ensure_future(_pipe(upstream_reader, writer)),
        }
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for transport in (writer.transport, upstream_writer.transport):
            transport.abort()
            self._transports.discard(transport)
        for pipe in pipes:
            pipe.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with suppress(OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()


@contextmanager
def tcp_proxy(target_port: int) -> Iterator[TcpProxy]:
    proxy = TcpProxy(target_port)
    proxy.start()
    try:
        yield proxy
    finally:
        proxy.close()
