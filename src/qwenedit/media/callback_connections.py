"""Kept-alive HTTP/1.1 connections for callbacks: h11 driven by an asyncio protocol.

A callback is one small POST whose answer is read only for its status. Through httpx each
one cost the event loop more than the rest of its task's HTTP work (its request and response
models, httpcore's pool and anyio's streams around h11: ~16% of the loop's time with 8 tasks
in flight, bench/vs_cog.py). Here h11, the same parser, is driven directly.

Connections are kept per receiver: the scheme, the name as sent (with the port) and the
checked address it was sent to, so a connection only ever carries requests for the name it
was opened, checked and (on TLS) verified for. An idle connection is closed after
``KEEPALIVE_SECONDS`` (before most servers close theirs), when its peer closes it or sends
anything unasked; at most ``IDLE_PER_RECEIVER`` are kept per receiver and ``MAX_RECEIVERS``
receivers at once (the least recently used is let go first). An answer is read up to
``RESPONSE_CAP`` bytes, its head up to ``HEAD_CAP``; a connection whose answer was not read to
its end is closed. A kept connection that ends before any answer (its receiver closed it
meanwhile) is replaced by a new one for the same request, once: the receiver may then get
that callback twice, which at-least-once delivery allows (its ``webhook-id`` is the same)."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections import OrderedDict, deque
from dataclasses import dataclass

import h11

from qwenedit.errors import OutboundRefused

KEEPALIVE_SECONDS = 2.0
"""How long an idle callback connection may be reused: shorter than the 5 s most servers keep
one (uvicorn's default), so a callback is seldom sent on a connection its receiver is closing."""
IDLE_PER_RECEIVER = 4
MAX_RECEIVERS = 32
RESPONSE_CAP = 64 * 1024
"""Bytes of a receiver's answer read before letting go of it."""
HEAD_CAP = 100 * 1024
"""Bytes of an answer's status line and headers at most (httpx's limit; h11's own is 16 KiB)."""


@dataclass(frozen=True)
class Receiver:
    """Where a callback goes: ``scheme``, ``netloc`` as sent in ``Host``, and the checked
    ``address`` and ``port`` to connect to; ``tls_name`` is the name TLS verifies (and sends
    as SNI unless it is an address)."""

    scheme: str
    netloc: str
    address: str
    port: int
    tls_name: str


class _Unanswered(ConnectionResetError):
    """The connection ended before any byte of an answer arrived."""


class _Connection(asyncio.Protocol):
    """One connection and its h11 state, with one exchange at a time."""

    def __init__(self) -> None:
        self.http = h11.Connection(h11.CLIENT, max_incomplete_event_size=HEAD_CAP)
        self.transport: asyncio.Transport | None = None
        self.expiry: asyncio.TimerHandle | None = None
        self._arrived: asyncio.Future[None] | None = None
        self._writable: asyncio.Future[None] | None = None
        self._exchanging = False
        self._ended = False
        self._lost: BaseException | None = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._exchanging:  # nothing was asked: the connection cannot be trusted
            if self.transport is not None:
                self.transport.close()  # it stays kept until its expiry takes it out
            return
        self.http.receive_data(data)
        self._wake()

    def eof_received(self) -> bool:
        self._end()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._lost = exc or ConnectionResetError("the connection was closed")
        self._end()
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)

    def pause_writing(self) -> None:
        self._writable = asyncio.get_running_loop().create_future()

    def resume_writing(self) -> None:
        if self._writable is not None and not self._writable.done():
            self._writable.set_result(None)
        self._writable = None

    def _end(self) -> None:
        if not self._ended:
            self._ended = True
            if self._exchanging:
                self.http.receive_data(b"")
        self._wake()

    def _wake(self) -> None:
        if self._arrived is not None and not self._arrived.done():
            self._arrived.set_result(None)

    # use

    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing() and not self._ended

    async def exchange(self, request: h11.Request, body: bytes) -> tuple[int, bool]:
        """Send the request; the answer's status, and whether the connection can carry
        another request. Raises ``_Unanswered``, and h11's and the socket's errors."""
        assert self.transport is not None
        self._exchanging = True
        send = self.http.send
        parts = (send(request), send(h11.Data(data=body)), send(h11.EndOfMessage()))
        self.transport.write(b"".join(part for part in parts if part is not None))
        if self._writable is not None:
            await self._writable
        status: int | None = None
        received = 0
        while True:
            try:
                event = self.http.next_event()
            except h11.RemoteProtocolError:
                if status is None and self._ended and not self.http.trailing_data[0]:
                    raise _Unanswered("the connection ended before an answer") from None
                raise
            if event is h11.NEED_DATA:
                if self._ended:
                    raise _Unanswered("the connection ended before an answer") from self._lost
                self._arrived = asyncio.get_running_loop().create_future()
                await self._arrived
            elif isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data) and status is not None:
                received += len(event.data)
                if received >= RESPONSE_CAP:
                    return status, False
            elif isinstance(event, h11.EndOfMessage) and status is not None:
                return status, self._next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                raise _Unanswered("the connection ended before an answer")

    def _next_cycle(self) -> bool:
        """Ready the connection for another request; ``False`` when it cannot carry one (it
        closes, or more arrived than was asked for)."""
        done = self.http.our_state is h11.DONE and self.http.their_state is h11.DONE
        if not done or self._ended or self.http.trailing_data[0]:
            return False
        self.http.start_next_cycle()
        self._exchanging = False
        return True

    def close(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
            self.expiry = None
        if self.transport is not None:
            self.transport.close()


class CallbackConnections:
    def __init__(self, ssl_context: ssl.SSLContext) -> None:
        self._ssl = ssl_context
        self._idle: OrderedDict[Receiver, deque[_Connection]] = OrderedDict()
        self._closed = False

    async def post(
        self, receiver: Receiver, target: bytes, headers: list[tuple[str, str]], body: bytes
    ) -> int:
        """POST ``body`` to ``target`` (path and query) at ``receiver``: the status code, or
        ``OutboundRefused`` when the exchange fails. The caller bounds the time it takes."""
        try:
            request = h11.Request(
                method="POST",
                target=target,
                headers=[("Host", receiver.netloc), *headers, ("Content-Length", str(len(body)))],
            )
            kept = self._take_idle(receiver)
            if kept is not None:
                with contextlib.suppress(_Unanswered):
                    return await self._exchange(receiver, kept, request, body)
            return await self._exchange(receiver, await self._connect(receiver), request, body)
        except (OSError, ValueError, h11.ProtocolError) as exc:
            raise OutboundRefused(f"the request failed ({type(exc).__name__})") from exc

    async def _exchange(
        self, receiver: Receiver, connection: _Connection, request: h11.Request, body: bytes
    ) -> int:
        try:
            status, reusable = await connection.exchange(request, body)
        except BaseException:
            connection.close()
            raise
        if reusable:
            self._put_idle(receiver, connection)
        else:
            connection.close()
        return status

    async def _connect(self, receiver: Receiver) -> _Connection:
        tls = receiver.scheme == "https"
        _, connection = await asyncio.get_running_loop().create_connection(
            _Connection,
            receiver.address,
            receiver.port,
            ssl=self._ssl if tls else None,
            server_hostname=receiver.tls_name if tls else None,
        )
        return connection

    def _take_idle(self, receiver: Receiver) -> _Connection | None:
        """The most recently used idle connection to ``receiver`` that is still open."""
        idle = self._idle.get(receiver)
        while idle:
            connection = idle.pop()
            if connection.expiry is not None:
                connection.expiry.cancel()
                connection.expiry = None
            if connection.usable():
                self._idle.move_to_end(receiver)
                return connection
            connection.close()
        return None

    def _put_idle(self, receiver: Receiver, connection: _Connection) -> None:
        idle = self._idle.get(receiver)
        if self._closed or (idle is not None and len(idle) >= IDLE_PER_RECEIVER):
            connection.close()
            return
        if idle is None:
            idle = self._idle[receiver] = deque()
            if len(self._idle) > MAX_RECEIVERS:
                _, dropped = self._idle.popitem(last=False)
                for old in dropped:
                    old.close()
        self._idle.move_to_end(receiver)
        idle.append(connection)
        connection.expiry = asyncio.get_running_loop().call_later(
            KEEPALIVE_SECONDS, self._expire, receiver, connection
        )

    def _expire(self, receiver: Receiver, connection: _Connection) -> None:
        connection.expiry = None
        idle = self._idle.get(receiver)
        if idle is not None and connection in idle:
            idle.remove(connection)
            if not idle:
                del self._idle[receiver]
        connection.close()

    async def aclose(self) -> None:
        """Close the idle connections; one in use is closed when its exchange ends."""
        self._closed = True
        connections = [connection for idle in self._idle.values() for connection in idle]
        self._idle.clear()
        for connection in connections:
            connection.close()
