"""Word from the kernel when given files in a folder are written (Linux inotify).

A SQLite node learns of another process's commit by watching its database file. Looking every
second costs an idle server a wake-up a second for nothing, and on a VM a wake-up after a sleep
costs milliseconds of CPU however little it does (bench/idle_cpu.py prints what it costs on the
machine it runs on). inotify tells when the write-ahead log is written, so the node looks only
then, and at once. Where inotify is not available (not Linux, or no watches left) ``open``
answers ``None`` and the caller polls.

The folder is watched rather than the files, so that a log file SQLite deletes and makes again
is still seen. Reached through ``ctypes``: the standard library has no binding, and what it
takes is two calls and a read."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import struct
from collections.abc import Collection
from pathlib import Path

log = logging.getLogger(__name__)

_IN_MODIFY = 0x0002
_IN_MOVED_TO = 0x0080
_IN_CREATE = 0x0100
_IN_UNMOUNT = 0x2000
_IN_Q_OVERFLOW = 0x4000
"""Events were lost: some of them may have been ours."""
_IN_IGNORED = 0x8000
"""The watch ended: the folder was deleted or its file system unmounted."""
_EVENT = struct.Struct("iIII")
"""``struct inotify_event`` before its name: watch, mask, cookie, length of the name."""
_READ_BYTES = 64 * 1024


class FileChanges:
    def __init__(self, descriptor: int, names: Collection[str]) -> None:
        self._descriptor = descriptor
        self._names = {os.fsencode(name) for name in names}
        self.ended = False
        """The watch stopped (the folder went, or reading it failed): nothing more will be
        heard, and the caller should poll instead."""

    @classmethod
    def open(cls, folder: Path, names: Collection[str]) -> FileChanges | None:
        """Watch ``folder`` for writes to, or the making of, the files ``names``; ``None``
        when the kernel cannot be asked."""
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            init, add_watch = libc.inotify_init1, libc.inotify_add_watch
        except (OSError, AttributeError):
            return None
        descriptor = init(os.O_NONBLOCK | os.O_CLOEXEC)
        if descriptor < 0:
            log.warning("cannot watch %s: %s", folder, os.strerror(ctypes.get_errno()))
            return None
        mask = _IN_MODIFY | _IN_CREATE | _IN_MOVED_TO
        if add_watch(descriptor, os.fsencode(folder), mask) < 0:
            log.warning("cannot watch %s: %s", folder, os.strerror(ctypes.get_errno()))
            os.close(descriptor)
            return None
        return cls(descriptor, names)

    async def wait(self) -> None:
        """Until one of the files was written since the last wait (at once if it was), or the
        watch ``ended``."""
        if self.ended:
            return
        loop = asyncio.get_running_loop()
        while not self._written():
            readable = loop.create_future()
            loop.add_reader(self._descriptor, _settle, readable)
            try:
                await readable
            finally:
                loop.remove_reader(self._descriptor)

    def _written(self) -> bool:
        """Whether the events read now (all that are queued) name one of the files."""
        written = False
        while True:
            try:
                events = os.read(self._descriptor, _READ_BYTES)
            except BlockingIOError:
                return written
            except OSError as exc:  # the descriptor failed: nothing more can be heard from it
                log.warning("the watch failed: %s", exc)
                self.ended = True
                return True
            if not events:
                return written
            offset = 0
            while offset < len(events):
                _, mask, _, length = _EVENT.unpack_from(events, offset)
                start = offset + _EVENT.size
                name = events[start : start + length].rstrip(b"\0")
                self.ended = self.ended or bool(mask & (_IN_IGNORED | _IN_UNMOUNT))
                written = written or self.ended or name in self._names
                written = written or bool(mask & _IN_Q_OVERFLOW)
                offset = start + length

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._descriptor)


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)
