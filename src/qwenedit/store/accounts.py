"""Accounts, API keys and the credit ledger.

Every balance change goes through ``move_credits``: one conditional UPDATE that can never take a
balance below zero, plus the ledger row that records it, in the caller's transaction. So a
balance always equals the sum of its ledger.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from qwenedit.domain.keys import hash_key, key_id_of, new_api_key
from qwenedit.domain.webhooks import ROTATION_OVERLAP_SECONDS, new_webhook_secret
from qwenedit.errors import AccountNotFound, QuotaExceeded
from qwenedit.store.database import Database
from qwenedit.store.direct import DirectStatement, Row
from qwenedit.store.tables import accounts, api_keys, ledger

DEFAULT_GROUP = "default"
LedgerKind = Literal["grant", "reserve", "refund"]
_COLUMNS = (accounts.c.id, accounts.c.name, accounts.c.user_group, accounts.c.balance_milli)


@dataclass(frozen=True)
class Caller:
    """The account an API key speaks for, without its balance: what a request may rely on
    after an authentication that may have been remembered for a moment."""

    id: int
    name: str
    user_group: str


@dataclass(frozen=True)
class Account(Caller):
    balance_milli: int


def _account(row: Row) -> Account:
    """An account from a row of ``_COLUMNS``."""
    account_id, name, user_group, balance_milli = row
    return Account(id=account_id, name=name, user_group=user_group, balance_milli=balance_milli)


_MOVE = DirectStatement(
    update(accounts)
    .where(
        accounts.c.id == bindparam("account_id"),
        accounts.c.balance_milli + bindparam("amount") >= 0,
    )
    .values(balance_milli=accounts.c.balance_milli + bindparam("amount"))
    .returning(*_COLUMNS)
)
_RECORD = DirectStatement(insert(ledger))
_MOVED = _MOVE.statement.cte("moved")
_MOVE_AND_RECORD = select(_MOVED).add_cte(
    insert(ledger)
    .from_select(
        ["account_id", "task_id", "kind", "amount_milli", "note", "created_at"],
        select(
            _MOVED.c.id,
            bindparam("task_id", type_=ledger.c.task_id.type),
            bindparam("kind", type_=ledger.c.kind.type),
            bindparam("amount", type_=ledger.c.amount_milli.type),
            bindparam("note", type_=ledger.c.note.type),
            # not "created_at": a parameter named after a column of accounts joins the UPDATE's SET
            bindparam("recorded_at", type_=ledger.c.created_at.type),
        ),
    )
    .cte("recorded")
)
"""``_MOVE`` and ``_RECORD`` in one statement, for PostgreSQL (one round trip where two were):
the ledger row is inserted only when the move matched its account."""
_BALANCE = select(accounts.c.balance_milli).where(accounts.c.id == bindparam("account_id"))
_KEY_OWNER = (
    select(accounts.c.id, accounts.c.name, accounts.c.user_group, api_keys.c.key_hash)
    .join_from(api_keys, accounts)
    .where(api_keys.c.key_id == bindparam("key_id"), api_keys.c.revoked_at.is_(None))
)
_SECRETS = select(
    accounts.c.webhook_secret,
    accounts.c.webhook_secret_previous,
    accounts.c.webhook_secret_rotated_at,
).where(accounts.c.id == bindparam("account_id"))
"""The statements of the hot paths (every create, every authentication, every callback),
built once: SQLAlchemy then finds their compiled form without walking them again."""


async def move_credits(
    connection: AsyncConnection,
    account_id: int,
    amount_milli: int,
    kind: LedgerKind,
    now: datetime,
    *,
    task_id: str | None = None,
    note: str | None = None,
) -> Account | None:
    """Add ``amount_milli`` (negative takes) and append its ledger row; ``None``, and nothing
    changed, when the balance would drop below zero."""
    if connection.dialect.name == "postgresql":
        parameters = {
            "account_id": account_id,
            "amount": amount_milli,
            "task_id": task_id,
            "kind": kind,
            "note": note,
            "recorded_at": now,
        }
        moved = (await connection.execute(_MOVE_AND_RECORD, parameters)).first()
        return None if moved is None else _account(moved)
    row = await _MOVE.first(connection, {"account_id": account_id, "amount": amount_milli})
    if row is None:
        return None
    await _RECORD.execute(
        connection,
        {
            "account_id": account_id,
            "task_id": task_id,
            "kind": kind,
            "amount_milli": amount_milli,
            "note": note,
            "created_at": now,
        },
    )
    return _account(row)


async def balance_of(connection: AsyncConnection, account_id: int) -> int:
    balance = await connection.scalar(_BALANCE, {"account_id": account_id})
    if balance is None:
        raise AccountNotFound(account_id)
    return int(balance)


class AccountRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def ensure(self, name: str, user_group: str | None = None) -> Account:
        """The account named ``name``, created if absent; its group set when one is given."""
        async with self._db.transaction() as connection:
            await connection.execute(
                self._db.insert(accounts)
                .values(
                    name=name,
                    user_group=user_group or DEFAULT_GROUP,
                    balance_milli=0,
                    created_at=datetime.now(UTC),
                    webhook_secret=new_webhook_secret(),
                )
                .on_conflict_do_nothing(index_elements=[accounts.c.name])
            )
            if user_group is not None:
                await connection.execute(
                    update(accounts).where(accounts.c.name == name).values(user_group=user_group)
                )
            row = (await connection.execute(select(*_COLUMNS).where(accounts.c.name == name))).one()
        return _account(row)

    async def get_by_name(self, name: str) -> Account | None:
        async with self._db.transaction(write=False) as connection:
            row = (
                await connection.execute(select(*_COLUMNS).where(accounts.c.name == name))
            ).first()
        return None if row is None else _account(row)

    async def create_key(self, account_id: int) -> tuple[str, str]:
        """A new ``(key_id, full_key)``; only the key's hash is stored."""
        key_id, full_key = new_api_key()
        async with self._db.transaction() as connection:
            await connection.execute(
                insert(api_keys).values(
                    key_id=key_id,
                    account_id=account_id,
                    key_hash=hash_key(full_key),
                    created_at=datetime.now(UTC),
                )
            )
        return key_id, full_key

    async def revoke_key(self, key_id: str) -> bool:
        """``False`` when no active key has that id."""
        async with self._db.transaction() as connection:
            result = await connection.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
        return result.rowcount > 0

    async def authenticate(self, full_key: str) -> Caller | None:
        """The owner of an active key; ``None`` for an unknown, malformed or revoked one."""
        key_id = key_id_of(full_key)
        if key_id is None:
            return None
        async with self._db.transaction(write=False) as connection:
            row = (await connection.execute(_KEY_OWNER, {"key_id": key_id})).first()
        if row is None or not hmac.compare_digest(row.key_hash, hash_key(full_key)):
            return None
        return Caller(id=row.id, name=row.name, user_group=row.user_group)

    async def balance(self, account_id: int) -> int:
        """The balance now, in milli-credits (``AccountNotFound`` for an unknown id)."""
        async with self._db.transaction(write=False) as connection:
            return await balance_of(connection, account_id)

    async def grant(self, account_id: int, milli: int, note: str) -> Account:
        """Add credits (negative takes them back, never below zero: ``QuotaExceeded``)."""
        async with self._db.transaction() as connection:
            now = datetime.now(UTC)
            account = await move_credits(connection, account_id, milli, "grant", now, note=note)
            if account is None:
                balance = await balance_of(connection, account_id)
                raise QuotaExceeded(-milli, balance)
        return account

    async def webhook_secret(self, account_id: int) -> str:
        """The current secret that signs this account's callbacks."""
        async with self._db.transaction(write=False) as connection:
            secret = await connection.scalar(
                select(accounts.c.webhook_secret).where(accounts.c.id == account_id)
            )
        if secret is None:
            raise AccountNotFound(account_id)
        return str(secret)

    async def rotate_webhook_secret(self, account_id: int) -> str:
        """A new current secret; the old one keeps signing alongside it for 24 h."""
        secret = new_webhook_secret()
        async with self._db.transaction() as connection:
            result = await connection.execute(
                update(accounts)
                .where(accounts.c.id == account_id)
                .values(
                    webhook_secret_previous=accounts.c.webhook_secret,
                    webhook_secret=secret,
                    webhook_secret_rotated_at=datetime.now(UTC),
                )
            )
        if result.rowcount == 0:
            raise AccountNotFound(account_id)
        return secret

    async def ledger_sum(self, account_id: int) -> int:
        async with self._db.transaction(write=False) as connection:
            total = await connection.scalar(
                select(func.coalesce(func.sum(ledger.c.amount_milli), 0)).where(
                    ledger.c.account_id == account_id
                )
            )
        return int(total or 0)


async def signing_secrets(connection: AsyncConnection, account_id: int, now: datetime) -> list[str]:
    """The secrets a callback is signed with: the current one, and the previous one during the
    overlap after a rotation."""
    row = (await connection.execute(_SECRETS, {"account_id": account_id})).first()
    if row is None or row.webhook_secret is None:
        return []
    found = [row.webhook_secret]
    rotated = row.webhook_secret_rotated_at
    overlap = timedelta(seconds=ROTATION_OVERLAP_SECONDS)
    if row.webhook_secret_previous and rotated is not None and now - rotated < overlap:
        found.append(row.webhook_secret_previous)
    return found
