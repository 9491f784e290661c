"""Alembic, configured in code (no alembic.ini): the scripts live in ``migrations/`` next to
this module. A migration runs on the caller's connection inside one transaction, which on
SQLite is ``BEGIN IMMEDIATE`` and on PostgreSQL holds an advisory lock, so two processes
upgrading at once take turns instead of racing."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select

from qwenedit.errors import ConfigError
from qwenedit.store.database import Database

MIGRATIONS = Path(__file__).with_name("migrations")
MIGRATION_LOCK = 0x71E0_0001
"""PostgreSQL advisory lock key held while migrating."""


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def _upgrade(db: Database) -> None:
    async with db.transaction() as connection:
        if db.dialect == "postgresql":
            await connection.execute(select(func.pg_advisory_xact_lock(MIGRATION_LOCK)))
        await connection.run_sync(lambda sync: command.upgrade(alembic_config(sync), "head"))


async def _current_revision(db: Database) -> str | None:
    async with db.transaction(write=False) as connection:
        return await connection.run_sync(
            lambda sync: MigrationContext.configure(sync).get_current_revision()
        )


def upgrade(url: str) -> None:
    """``alembic upgrade head`` on the database at ``url`` (blocking; not inside an event loop)."""

    async def main() -> None:
        db = Database.connect(url)
        try:
            await _upgrade(db)
        finally:
            await db.close()

    asyncio.run(main())


async def ensure_schema(db: Database, url: str) -> None:
    """SQLite (embedded) migrates itself. A shared PostgreSQL is migrated on purpose, by
    ``qwenedit db upgrade``, never as a side effect of starting one node. ``url`` is the one
    ``db`` was opened with."""
    if db.dialect == "sqlite":
        await _upgrade(db)
    elif await _current_revision(db) != head_revision():
        raise ConfigError("The database is not migrated: run `qwenedit db upgrade`")
