"""What the engine thread and the event loop share about one running task."""

from __future__ import annotations

import threading
import time

from qwenedit.domain import progress
from qwenedit.errors import TaskFailure, WorkerStopping

Abort = TaskFailure | WorkerStopping
"""Why a running task stops early: it failed (cancelled, timed out...) or its worker stops."""


class TaskRun:
    """The engine thread writes progress and reads the abort reason; the event loop does the
    opposite. Plain attributes behind a lock: no database call ever happens on the engine thread.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._progress = progress.CLAIMED
        self._abort: Abort | None = None
        self.fenced_out = False
        self.started = time.monotonic()

    @property
    def progress(self) -> int:
        with self._lock:
            return self._progress

    def advance(self, value: int) -> None:
        with self._lock:
            self._progress = max(self._progress, value)

    def abort(self, reason: Abort) -> None:
        """First reason wins: a cancellation is not overwritten by a later timeout."""
        with self._lock:
            if self._abort is None:
                self._abort = reason

    @property
    def abort_reason(self) -> Abort | None:
        with self._lock:
            return self._abort

    def check(self) -> None:
        """Raise the abort reason, if any; called between stages and at every denoising step."""
        reason = self.abort_reason
        if reason is not None:
            raise reason

    def on_step(self, done: int, total: int) -> None:
        self.check()
        self.advance(progress.denoising(done, total))
