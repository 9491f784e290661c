"""The cyclic garbage collector and the objects a process keeps until it exits.

A full collection walks every object the collector tracks. After start-up those are mostly
the ones that live as long as the process (modules, the app and its routes, SQLAlchemy's and
pydantic's machinery, a loaded engine), and walking them stopped the event loop for 50-80 ms
at a time, a few times a minute under load: the slowest creates were those that waited for
it (bench/vs_cog.py, (c)'s p99). ``gc.freeze`` moves what exists into a generation that is
never walked, so later collections cost what was allocated since."""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_long_lived(reason: str) -> None:
    """Collect what is already garbage, then keep everything left out of later collections.

    Called once start-up (or an engine's loading) is done. Two one-off costs: the collection
    itself is one last full walk (in ``serve`` an engine may finish loading while the API
    already answers, which then waits that long once), and whatever a request had in flight at
    that moment is frozen too and, if it ends up in a reference cycle, never freed."""
    gc.collect()
    gc.freeze()
    log.debug("%s: %d objects kept out of garbage collection", reason, gc.get_freeze_count())
