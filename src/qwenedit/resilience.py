"""Riding out outages: which errors are worth waiting out, how long to wait between tries, and
one log line when an outage starts and one when it ends.

The background loops (worker claim, heartbeats, finalize, reaper, callback dispatcher) run their
database and blob-store calls through a ``Retry``. An error ``dependency_of`` recognises as an
outage is retried with capped, jittered exponential backoff; any other error is a bug and
propagates, so the supervisor stops the process. Every ``Retry`` of a process reports to one
``Outages``, which logs the first failure of an outage at WARNING and the return at INFO, never
a stack trace per try.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import random
import time
import traceback
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy import exc as sa

from qwenedit.errors import DependencyUnavailable, StorageUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

DATABASE = "database"
STORAGE = "storage"

_DATABASE_ERRORS: tuple[type[BaseException], ...] = (
    sa.OperationalError,
    sa.InterfaceError,
    sa.TimeoutError,  # the connection pool waited in vain: every connection is stuck
    asyncpg.PostgresConnectionError,  # includes ConnectionDoesNotExistError
    asyncpg.CannotConnectNowError,  # starting up, shutting down, in recovery
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    asyncpg.TransactionRollbackError,  # a deadlock or serialization victim: try it again
)
"""Driver and SQLAlchemy errors that mean "the database is not there right now"."""
_DATABASE_MODULES = frozenset({"sqlalchemy", "asyncpg", "aiosqlite", "sqlite3"})
_PASSING_ERRNOS = frozenset(
    {
        errno.EIO,
        errno.ENOSPC,
        errno.EDQUOT,
        errno.ESTALE,
        errno.ENOTCONN,
        errno.ETIMEDOUT,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.EAGAIN,
    }
)
"""What a disk or a network mount reports while it is failing or full: an outage an operator
can end. Other system errors (no permission, a read-only file system, an invalid argument)
are mistakes that waiting does not mend."""


def _causes(error: BaseException) -> Iterator[BaseException]:
    """``error``, then what it wraps: SQLAlchemy's ``orig`` and explicit ``raise ... from``."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        orig = current.orig if isinstance(current, sa.DBAPIError) else None
        current = orig if isinstance(orig, BaseException) else current.__cause__


def _is_closed_asyncpg_connection(error: BaseException) -> bool:
    """asyncpg's answer to a call on a connection the server or the network already closed: a
    bare ``InterfaceError``, not a ``PostgresConnectionError``. SQLAlchemy passes it on unwrapped
    when the connection is lost while it sets up a new one (its JSON codec), between the
    connect and the first statement; elsewhere ``asyncpg.InterfaceError`` means misuse."""
    return isinstance(error, asyncpg.InterfaceError) and str(error) == "connection is closed"


def _raised_by_database_driver(error: BaseException) -> bool:
    """A connection refused while opening a pooled connection reaches us as a bare ``OSError``;
    the frames it passed through tell it from a blob store's ``OSError``."""
    return any(
        frame.f_globals.get("__name__", "").partition(".")[0] in _DATABASE_MODULES
        for frame, _line in traceback.walk_tb(error.__traceback__)
    )


def dependency_of(error: BaseException) -> str | None:
    """``DATABASE`` or ``STORAGE`` when ``error`` is an outage of that dependency (worth
    retrying), ``None`` when it is a bug (not worth it). The one place that decides."""
    for cause in _causes(error):
        if isinstance(cause, _DATABASE_ERRORS) or _is_closed_asyncpg_connection(cause):
            return DATABASE
        if isinstance(cause, StorageUnavailable):
            return STORAGE
        if isinstance(cause, sa.DBAPIError) and cause.connection_invalidated:
            return DATABASE
    if isinstance(error, OSError):  # ConnectionError and TimeoutError are OSErrors
        if _raised_by_database_driver(error):
            return DATABASE
        if isinstance(error, ConnectionError | TimeoutError) or error.errno in _PASSING_ERRNOS:
            return STORAGE
    return None


def is_transient(error: BaseException) -> bool:
    return dependency_of(error) is not None


def is_database_error(error: BaseException) -> bool:
    """Raised by the database or its driver, transient or not (a wrong password, a missing
    database, a failed statement)."""
    return isinstance(error, sa.SQLAlchemyError | asyncpg.PostgresError)


def describe(error: BaseException) -> str:
    """The error's type and the first line of its message: one line for a log or a CLI."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff with jitter: ``first`` doubling up to ``cap``, each delay
    spread by ±``jitter`` (so processes that lost the database together do not return in step),
    never above ``cap``."""

    first: float = 0.1
    cap: float = 5.0
    jitter: float = 0.2

    def delay(self, failures: int, rng: random.Random) -> float:
        """The wait after the ``failures``-th failure in a row (1 for the first)."""
        base = min(self.cap, self.first * 2.0 ** min(failures - 1, 64))
        return min(self.cap, base * rng.uniform(1 - self.jitter, 1 + self.jitter))


@dataclass
class _Outage:
    started: float
    failing: set[str] = field(default_factory=set)
    """Callers waiting for the dependency now."""
    hit: set[str] = field(default_factory=set)
    """Every caller that failed during this outage."""


class Outages:
    """The outages one process is riding out, one per dependency. An outage starts at the first
    failure (WARNING) and ends when every caller that failed has succeeded again (INFO)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._open: dict[str, _Outage] = {}

    def failed(self, caller: str, dependency: str, error: BaseException) -> None:
        outage = self._open.get(dependency)
        if outage is None:
            outage = self._open[dependency] = _Outage(started=self._clock())
            log.warning(
                "%s unavailable: %s failed (%s); retrying with backoff until it is back",
                dependency,
                caller,
                type(error).__name__,
            )
        outage.failing.add(caller)
        outage.hit.add(caller)

    def succeeded(self, caller: str) -> None:
        for dependency, outage in list(self._open.items()):
            outage.failing.discard(caller)
            if not outage.failing:
                del self._open[dependency]
                log.info(
                    "%s reachable again after %.1f s (resumed: %s)",
                    dependency,
                    self._clock() - outage.started,
                    ", ".join(sorted(outage.hit)),
                )

    def abandoned(self, caller: str) -> None:
        """``caller`` stopped waiting (shutdown, a deadline, its task ended). An outage nobody
        waits for any more is closed without a word on whether the dependency is back: a later
        success of some other caller may not have used it at all."""
        for dependency, outage in list(self._open.items()):
            outage.failing.discard(caller)
            if not outage.failing:
                del self._open[dependency]
                log.info(
                    "%s outage: nothing waits for it any more (%s gave up after %.1f s)",
                    dependency,
                    caller,
                    self._clock() - outage.started,
                )


DEFAULT_BACKOFF = Backoff()


_JITTER = random.Random()
"""Shared by every ``Retry`` without an rng of its own: seeding one per call (from the OS) cost
more than the call it guarded on the worker's hot path, and jitter needs no secrecy."""


class Retry:
    """The retries of one caller: a loop, or one step of it, named for the log."""

    def __init__(
        self,
        caller: str,
        outages: Outages,
        *,
        backoff: Backoff = DEFAULT_BACKOFF,
        rng: random.Random | None = None,
    ) -> None:
        self.caller = caller
        self._outages = outages
        self._backoff = backoff
        self._rng = rng or _JITTER
        self._failures = 0

    def failed(self, error: BaseException) -> float:
        """Count a failed try and return the wait before the next; re-raises ``error`` when it
        is not an outage. For callers that keep their own schedule (the lease watch)."""
        dependency = dependency_of(error)
        if dependency is None:
            raise error
        self._failures += 1
        self._outages.failed(self.caller, dependency, error)
        return self._backoff.delay(self._failures, self._rng)

    def succeeded(self) -> None:
        self._failures = 0
        self._outages.succeeded(self.caller)

    def abandon(self) -> None:
        """This caller stops trying (its work ended or was cancelled)."""
        self._failures = 0
        self._outages.abandoned(self.caller)

    async def run(
        self,
        operation: Callable[[], Awaitable[T]],
        *,
        stop: asyncio.Event | None = None,
        patience: float | None = None,
    ) -> T:
        """``operation()``, tried until it succeeds or fails with a bug.
        ``DependencyUnavailable`` when ``stop`` is set or ``patience`` seconds have passed while
        the dependency is away."""
        deadline = None if patience is None else time.monotonic() + patience
        try:
            while True:
                try:
                    result = await operation()
                except Exception as error:
                    delay = self.failed(error)
                    if deadline is not None:
                        left = deadline - time.monotonic()
                        if left <= 0:
                            raise DependencyUnavailable(
                                f"the {dependency_of(error)} stayed unreachable for "
                                f"{patience:g} s: {describe(error)}"
                            ) from error
                        delay = min(delay, left)
                    if await _stopped(stop, delay):
                        raise DependencyUnavailable(
                            f"{self.caller} stopped during an outage"
                        ) from error
                    continue
                self.succeeded()
                return result
        except BaseException:
            self.abandon()
            raise


async def _stopped(stop: asyncio.Event | None, delay: float) -> bool:
    """Wait ``delay`` seconds, less if ``stop`` is set meanwhile; whether it was."""
    if stop is None:
        await asyncio.sleep(delay)
        return False
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()
