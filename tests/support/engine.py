"""A test-only engine: solid images of the requested size, one step at a time, optionally held
at a step until the test releases it (for cancellation while denoising)."""

from __future__ import annotations

import threading
import time

from PIL import Image

from qwenedit.engines.base import EditJob, EditOutput, StepCallback


class SteppingEngine:
    name = "test"

    def __init__(self, steps: int = 4, hold_at: int | None = None) -> None:
        self.steps = steps
        self.hold_at = hold_at
        self.holding = threading.Event()
        self.release = threading.Event()
        self.jobs: list[EditJob] = []
        self._lock = threading.Lock()

    def edit(self, job: EditJob, on_step: StepCallback) -> EditOutput:
        with self._lock:
            self.jobs.append(job)
            started = time.perf_counter()
            for step in range(1, self.steps + 1):
                if self.hold_at == step:
                    self.holding.set()
                    while not self.release.wait(timeout=0.05):
                        on_step(step - 1, self.steps)
                on_step(step, self.steps)
            shade = job.seed % 256
            images = tuple(
                Image.new("RGB", (job.width, job.height), (shade, index * 40 % 256, 90))
                for index in range(job.n)
            )
            return EditOutput(images=images, pipeline_seconds=time.perf_counter() - started)

    def close(self) -> None:
        return None


class SettingsEngine(SteppingEngine):
    """What ``--engine support.engine:SettingsEngine`` loads: called with the settings."""

    def __init__(self, settings: object) -> None:
        super().__init__(steps=1)
