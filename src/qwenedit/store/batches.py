"""Group commit: writes that arrive while a transaction is being written wait, and go together
into the next one.

Under load most of a small write's cost is its transaction, not its statements: ``BEGIN``,
the commit (on SQLite an fsync, waited for on a thread) and, on SQLite, the turn on the one
write lock, which a busy event loop hands on late, so writers queue behind each other while
the loop idles. A batch pays that once for every write in it. A write that raises (a refusal
such as ``QuotaExceeded``, or a fault) undoes its own statements only and gets its own error:
the batch is then written again with each write in a savepoint (see ``_commit``). A write is
answered only once its batch has committed; if the transaction itself fails (``BEGIN`` or the
commit), every write in it gets that error and, unless the connection was lost during the
commit itself (when no client can know), nothing of any of them is stored. A lone write goes
at once, in a batch of one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

import asyncpg  # type: ignore[import-untyped]
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.errors import DependencyUnavailable
from qwenedit.store.database import Database

log = logging.getLogger(__name__)

JobT = TypeVar("JobT")
ResultT = TypeVar("ResultT")

MAX_BATCH = 64
"""Writes in one transaction at most: bounds how long the write lock is held at a time."""
ROLLBACK_TRIES = 3
"""Tries of a batch that PostgreSQL keeps choosing as a deadlock's victim."""


@dataclass
class _Entry(Generic[JobT, ResultT]):
    job: JobT
    outcome: asyncio.Future[ResultT]
    started: bool = field(default=False)


class BatchedWrites(Generic[JobT, ResultT]):
    def __init__(
        self,
        db: Database,
        write: Callable[[AsyncConnection, JobT], Awaitable[ResultT]],
        *,
        finish: Callable[[AsyncConnection, list[ResultT]], Awaitable[list[ResultT]]] | None = None,
        lock_order: Callable[[JobT], int] | None = None,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """``finish``, if given, runs in the transaction after the batch's writes, on the
        results of those that succeeded, and answers them (in the same order) as the callers
        get them: work that is done once per batch rather than once per write.

        ``lock_order``, if given, orders the writes of a batch by the row each one locks
        first: on PostgreSQL two nodes' batches then take their locks in the same order and
        never deadlock each other, as they would writing in arrival order."""
        self._db = db
        self._write = write
        self._finish = finish
        self._lock_order = lock_order
        self._max_batch = max_batch
        self._waiting: list[_Entry[JobT, ResultT]] = []
        self._drainer: asyncio.Task[None] | None = None

    async def submit(self, job: JobT) -> ResultT:
        """The result of ``write(connection, job)`` once its transaction has committed.

        A caller cancelled before its write started takes it out of the queue (nothing is
        written); one cancelled later still waits for the outcome, so that it never returns
        while its write may yet commit, then is cancelled."""
        entry: _Entry[JobT, ResultT] = _Entry(job, asyncio.get_running_loop().create_future())
        self._waiting.append(entry)
        if self._drainer is None or self._drainer.done():
            self._drainer = asyncio.create_task(self._drain(), name="batched-writes")
        try:
            return await asyncio.shield(entry.outcome)
        except asyncio.CancelledError:
            if not entry.started:
                self._waiting.remove(entry)
                raise
        while not entry.outcome.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([entry.outcome])
        if not entry.outcome.cancelled():
            entry.outcome.exception()  # seen: the caller is cancelled whatever the outcome
        raise asyncio.CancelledError

    async def _drain(self) -> None:
        try:
            while self._waiting:
                batch = self._waiting[: self._max_batch]
                del self._waiting[: self._max_batch]
                for entry in batch:
                    entry.started = True
                if self._lock_order is not None:
                    lock_order = self._lock_order
                    batch.sort(key=lambda entry: lock_order(entry.job))
                await self._run(batch)
        finally:  # stopped (the loop is closing): no write still queued waits for ever
            waiting, self._waiting = self._waiting, []
            for entry in waiting:
                _fail(entry, DependencyUnavailable("the server is stopping"))

    async def _run(self, batch: list[_Entry[JobT, ResultT]]) -> None:
        try:
            outcomes = await self._commit_with_retries(batch)
        except Exception as exc:
            log.warning("a batch of %d writes failed: %s", len(batch), exc)
            for entry in batch:
                _fail(entry, exc)
            return
        except BaseException:  # the drainer itself is cancelled (shutdown)
            for entry in batch:
                _fail(entry, asyncio.CancelledError())
            raise
        for entry, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, _Raised):
                _fail(entry, outcome.error)
            elif not entry.outcome.done():
                entry.outcome.set_result(outcome)

    async def _commit_with_retries(
        self, batch: list[_Entry[JobT, ResultT]]
    ) -> list[ResultT | _Raised]:
        """``_commit``, again when PostgreSQL chose the batch as a deadlock's victim (it undid
        the whole transaction, so the batch can simply be written again)."""
        tries = 0
        while True:
            tries += 1
            try:
                try:
                    return await self._commit(batch, isolated=False)
                except _WriteRaised as raised:
                    if _rolled_back(raised.__cause__) and tries < ROLLBACK_TRIES:
                        continue
                    return await self._commit(batch, isolated=True)
            except Exception as exc:
                if not _rolled_back(exc) or tries >= ROLLBACK_TRIES:
                    raise

    async def _commit(
        self, batch: list[_Entry[JobT, ResultT]], *, isolated: bool
    ) -> list[ResultT | _Raised]:
        """One transaction for the batch; each write's result or error once it committed.

        First without savepoints (two statements fewer per write): if a write raises, that
        transaction is undone (``_WriteRaised``) and the batch runs again ``isolated``, each
        write in a savepoint of its own, so only the one that raised is left out."""
        outcomes: list[ResultT | _Raised] = []
        async with self._db.transaction() as connection:
            for entry in batch:
                try:
                    if isolated:
                        async with connection.begin_nested():
                            outcomes.append(await self._write(connection, entry.job))
                    else:
                        outcomes.append(await self._write(connection, entry.job))
                except Exception as exc:
                    if not isolated:
                        raise _WriteRaised from exc
                    outcomes.append(_Raised(exc))
            written = [outcome for outcome in outcomes if not isinstance(outcome, _Raised)]
            if self._finish is not None and written:
                finished = iter(await self._finish(connection, written))
                outcomes = [o if isinstance(o, _Raised) else next(finished) for o in outcomes]
        return outcomes


def _rolled_back(error: BaseException | None) -> bool:
    """Whether ``error`` is PostgreSQL undoing the transaction to break a deadlock (or a
    serialization conflict)."""
    while error is not None:
        if isinstance(error, asyncpg.TransactionRollbackError):
            return True
        orig = getattr(error, "orig", None)
        error = orig if isinstance(orig, BaseException) else error.__cause__
    return False


class _WriteRaised(Exception):
    """A write raised in a batch run without savepoints: run it again with them."""


@dataclass(frozen=True)
class _Raised:
    error: Exception


def _fail(entry: _Entry[JobT, ResultT], error: BaseException) -> None:
    if not entry.outcome.done():
        entry.outcome.set_exception(error)
