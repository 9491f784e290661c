"""Uploaded input files: who owns them, where their bytes are, when they expire."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, insert, select

from qwenedit.store.database import Database
from qwenedit.store.tables import files


@dataclass(frozen=True)
class StoredFile:
    id: str
    account_id: int
    blob_key: str
    bytes: int
    mime_type: str
    width: int
    height: int
    created_at: datetime
    expires_at: datetime


class FileRepo:
    def __init__(self, db: Database) -> None:
        self._db = db

    async def add(self, stored: StoredFile) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(insert(files).values(**stored.__dict__))

    async def get(self, file_id: str) -> StoredFile | None:
        async with self._db.transaction(write=False) as connection:
            row = (await connection.execute(select(files).where(files.c.id == file_id))).first()
        return None if row is None else StoredFile(**row._mapping)

    async def expired(self, now: datetime, limit: int = 500) -> list[StoredFile]:
        async with self._db.transaction(write=False) as connection:
            rows = await connection.execute(
                select(files)
                .where(files.c.expires_at <= now)
                .order_by(files.c.expires_at)
                .limit(limit)
            )
            return [StoredFile(**row._mapping) for row in rows]

    async def remove(self, file_id: str) -> None:
        async with self._db.transaction() as connection:
            await connection.execute(delete(files).where(files.c.id == file_id))
