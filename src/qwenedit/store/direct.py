"""Statements of the hottest writes, run on SQLite without SQLAlchemy's work per execution.

Through SQLAlchemy Core, one execution costs the event loop about 0.1 ms of CPU here (the
execution context, parameter processing, the async adapter's greenlet hops, the result
object) for SQLite work of a few microseconds; a create ran three, and they were a quarter of
its time (``bench/vs_cog.py``, (c)). A ``DirectStatement`` is a Core statement like any other,
compiled once per set of parameter names, as Core compiles it for that execution. On SQLite it
runs on the transaction's own ``sqlite3`` connection, with each parameter put through the bind
processor Core would use, so what is stored is identical. On PostgreSQL it goes through Core
as usual: asyncpg's execution is cheap already. A driver error is raised as the SQLAlchemy
exception Core would raise for it (``IntegrityError``, ``OperationalError``, with its
``orig``), so callers catch the same errors either way.

Only statements whose every value is known when they are compiled qualify: a statement that
needs Core's work per execution (a Python-side default or ``onupdate``, a callable or
expanding parameter, a returned column that Core would convert, such as a timestamp) is
refused when it is first compiled, rather than stored or returned differently.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import Delete, Insert, Update
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError, StatementError
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.store.sqlite_inline import sqlite_of

Row = Sequence[Any]
"""A returned row by position: a ``sqlite3`` tuple or a Core ``Row`` (the same values: only
columns that need no conversion may be returned)."""

_GIVEN = object()
"""The value of a parameter that the caller gives (not a literal fixed in the statement)."""


@dataclass(frozen=True)
class _Slot:
    """One ``?`` of the compiled SQL: whose value goes there, and how it is stored."""

    name: str
    process: Callable[[Any], Any] | None
    fixed: Any


@dataclass(frozen=True)
class _Compiled:
    sql: str
    slots: tuple[_Slot, ...]

    def parameters(self, values: Mapping[str, Any]) -> tuple[Any, ...]:
        given = []
        for slot in self.slots:
            value = values[slot.name] if slot.fixed is _GIVEN else slot.fixed
            given.append(value if slot.process is None else slot.process(value))
        return tuple(given)


def _compiled(
    statement: Insert | Update | Delete, dialect: Dialect, names: Sequence[str]
) -> _Compiled:
    compiled = statement.compile(dialect=dialect, column_keys=list(names))
    per_execution = [
        *compiled.insert_prefetch,
        *compiled.update_prefetch,
        *compiled.literal_execute_params,
        *compiled.post_compile_params,
        *(bind for bind in compiled.binds.values() if bind.callable is not None),
        *(
            column
            for column in compiled.returning or ()
            if column.type.dialect_impl(dialect).result_processor(dialect, None) is not None
        ),
    ]
    if per_execution:
        raise TypeError(f"needs Core's work at every execution: {per_execution}")
    slots = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        fixed = _GIVEN if bind.required or name in names else bind.effective_value
        slots.append(_Slot(name, bind.type.dialect_impl(dialect).bind_processor(dialect), fixed))
    return _Compiled(compiled.string, tuple(slots))


class DirectStatement:
    def __init__(self, statement: Insert | Update | Delete) -> None:
        self.statement = statement
        self._sqlite: dict[tuple[Dialect, tuple[str, ...]], _Compiled] = {}
        """Compiled for SQLite, by dialect and the names of the parameters given."""

    async def execute(self, connection: AsyncConnection, values: Mapping[str, Any]) -> None:
        if connection.dialect.name == "sqlite":
            self._run_sqlite(connection, values)
        else:
            await connection.execute(self.statement, dict(values))

    async def first(self, connection: AsyncConnection, values: Mapping[str, Any]) -> Row | None:
        """The first row the statement returns (its ``RETURNING``), or ``None``."""
        if connection.dialect.name == "sqlite":
            rows: list[Row] = self._run_sqlite(connection, values).fetchall()
            return rows[0] if rows else None
        return (await connection.execute(self.statement, dict(values))).first()

    def _run_sqlite(self, connection: AsyncConnection, values: Mapping[str, Any]) -> sqlite3.Cursor:
        """Run on the sqlite3 connection of the open transaction (never outside one: SQLite
        would commit the statement on its own)."""
        if not connection.in_transaction():
            raise sqlite3.ProgrammingError("a direct statement runs inside a transaction")
        dialect = connection.dialect
        key = (dialect, tuple(values))
        compiled = self._sqlite.get(key)
        if compiled is None:
            compiled = self._sqlite[key] = _compiled(self.statement, dialect, key[1])
        try:
            parameters = compiled.parameters(values)
        except (KeyError, TypeError, ValueError) as error:
            raise StatementError(str(error), compiled.sql, dict(values), error) from error
        try:
            return sqlite_of(connection).execute(compiled.sql, parameters)
        except sqlite3.Error as error:
            lost = dialect.is_disconnect(cast(Any, error), None, None)
            raise DBAPIError.instance(
                compiled.sql, parameters, error, sqlite3.Error, connection_invalidated=lost
            ) from error
