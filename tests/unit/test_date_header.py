from __future__ import annotations

from qwenedit.api.http_server import DatedServerState

SERVER = [(b"server", b"uvicorn")]


class Clock:
    def __init__(self, now: float) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def test_the_date_header_is_the_second_the_headers_are_read_in() -> None:
    clock = Clock(1_764_000_000.2)
    state = DatedServerState(True, clock)
    state.default_headers = SERVER
    assert state.default_headers == [(b"date", b"Mon, 24 Nov 2025 16:00:00 GMT"), *SERVER]
    clock.now = 1_764_000_000.9
    assert state.default_headers[0] == (b"date", b"Mon, 24 Nov 2025 16:00:00 GMT")
    clock.now = 1_764_000_001.0
    assert state.default_headers == [(b"date", b"Mon, 24 Nov 2025 16:00:01 GMT"), *SERVER]
    clock.now = 1_764_003_600.5  # an hour on, nothing read in between
    assert state.default_headers[0] == (b"date", b"Mon, 24 Nov 2025 17:00:00 GMT")


def test_without_the_date_header_only_the_configured_headers() -> None:
    state = DatedServerState(False, Clock(1_764_000_000.0))
    state.default_headers = SERVER
    assert state.default_headers == SERVER
