"""What only the directory store can get wrong (the shared contract is in
tests/integration/test_blobs_contract.py): temp files left behind, writes outside the root."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from qwenedit.blobs.local import LocalBlobStore
from qwenedit.errors import ConfigError


async def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("t1/1/0.png", b"a")
    await store.put("t1/1/0.png", b"b")
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "t1/1/0.png"
    ]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs"])
async def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put(key, b"x")
    assert list(tmp_path.rglob("*")) == []


async def test_an_unwritable_root_fails_the_start_check(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = LocalBlobStore(tmp_path / "file" / "blobs")
    with pytest.raises(ConfigError, match="blob storage file://"):
        await store.check()


async def test_a_write_is_on_disk_before_put_returns(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file's bytes are synced before the rename publishes it, then the directory entry,
    and so is every directory the write created (a power cut keeps nothing half there)."""
    (tmp_path / "inputs").mkdir()
    events: list[tuple[str, str]] = []
    fsync, replace = os.fsync, os.replace

    def spy_fsync(fd: int) -> None:
        events.append(("fsync", Path(os.readlink(f"/proc/self/fd/{fd}")).name))
        fsync(fd)

    def spy_replace(source: str, target: str) -> None:
        events.append(("replace", Path(target).name))
        replace(source, target)

    monkeypatch.setattr(os, "fsync", spy_fsync)
    monkeypatch.setattr(os, "replace", spy_replace)
    await LocalBlobStore(tmp_path).put("inputs/t1/0.png", b"png")

    assert (tmp_path / "inputs/t1/0.png").read_bytes() == b"png"
    [(_, temp)] = [event for event in events if event[1].startswith(".tmp-")]
    assert events == [
        ("fsync", "inputs"),  # t1 was created in it
        ("fsync", temp),
        ("replace", "0.png"),
        ("fsync", "t1"),
    ]


@pytest.mark.parametrize(("code", "fails"), [(errno.EINVAL, False), (errno.EIO, True)])
async def test_a_file_system_that_cannot_sync_directories_still_stores(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fails: bool
) -> None:
    """Some mounts answer EINVAL to a directory's fsync: the write stands. A failing disk's
    EIO is still an error."""
    fsync = os.fsync

    def no_directory_sync(fd: int) -> None:
        if Path(os.readlink(f"/proc/self/fd/{fd}")).is_dir():
            raise OSError(code, os.strerror(code))
        fsync(fd)

    monkeypatch.setattr(os, "fsync", no_directory_sync)
    store = LocalBlobStore(tmp_path)
    if fails:
        with pytest.raises(OSError, match=os.strerror(code)):
            await store.put("t1/0.png", b"png")
    else:
        await store.put("t1/0.png", b"png")
        assert await store.get("t1/0.png") == b"png"


async def test_a_blob_deleted_by_another_process_meanwhile_counts_as_gone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("t1/0.png", b"png")
    is_file = Path.is_file

    def seen_then_taken(path: Path) -> bool:
        found = is_file(path)
        if found and path.name == "0.png":
            os.unlink(path)  # the other process's sweep wins the race
        return found

    monkeypatch.setattr(Path, "is_file", seen_then_taken)
    assert await store.delete_prefix("t1/0.png") == 0


async def test_a_directory_another_process_deletes_meanwhile_is_not_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBlobStore(tmp_path)
    for attempt in (1, 2):
        await store.put(f"t1/{attempt}/0.png", b"png")
    scandir = os.scandir
    listed: list[str] = []

    def taken_while_walked(path: str | Path) -> Any:
        listed.append(str(path))
        if len(listed) == 2:  # the other process's sweep wins the race mid-walk
            shutil.rmtree(tmp_path / "t1")
        return scandir(path)

    monkeypatch.setattr(os, "scandir", taken_while_walked)
    assert await store.delete_prefix("t1/") in (0, 1, 2)
    assert not (tmp_path / "t1").exists()
