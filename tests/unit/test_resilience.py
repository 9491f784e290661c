"""The retry policy: the backoff schedule, which errors are outages, one log line per outage."""

from __future__ import annotations

import asyncio
import errno
import logging
import random

import asyncpg  # type: ignore[import-untyped]
import pytest
from sqlalchemy import exc as sa

from qwenedit.domain.task import ErrorCode
from qwenedit.errors import (
    DependencyUnavailable,
    StorageError,
    StorageUnavailable,
    TaskFailure,
)
from qwenedit.resilience import (
    DATABASE,
    STORAGE,
    Backoff,
    Outages,
    Retry,
    dependency_of,
    describe,
)

FAST = Backoff(first=0.001, cap=0.004)


def test_backoff_doubles_from_first_to_the_cap_within_the_jitter() -> None:
    backoff = Backoff(first=0.1, cap=5.0, jitter=0.2)
    rng = random.Random(1)
    for failures in range(1, 30):
        base = min(5.0, 0.1 * 2 ** (failures - 1))
        delay = backoff.delay(failures, rng)
        assert base * 0.8 <= delay <= min(5.0, base * 1.2)


def test_backoff_never_exceeds_the_cap_and_is_spread_there() -> None:
    backoff = Backoff(first=0.1, cap=5.0, jitter=0.2)
    rng = random.Random(2)
    delays = [backoff.delay(failures, rng) for failures in range(10, 2000)]
    assert max(delays) <= 5.0
    assert min(delays) >= 4.0
    assert len({round(delay, 6) for delay in delays}) > 100  # jittered, not one value


def test_backoff_without_jitter_is_the_plain_schedule() -> None:
    backoff = Backoff(first=0.1, cap=1.0, jitter=0.0)
    rng = random.Random(3)
    assert [backoff.delay(n, rng) for n in range(1, 7)] == pytest.approx(
        [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    )


def _with_cause(error: BaseException, cause: BaseException) -> BaseException:
    error.__cause__ = cause
    return error


def _raised(error: BaseException) -> BaseException:
    """``error`` as code of ours raises it (with a traceback through this module)."""
    try:
        raise error
    except BaseException as caught:
        return caught


OUTAGES = [
    pytest.param(sa.OperationalError("SELECT 1", {}, Exception("locked")), id="operational"),
    pytest.param(sa.InterfaceError("SELECT 1", {}, Exception("closed")), id="interface"),
    pytest.param(
        sa.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True),
        id="dbapi-invalidated",
    ),
    pytest.param(
        sa.DBAPIError(
            "SELECT 1",
            {},
            _with_cause(Exception("adapted"), asyncpg.CannotConnectNowError("starting up")),
        ),
        id="dbapi-wrapping-cannot-connect-now",
    ),
    pytest.param(asyncpg.ConnectionDoesNotExistError("closed"), id="connection-does-not-exist"),
    pytest.param(asyncpg.PostgresConnectionError("lost"), id="postgres-connection"),
    pytest.param(asyncpg.CannotConnectNowError("shutting down"), id="cannot-connect-now"),
    pytest.param(asyncpg.AdminShutdownError("terminating"), id="admin-shutdown"),
    pytest.param(asyncpg.InterfaceError("connection is closed"), id="asyncpg-closed-connection"),
]


@pytest.mark.parametrize("error", OUTAGES)
def test_database_outages_are_transient(error: BaseException) -> None:
    assert dependency_of(_raised(error)) == DATABASE


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.EIO, "disk gone"),
        OSError(errno.ENOSPC, "disk full"),
        ConnectionRefusedError(111, "refused"),
        ConnectionResetError("reset"),
        TimeoutError(),
    ],
)
def test_os_errors_outside_the_database_driver_are_storage_outages(error: BaseException) -> None:
    assert dependency_of(_raised(error)) == STORAGE


def test_a_store_that_cannot_be_reached_is_an_outage_and_one_that_refuses_is_not() -> None:
    assert dependency_of(StorageUnavailable("write k: cannot connect")) == STORAGE
    assert dependency_of(StorageError("write k: access denied")) is None


@pytest.mark.parametrize(
    "error",
    [
        sa.IntegrityError("INSERT", {}, Exception("duplicate key")),
        sa.ProgrammingError("SELECT", {}, Exception("syntax error")),
        sa.DBAPIError("SELECT 1", {}, Exception("not a disconnect")),
        asyncpg.UniqueViolationError("duplicate key"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        ValueError("bad value"),
        KeyError("missing"),
        AttributeError("typo"),
        TaskFailure(ErrorCode.SERVICE_ERROR, "failed"),
        PermissionError(errno.EACCES, "permission denied"),
        OSError(errno.EROFS, "read-only file system"),
        OSError("no errno"),
    ],
)
def test_everything_else_is_a_bug(error: BaseException) -> None:
    assert dependency_of(_raised(error)) is None


def test_describe_is_one_line() -> None:
    error = sa.OperationalError("SELECT 1", {}, Exception("database is locked"))
    assert describe(error) == "OperationalError: (builtins.Exception) database is locked"
    assert describe(TimeoutError()) == "TimeoutError"


class Flaky:
    """Fails ``failures`` times with ``error``, then returns ``value``."""

    def __init__(self, failures: int, error: BaseException, value: int = 7) -> None:
        self.left = failures
        self.error = error
        self.value = value
        self.calls = 0

    async def __call__(self) -> int:
        self.calls += 1
        if self.left > 0:
            self.left -= 1
            raise self.error
        return self.value


def _lines(caplog: pytest.LogCaptureFixture, level: int) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "qwenedit.resilience" and r.levelno == level
    ]


async def test_an_outage_is_logged_once_when_it_starts_and_once_when_it_ends(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qwenedit.resilience")
    retry = Retry("reaper", Outages(), backoff=FAST)
    operation = Flaky(5, ConnectionRefusedError(111, "refused"))
    assert await retry.run(operation) == 7
    assert operation.calls == 6
    assert _lines(caplog, logging.WARNING) == [
        "storage unavailable: reaper failed (ConnectionRefusedError); "
        "retrying with backoff until it is back"
    ]
    [recovered] = _lines(caplog, logging.INFO)
    assert recovered.startswith("storage reachable again after ")
    assert recovered.endswith(" s (resumed: reaper)")
    assert not any(r.exc_info for r in caplog.records)


async def test_a_bug_is_not_retried(caplog: pytest.LogCaptureFixture) -> None:
    retry = Retry("reaper", Outages(), backoff=FAST)
    operation = Flaky(1, ValueError("bug"))
    with pytest.raises(ValueError, match="bug"):
        await retry.run(operation)
    assert operation.calls == 1
    assert _lines(caplog, logging.WARNING) == []


def test_the_outage_ends_when_every_caller_that_failed_succeeded(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qwenedit.resilience")
    now = [100.0]
    outages = Outages(clock=lambda: now[0])
    claim, beat, idle = (Retry(name, outages) for name in ("claim", "beat", "idle"))
    error = sa.DBAPIError("SELECT 1", {}, Exception("gone"), connection_invalidated=True)
    claim.failed(error)
    beat.failed(error)
    claim.failed(error)
    idle.succeeded()
    claim.succeeded()
    assert _lines(caplog, logging.INFO) == []
    now[0] = 103.24
    beat.succeeded()
    assert _lines(caplog, logging.WARNING) == [
        "database unavailable: claim failed (DBAPIError); retrying with backoff until it is back"
    ]
    assert _lines(caplog, logging.INFO) == [
        "database reachable again after 3.2 s (resumed: beat, claim)"
    ]
    beat.failed(error)  # a new outage
    assert len(_lines(caplog, logging.WARNING)) == 2


def test_a_caller_that_gave_up_does_not_hold_the_outage_open(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="qwenedit.resilience")
    outages = Outages()
    release, beat = Retry("release", outages), Retry("beat", outages)
    release.failed(OSError(errno.EIO, "gone"))
    release.abandon()
    [closed] = _lines(caplog, logging.INFO)
    assert closed.startswith("storage outage: nothing waits for it any more (release gave up")
    beat.succeeded()  # it may never have used the store: no word that the store is back
    assert _lines(caplog, logging.INFO) == [closed]
    release.failed(OSError(errno.EIO, "gone"))  # a new outage
    assert len(_lines(caplog, logging.WARNING)) == 2


async def test_patience_ends_in_one_line() -> None:
    retry = Retry("start-up", Outages(), backoff=FAST)
    operation = Flaky(10**9, ConnectionRefusedError(111, "Connect call failed"))
    with pytest.raises(DependencyUnavailable) as raised:
        await retry.run(operation, patience=0.05)
    assert str(raised.value) == (
        "the storage stayed unreachable for 0.05 s: "
        "ConnectionRefusedError: [Errno 111] Connect call failed"
    )
    assert operation.calls > 1


async def test_a_stop_ends_the_wait() -> None:
    stop = asyncio.Event()
    retry = Retry("claim", Outages(), backoff=Backoff(first=60, cap=60))
    operation = Flaky(10**9, OSError(errno.EIO, "gone"))
    waiting = asyncio.create_task(retry.run(operation, stop=stop))
    await asyncio.sleep(0.05)
    assert not waiting.done()
    stop.set()
    with pytest.raises(DependencyUnavailable, match="claim stopped during an outage"):
        await asyncio.wait_for(waiting, 5)
    assert operation.calls == 1
