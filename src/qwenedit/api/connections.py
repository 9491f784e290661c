"""HTTP/1.1 connections that a slow or idle client cannot hold open (issue 10).

uvicorn's h11 protocol has a keep-alive timeout, but nothing bounds a client that opens a
socket and sends nothing, sends its head a line at a time, or trickles its body; and its
``limit_concurrency`` answers 503 while still accepting every connection. This subclass adds:

- a head deadline: the request head must be complete ``HEADER_TIMEOUT`` seconds after the
  connection opened or, on a kept-alive connection, after the request's first byte;
- a body deadline that is a minimum rate, not a total: the body gets ``BODY_TIMEOUT`` seconds
  to start, plus one second for every ``BODY_MIN_RATE`` bytes that arrive (Apache's
  mod_reqtimeout rule). A 30 MiB upload at 1 MiB/s is never cut; a byte every 10 s is cut
  after about ``BODY_TIMEOUT`` s. The clock stops while the application, not the client, is
  the one not reading;
- ``KEEPALIVE_TIMEOUT`` between requests on one connection;
- at most ``MAX_CONNECTIONS`` open connections: one more is answered 503 and closed;
- a request whose answer was sent before its body was read (a 401, a 413) is not read any
  further: the server half-closes and drops what still comes for ``LINGER_SECONDS``, so the
  client still reads the answer, then closes;
- h11's own "invalid HTTP request" 400 is sent in the error envelope.

A client cut at a deadline gets a 408 in the error envelope when it has sent part of a request
and no answer has started; an idle connection is just closed. The deadlines run on the event
loop's timers: one per connection, re-armed rather than polled."""

from __future__ import annotations

import asyncio
from typing import Any, ClassVar, Literal

import h11
from uvicorn.config import Config
from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.server import ServerState

from qwenedit.api.errors import envelope
from qwenedit.errors import ApiError, InvalidRequest, RequestTimeout, ServiceUnavailable
from qwenedit.setting_groups import ServerSettings

LINGER_SECONDS = 2.0
"""How long a connection that will not be read further keeps dropping what arrives."""
FULL_RETRY_AFTER = 1

Deadline = Literal["head", "body", "linger"]


def raw_response(error: ApiError, headers: dict[str, str] | None = None) -> bytes:
    """A complete HTTP/1.1 answer that closes the connection, for moments when there is no
    request to answer through h11 (an incomplete head, a connection over the cap)."""
    body = envelope(error).model_dump_json().encode()
    lines = [
        f"HTTP/1.1 {error.status} {_REASONS.get(error.status, 'Error')}",
        "content-type: application/json",
        f"content-length: {len(body)}",
        "connection: close",
        *(f"{name}: {value}" for name, value in (headers or {}).items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


_REASONS = {400: "Bad Request", 408: "Request Timeout", 503: "Service Unavailable"}


class GuardedH11Protocol(H11Protocol):
    """One connection. ``limits`` is set on the subclass ``protocol_for`` makes."""

    limits: ClassVar[ServerSettings]

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.timeout_keep_alive = self.limits.keepalive_timeout  # type: ignore[assignment]
        self._deadline: asyncio.TimerHandle | None = None
        self._deadline_kind: Deadline | None = None
        self._body_due = 0.0
        self._refused = False
        self._lingering = False

    # connection life

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        if len(self.connections) >= self.limits.max_connections:
            self._refused = True
            self.transport = transport
            error = ServiceUnavailable(
                "The server has too many open connections", retry_after=FULL_RETRY_AFTER
            )
            transport.write(raw_response(error, {"retry-after": str(FULL_RETRY_AFTER)}))
            self._linger()
            return
        super().connection_made(transport)
        self._arm("head", self.limits.header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        if self._refused:
            return
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return
        if self._deadline_kind is None and self.conn.their_state is h11.IDLE:
            self._arm("head", self.limits.header_timeout)  # the next request's first byte
        super().data_received(data)
        self._follow(len(data))

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        if self.conn.their_state is h11.SEND_BODY:
            self._unset_keepalive_if_required()
            self._linger()
        else:
            self._follow(0)

    def send_400_response(self, msg: str) -> None:
        """h11 could not parse the request: the envelope instead of uvicorn's plain text."""
        error = InvalidRequest("The request is not valid HTTP/1.1, or its head is too large")
        body = envelope(error).model_dump_json().encode()
        headers = [(b"content-type", b"application/json"), (b"connection", b"close")]
        self.transport.write(self.conn.send(h11.Response(status_code=400, headers=headers)))
        self.transport.write(self.conn.send(h11.Data(data=body)))
        self.transport.write(self.conn.send(h11.EndOfMessage()))
        self.transport.close()

    # deadlines

    def _follow(self, received: int) -> None:
        """Move the deadline along with the request: the head deadline holds until h11 has the
        whole head, the body deadline until it has the whole body; between requests uvicorn's
        keep-alive timer runs instead."""
        state = self.conn.their_state
        if state is h11.SEND_BODY:
            if self._deadline_kind != "body":
                self._body_due = self.loop.time() + self.limits.body_timeout
                self._arm("body", self.limits.body_timeout)
            self._body_due += received / self.limits.body_min_rate
        elif state is h11.IDLE:
            if self._has_partial_head():
                if self._deadline_kind != "head":
                    self._arm("head", self.limits.header_timeout)
            elif received == 0:
                self._disarm()
        else:
            self._disarm()

    def _arm(self, kind: Deadline, seconds: float) -> None:
        self._disarm()
        self._deadline_kind = kind
        self._deadline = self.loop.call_later(seconds, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        self._deadline = None
        self._deadline_kind = None

    def _expired(self) -> None:
        kind = self._deadline_kind
        self._deadline = None
        self._deadline_kind = None
        if self.transport.is_closing():
            return
        if kind == "linger":
            self.transport.close()
        elif kind == "head":
            self._cut("The request head did not arrive in time", partial=self._has_partial_head())
        elif kind == "body":
            now = self.loop.time()
            if now < self._body_due:
                self._arm("body", self._body_due - now)
            elif self.flow.read_paused:  # the application is not reading: not the client's fault
                self._body_due = now + self.limits.body_timeout
                self._arm("body", self.limits.body_timeout)
            else:
                self._cut("The request body arrived too slowly", partial=True)

    def _has_partial_head(self) -> bool:
        return bool(self.conn.trailing_data[0])

    def _cut(self, message: str, *, partial: bool) -> None:
        """End a request the client is too slow with: a 408 when it sent part of one and no
        answer has started, then close. The application, if running, sees a disconnect."""
        started = self.cycle is not None and self.cycle.response_started
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.disconnected = True
            self.cycle.message_event.set()
        if partial and not started:
            self.transport.write(raw_response(RequestTimeout(message)))
        self.transport.close()

    def _linger(self) -> None:
        """Stop reading requests on this connection: half-close, drop what still arrives, and
        close after ``LINGER_SECONDS`` (or when the client closes its side)."""
        self._lingering = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self._arm("linger", LINGER_SECONDS)


def protocol_for(limits: ServerSettings) -> type[GuardedH11Protocol]:
    """The protocol class uvicorn instantiates per connection, with ``limits`` bound."""
    return type("QwenEditH11Protocol", (GuardedH11Protocol,), {"limits": limits})
