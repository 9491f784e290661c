"""Word from the kernel when a watched file is written, and not otherwise."""

from __future__ import annotations

import asyncio
import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from qwenedit.store.file_changes import FileChanges


@pytest.fixture
def changes(tmp_path: Path) -> Iterator[FileChanges]:
    """A watch of ``tmp_path/data`` for ``q.db`` and its log."""
    (tmp_path / "data").mkdir()
    watch = FileChanges.open(tmp_path / "data", ("q.db", "q.db-wal"))
    assert watch is not None, "inotify is there on every Linux this runs on"
    yield watch
    watch.close()


async def still_waiting(changes: FileChanges) -> bool:
    try:
        await asyncio.wait_for(changes.wait(), 0.3)
    except TimeoutError:
        return True
    return False


async def test_it_waits_until_a_watched_file_is_written(
    tmp_path: Path, changes: FileChanges
) -> None:
    data = tmp_path / "data"
    assert await still_waiting(changes)
    (data / "unrelated.log").write_text("a line")
    (data / "sub").mkdir()
    (data / "sub" / "q.db-wal").write_text("a file of the same name elsewhere")
    assert await still_waiting(changes)
    waiting = asyncio.create_task(changes.wait())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    (data / "q.db-wal").write_bytes(b"frame")  # made: heard
    await asyncio.wait_for(waiting, 5)
    assert await still_waiting(changes)  # each write is heard once
    with (data / "q.db").open("ab") as file:
        file.write(b"page")
    await asyncio.wait_for(changes.wait(), 5)


async def test_a_write_before_the_wait_is_not_missed(tmp_path: Path, changes: FileChanges) -> None:
    (tmp_path / "data" / "q.db-wal").write_bytes(b"frame")
    await asyncio.wait_for(changes.wait(), 5)


async def test_a_file_moved_into_place_is_heard(tmp_path: Path, changes: FileChanges) -> None:
    (tmp_path / "data" / "staged").write_bytes(b"log")
    assert await still_waiting(changes)
    os.replace(tmp_path / "data" / "staged", tmp_path / "data" / "q.db-wal")
    await asyncio.wait_for(changes.wait(), 5)


def test_a_folder_that_does_not_exist_cannot_be_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert FileChanges.open(tmp_path / "missing", ("q.db",)) is None
    assert "cannot watch" in caplog.text


async def test_a_removed_folder_ends_the_watch(tmp_path: Path, changes: FileChanges) -> None:
    assert not changes.ended
    (tmp_path / "data").rmdir()
    await asyncio.wait_for(changes.wait(), 5)
    assert changes.ended  # nothing more will be heard: the caller polls instead
    await asyncio.wait_for(changes.wait(), 1)  # and a later wait does not hang


async def test_a_watch_that_fails_to_read_ends(
    tmp_path: Path, changes: FileChanges, monkeypatch: pytest.MonkeyPatch
) -> None:
    read = os.read
    watched = changes._descriptor

    def failing(descriptor: int, size: int) -> bytes:
        if descriptor == watched:
            raise OSError(errno.EIO, "Input/output error")
        return read(descriptor, size)

    monkeypatch.setattr(os, "read", failing)
    (tmp_path / "data" / "q.db-wal").write_bytes(b"frame")
    await asyncio.wait_for(changes.wait(), 5)
    assert changes.ended  # the caller polls instead, and its loop goes on
