"""The log of the 503s a node answers while its database or blob store is out.

Every request that needs the dependency meets the outage, so a line per answer would be
hundreds of lines a second under load. The first answer is logged at once, then at most one
line every ``OUTAGE_LOG_SECONDS``, counting the answers since the line before. (The background
loops log the outage itself, once when it starts and once when it ends: ``resilience``.)"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from qwenedit.resilience import describe

log = logging.getLogger("qwenedit.api.errors")

OUTAGE_LOG_SECONDS = 10.0


class OutageAnswers:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._logged_at: float | None = None
        self._unlogged = 0
        """Answers since the last line that it did not mention."""

    def answered(self, request: str, error: BaseException) -> None:
        """``request`` (method and path) was answered 503 because of ``error``."""
        now = self._clock()
        if self._logged_at is not None and now - self._logged_at < OUTAGE_LOG_SECONDS:
            self._unlogged += 1
            return
        more = ""
        if self._unlogged and self._logged_at is not None:
            more = (
                f"; {self._unlogged} more answered 503 since the last line, "
                f"{now - self._logged_at:.0f} s ago"
            )
        log.warning("%s: answered 503 (%s)%s", request, describe(error), more)
        self._logged_at, self._unlogged = now, 0
