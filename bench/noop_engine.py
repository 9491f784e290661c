"""A model that takes no time (or a set time): solid images of the requested size. Loaded with
``--engine noop_engine:SolidEngine`` (``bench/`` on ``PYTHONPATH``), it leaves only the
server's own work to measure. ``BENCH_ENGINE_SECONDS`` makes each call take that long;
``BENCH_ENGINE_LOG`` names a file that gets one line per call: its start and end (epoch seconds)."""

from __future__ import annotations

import os
import time
from typing import Any

from PIL import Image

from qwenedit.engines.base import EditJob, EditOutput, StepCallback

STEPS = 4


class SolidEngine:
    name = "solid"

    def __init__(self, _settings: Any) -> None:
        self._seconds = float(os.environ.get("BENCH_ENGINE_SECONDS", "0"))
        self._log = os.environ.get("BENCH_ENGINE_LOG")

    def edit(self, job: EditJob, on_step: StepCallback) -> EditOutput:
        started, wall = time.perf_counter(), time.time()
        for step in range(1, STEPS + 1):
            if self._seconds:
                time.sleep(self._seconds / STEPS)
            on_step(step, STEPS)
        image = Image.new("RGB", (job.width, job.height), (job.seed % 256, 90, 160))
        if self._log:
            with open(self._log, "a") as log:
                log.write(f"{wall} {time.time()}\n")
        return EditOutput(images=(image,) * job.n, pipeline_seconds=time.perf_counter() - started)

    def close(self) -> None:
        return None
