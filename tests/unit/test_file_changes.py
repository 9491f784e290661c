"""Word from the kernel when a watched file is written, and not otherwise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from qwenedit.store.file_changes import FileChanges


def watch(folder: Path) -> FileChanges:
    changes = FileChanges.open(folder, ("q.db", "q.db-wal"))
    assert changes is not None, "inotify is there on every Linux this runs on"
    return changes


async def still_waiting(changes: FileChanges) -> bool:
    try:
        await asyncio.wait_for(changes.wait(), 0.3)
    except TimeoutError:
        return True
    return False


async def test_it_waits_until_a_watched_file_is_written(tmp_path: Path) -> None:
    changes = watch(tmp_path)
    try:
        assert await still_waiting(changes)
        (tmp_path / "unrelated.log").write_text("a line")
        (tmp_path / "sub").mkdir()
        (tmp_path / "sub" / "q.db-wal").write_text("a file of the same name elsewhere")
        assert await still_waiting(changes)
        waiting = asyncio.create_task(changes.wait())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        (tmp_path / "q.db-wal").write_bytes(b"frame")  # made: heard
        await asyncio.wait_for(waiting, 5)
        assert await still_waiting(changes)  # each write is heard once
        with (tmp_path / "q.db").open("ab") as file:
            file.write(b"page")
        await asyncio.wait_for(changes.wait(), 5)
    finally:
        changes.close()


async def test_a_write_before_the_wait_is_not_missed(tmp_path: Path) -> None:
    changes = watch(tmp_path)
    try:
        (tmp_path / "q.db-wal").write_bytes(b"frame")
        await asyncio.wait_for(changes.wait(), 5)
    finally:
        changes.close()


async def test_a_file_moved_into_place_is_heard(tmp_path: Path) -> None:
    changes = watch(tmp_path)
    try:
        (tmp_path / "staged").write_bytes(b"log")
        assert await still_waiting(changes)
        os.replace(tmp_path / "staged", tmp_path / "q.db-wal")
        await asyncio.wait_for(changes.wait(), 5)
    finally:
        changes.close()


def test_a_folder_that_does_not_exist_cannot_be_watched(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    assert FileChanges.open(tmp_path / "missing", ("q.db",)) is None
    assert "cannot watch" in caplog.text


async def test_a_removed_folder_ends_the_watch(tmp_path: Path) -> None:
    folder = tmp_path / "data"
    folder.mkdir()
    changes = watch(folder)
    try:
        assert not changes.ended
        folder.rmdir()
        await asyncio.wait_for(changes.wait(), 5)
        assert changes.ended  # nothing more will be heard: the caller polls instead
    finally:
        changes.close()
