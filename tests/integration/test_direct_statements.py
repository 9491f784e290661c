"""A ``DirectStatement`` stores what Core would store, inside the caller's transaction, and
fails as Core would, on SQLite (run on the sqlite3 connection) and on PostgreSQL (run by Core)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import bindparam, cast, insert, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.types import Text

from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.direct import DirectStatement
from qwenedit.store.tables import accounts, ledger, tasks

RECORD = DirectStatement(insert(ledger))
TAKE = DirectStatement(
    update(accounts)
    .where(accounts.c.id == bindparam("account_id"), accounts.c.balance_milli >= 500)
    .values(balance_milli=accounts.c.balance_milli - 500)
    .returning(accounts.c.id, accounts.c.balance_milli)
)


def entry(account_id: int, task_id: str, at: datetime) -> dict[str, object]:
    return {
        "account_id": account_id,
        "task_id": task_id,
        "kind": "reserve",
        "amount_milli": -1500,
        "note": "naïve ' quote",
        "created_at": at,
    }


async def stored(db: Database, task_id: str) -> tuple[object, ...]:
    """The row as the database keeps it, the timestamp as its own text."""
    columns = (ledger.c.account_id, ledger.c.kind, ledger.c.amount_milli, ledger.c.note)
    async with db.transaction(write=False) as connection:
        row = (
            await connection.execute(
                select(*columns, cast(ledger.c.created_at, Text)).where(ledger.c.task_id == task_id)
            )
        ).one()
    return tuple(row)


async def test_it_stores_what_core_stores(db: Database, accounts: AccountRepo) -> None:
    account = await accounts.ensure("direct")
    at = datetime(2026, 11, 26, 6, 30, 5, 123456, tzinfo=UTC)
    async with db.transaction() as connection:
        await connection.execute(insert(ledger), entry(account.id, "by-core", at))
        await RECORD.execute(connection, entry(account.id, "direct", at))
    assert await stored(db, "direct") == await stored(db, "by-core")
    assert ":30:05.123456" in str((await stored(db, "direct"))[-1])


async def test_returning_and_fixed_values(db: Database, accounts: AccountRepo) -> None:
    account = await accounts.ensure("direct", user_group="default")
    await accounts.grant(account.id, 800, "top up")
    async with db.transaction() as connection:
        first = await TAKE.first(connection, {"account_id": account.id})
        second = await TAKE.first(connection, {"account_id": account.id})
    assert first is not None and tuple(first) == (account.id, 300)
    assert second is None  # the literal 500 of the WHERE is bound too


async def test_it_is_part_of_the_callers_transaction(db: Database, accounts: AccountRepo) -> None:
    account = await accounts.ensure("direct")
    now = datetime.now(UTC)
    with pytest.raises(RuntimeError):
        async with db.transaction() as connection:
            await RECORD.execute(connection, entry(account.id, "undone", now))
            raise RuntimeError("roll back")
    async with db.transaction() as connection:
        await RECORD.execute(connection, entry(account.id, "kept", now + timedelta(seconds=1)))
    async with db.transaction(write=False) as connection:
        kept = (await connection.execute(select(ledger.c.task_id))).scalars().all()
    assert kept == ["kept"]


async def test_a_violation_is_the_integrity_error_core_raises(
    db: Database, accounts: AccountRepo
) -> None:
    account = await accounts.ensure("direct")
    now = datetime.now(UTC)
    async with db.transaction() as connection:
        await RECORD.execute(connection, entry(account.id, "twice", now))
    with pytest.raises(sa_exc.IntegrityError):
        async with db.transaction() as connection:
            await RECORD.execute(connection, entry(account.id, "twice", now))


@pytest.mark.parametrize(
    "statement",
    [
        update(tasks).values(progress=1).returning(tasks.c.created_at),
        insert(ledger).values(created_at=bindparam("at", callable_=lambda: datetime.now(UTC))),
    ],
    ids=["a returned timestamp", "a value computed at each execution"],
)
async def test_a_statement_that_needs_core_at_each_execution_is_refused(
    sqlite_db: Database, statement: Any
) -> None:
    """Run directly, it would return a timestamp as text, or store one value for ever."""
    direct = DirectStatement(statement)
    with pytest.raises(TypeError, match="needs Core"):
        async with sqlite_db.transaction() as connection:
            await direct.first(connection, {"account_id": 1})


async def test_a_missing_value_is_a_statement_error(sqlite_db: Database) -> None:
    with pytest.raises(sa_exc.StatementError, match="account_id"):
        async with sqlite_db.transaction() as connection:
            await TAKE.first(connection, {"amount": 1})
