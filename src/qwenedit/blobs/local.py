"""BlobStore on a local directory: atomic, durable writes (temp file, fsync, rename, fsync of the
directory), keys checked so no key can leave the root.

Durable because what is written here is acknowledged soon after: a large input by its create's
commit, an upload by its answer, results by the completion's commit. The database fsyncs those
commits; a blob they point to must be on disk first, or a power cut keeps the row and loses the
file."""

from __future__ import annotations

import asyncio
import errno
import os
import shutil
import stat
import tempfile
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

from qwenedit.blobs.base import CHUNK_BYTES, BlobStream, check_key, valid_key
from qwenedit.errors import ConfigError

_MISSING = (FileNotFoundError, IsADirectoryError, NotADirectoryError)


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self._root = root

    @property
    def location(self) -> str:
        return self._root.absolute().as_uri()

    def _path(self, key: str) -> Path:
        check_key(key)
        return self._root / key

    async def check(self) -> None:
        try:
            await asyncio.to_thread(self._root.mkdir, parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"blob storage {self.location}: {exc.strerror or exc}") from exc
        if not os.access(self._root, os.W_OK | os.X_OK):
            raise ConfigError(f"blob storage {self.location}: the directory is not writable")

    async def put(self, key: str, data: bytes) -> None:
        await asyncio.to_thread(self._put, self._path(key), data)

    @staticmethod
    def _put(path: Path, data: bytes) -> None:
        _make_directories(path.parent)
        fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            os.replace(temp, path)
        except BaseException:
            Path(temp).unlink(missing_ok=True)
            raise
        _fsync_directory(path.parent)

    async def get(self, key: str) -> bytes | None:
        if not valid_key(key):
            return None
        try:
            return await asyncio.to_thread(self._path(key).read_bytes)
        except _MISSING:
            return None

    async def open(self, key: str) -> BlobStream | None:
        if not valid_key(key):
            return None
        path = self._path(key)
        try:
            found = await asyncio.to_thread(path.stat)
        except _MISSING:
            return None
        if not stat.S_ISREG(found.st_mode):
            return None
        return BlobStream(size=found.st_size, chunks=_read_chunks(path))

    async def names_under(self, prefix: str, *, after: str, before: str) -> list[str]:
        return await asyncio.to_thread(self._names_under, prefix, after, before)

    def _names_under(self, prefix: str, after: str, before: str) -> list[str]:
        try:
            names = os.listdir(self._path(prefix.rstrip("/")))
        except (FileNotFoundError, NotADirectoryError):
            return []
        return sorted(name for name in names if after < name < before and valid_key(name))

    async def delete_prefix(self, prefix: str) -> int:
        return await asyncio.to_thread(self._delete_prefix, prefix)

    def _delete_prefix(self, prefix: str) -> int:
        """Processes sharing the directory (``serve`` and ``worker`` on one machine) sweep the
        same expired blobs: one that another deleted first counts as not there."""
        target = self._path(prefix.rstrip("/"))
        if target.is_file():
            try:
                target.unlink()
            except FileNotFoundError:
                return 0
            return 1
        if not target.is_dir():
            return 0
        count = sum(len(files) for _, _, files in os.walk(target))  # skips what vanishes
        shutil.rmtree(target, ignore_errors=True)
        return count

    def presigned_url(self, key: str, expires_in: timedelta) -> str:
        raise ConfigError(
            "a file:// blob store has no presigned URLs: use QWENEDIT_RESULT_LINKS=signed"
        )

    def close(self) -> None:
        return None


def _make_directories(directory: Path) -> None:
    """``directory`` and whichever of its parents are missing, each new entry synced into its
    parent, so the path to a durable file survives a power cut too."""
    missing = []
    current = directory
    while not current.is_dir():
        missing.append(current)
        current = current.parent
    for new in reversed(missing):
        new.mkdir(exist_ok=True)
        _fsync_directory(new.parent)


_NO_DIRECTORY_SYNC = frozenset({errno.EINVAL, errno.ENOTSUP, errno.EBADF})
"""What a file system that cannot sync a directory (some FUSE and network mounts) answers; its
entries are then as durable as it makes them (PostgreSQL's ``fsync_fname`` does the same)."""


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in _NO_DIRECTORY_SYNC:
            raise
    finally:
        os.close(fd)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    """Opened on the first read, so a stream that is never read holds no file open."""
    file = await asyncio.to_thread(path.open, "rb")
    try:
        while chunk := await asyncio.to_thread(file.read, CHUNK_BYTES):
            yield chunk
    finally:
        file.close()
