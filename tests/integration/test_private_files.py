"""The SQLite database holds webhook secrets and key hashes: it and its folder are private to
the server's user whatever the umask (issue 10)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwenedit.store.database import Database
from qwenedit.store.migrate import ensure_schema
from support.app import make_settings


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def open_umask() -> Iterator[None]:
    """A umask that takes nothing away: what the code asks for is what it gets."""
    previous = os.umask(0)
    try:
        yield
    finally:
        os.umask(previous)


async def test_a_new_database_and_its_folder_are_private(tmp_path: Path, open_umask: None) -> None:
    data_dir = tmp_path / "fresh" / "data"
    url = f"sqlite+aiosqlite:///{data_dir / 'qwenedit.db'}"
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
    finally:
        await db.close()
    assert mode(data_dir) == 0o700
    files = [path for path in data_dir.iterdir() if path.name.startswith("qwenedit.db")]
    assert files
    assert all(mode(path) == 0o600 for path in files), {p.name: oct(mode(p)) for p in files}


async def test_an_existing_database_file_is_made_private(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "qwenedit.db"
    path.touch(mode=0o644)
    Database.connect(f"sqlite+aiosqlite:///{path}")
    assert mode(path) == 0o600


def test_the_data_dir_made_for_the_secret_key_is_private(tmp_path: Path, open_umask: None) -> None:
    settings = make_settings("sqlite://", tmp_path / "new-data", secret_key=None)
    settings.load_secret_key()
    assert mode(tmp_path / "new-data") == 0o700
    assert mode(tmp_path / "new-data" / "secret_key") == 0o600
