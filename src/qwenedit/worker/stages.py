"""The stages of one task on a worker: fetch and decode the inputs, extend the prompt, run the
engine, encode and store the outputs (DESIGN §3, steps 3-5)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from PIL import Image

from qwenedit.domain import progress
from qwenedit.domain.sizing import output_size
from qwenedit.domain.task import ErrorCode, TaskRecord
from qwenedit.engines.base import EditJob, EditOutput, Engine
from qwenedit.errors import InputRejected, OutboundRefused, TaskCancelled, TaskFailure
from qwenedit.extend.base import PromptExtender
from qwenedit.media.images import decode_input_image, encode_png
from qwenedit.media.watermark import apply_watermark
from qwenedit.resilience import Outages, Retry, is_transient
from qwenedit.runtime import Runtime
from qwenedit.setting_groups import LimitSettings, PromptExtendSettings
from qwenedit.worker.in_hand import ThroughEngine
from qwenedit.worker.run_state import TaskRun

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class StoredResult:
    keys: tuple[str, ...]
    engine_seconds: float
    actual_prompt: str | None


HANDOVER_WAIT_SECONDS = 0.5
"""How long a task that leaves the engine waits for the next one to start it, at most."""
ABORT_CHECK_SECONDS = 0.5
"""How often a task waiting out an outage looks whether it was cancelled, timed out or its
worker is stopping."""


class TaskStages:
    def __init__(
        self,
        runtime: Runtime,
        engine: Engine,
        extender: PromptExtender | None = None,
        *,
        outages: Outages,
    ) -> None:
        self._rt = runtime
        self._engine = engine
        self._extender = extender
        self._outages = outages
        self._limits: LimitSettings = runtime.settings
        self._extension: PromptExtendSettings = runtime.settings
        self._engine_turn = asyncio.Lock()
        """The worker holds a task claimed ahead; the engine runs one task at a time."""
        self._waiting = 0
        """Tasks waiting for the engine's turn."""
        self._turn_used = asyncio.Event()
        """Set when the task that got the turn has started the engine, or given the turn up."""

    async def run(
        self, task: TaskRecord, run: TaskRun, through_engine: ThroughEngine
    ) -> StoredResult:
        """Inputs, prompt extension, the engine, the stored outputs; ``run`` is checked for an
        abort between stages and at every denoising step, and ``through_engine`` is called
        when the engine is done with the task."""
        images = await self._fetch_inputs(task, run)
        run.advance(progress.INPUTS_FETCHED)
        run.check()
        width, height = output_size(task.params.size, images[-1].size)
        actual_prompt = await self._extend(task, images)
        run.check()
        job = EditJob(
            prompt=actual_prompt or task.params.prompt,
            images=tuple(images),
            n=task.params.n,
            width=width,
            height=height,
            negative_prompt=task.params.negative_prompt,
            seed=task.params.seed,
        )
        waited = self._engine_turn.locked()
        self._waiting += waited
        try:
            await self._engine_turn.acquire()
        finally:
            self._waiting -= waited
        try:
            try:
                if waited:
                    await self._confirm_held(task, run)
                run.check()
                run.advance(progress.DENOISE_START)
            finally:
                self._turn_used.set()
            output = await asyncio.to_thread(self._engine.edit, job, run.on_step)
            handing_over = self._waiting > 0
            if handing_over:
                self._turn_used.clear()
        finally:
            self._engine_turn.release()
        through_engine()
        if handing_over:
            await self._next_started()
        run.check()
        if len(output.images) != task.params.n:
            raise TaskFailure(
                ErrorCode.GENERATION_FAILED_NO_CONTENT, "The engine produced no image"
            )
        keys = await self._store(task, output, run)
        run.advance(progress.STORED)
        return StoredResult(
            keys=keys, engine_seconds=output.pipeline_seconds, actual_prompt=actual_prompt
        )

    async def _next_started(self) -> None:
        """Wait until the task that takes the engine's turn next has started the engine (or
        given its turn up): its fence check and the engine's start then have the event loop
        and the GIL to themselves, not shared with this task's encoding and storing, which
        otherwise stretched the engine's idle gap several times (bench/engine_gap.py)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(HANDOVER_WAIT_SECONDS):
                await self._turn_used.wait()

    async def _confirm_held(self, task: TaskRecord, run: TaskRun) -> None:
        """A task that waited for the engine may have been cancelled or reassigned meanwhile,
        and its watch only notices at its next write: ask the fence before the engine spends a
        run on it. In an outage the watch goes on checking instead."""
        if task.worker_id is None:
            return
        try:
            held = await self._rt.queue.holds(task.id, task.worker_id, task.attempt)
        except Exception as exc:
            if not is_transient(exc):
                raise
            return
        if not held:
            run.fenced_out = True
            run.abort(TaskCancelled("The task was cancelled or reassigned"))

    async def _extend(self, task: TaskRecord, images: list[Image.Image]) -> str | None:
        """The rewritten prompt, or ``None`` to go on with the original (off, failed, slow)."""
        if not task.params.prompt_extend or self._extender is None:
            return None
        started = time.monotonic()
        try:
            rewritten = await asyncio.wait_for(
                asyncio.to_thread(self._extender.extend, task.params.prompt, images),
                timeout=self._extension.prompt_extend_timeout,
            )
        except TimeoutError:
            rewritten = None
        log.info(
            "task %s: prompt extension (%s) %s in %.2fs",
            task.id,
            self._extender.name,
            "rewrote the prompt" if rewritten else "kept the original prompt",
            time.monotonic() - started,
        )
        return rewritten

    async def _fetch_inputs(self, task: TaskRecord, run: TaskRun) -> list[Image.Image]:
        images: list[Image.Image] = []
        for index, reference in enumerate(task.params.image_urls):
            run.check()
            try:
                data = await self._outlasting(
                    task, run, "input read", functools.partial(self._rt.inputs.read, reference)
                )
            except (InputRejected, OutboundRefused) as exc:
                raise TaskFailure(
                    ErrorCode.IMAGE_PROCESSING_ERROR, f"Image {index + 1}: {exc}"
                ) from exc
            image = await asyncio.to_thread(decode_input_image, data, index, self._limits)
            images.append(image)
        return images

    async def _store(self, task: TaskRecord, output: EditOutput, run: TaskRun) -> tuple[str, ...]:
        """Blob keys carry the attempt, so a fenced-out attempt never overwrites a live one."""
        watermark = task.params.watermark

        def encode(image: Image.Image) -> bytes:
            return encode_png(apply_watermark(image) if watermark else image)

        keys = []
        for index, image in enumerate(output.images):
            key = f"{task.id}/{task.attempt}/{index}.png"
            data = await asyncio.to_thread(encode, image)
            write = functools.partial(self._rt.blobs.put, key, data)
            await self._outlasting(task, run, "result write", write)
            keys.append(key)
        return tuple(keys)

    async def _outlasting(
        self, task: TaskRecord, run: TaskRun, what: str, operation: Callable[[], Awaitable[T]]
    ) -> T:
        """``operation()``, tried again while the database or the blob store is out (capped
        backoff, the outage logged once for the process), until it succeeds, fails otherwise,
        or the task is aborted (cancelled, timed out, its worker stopping: that reason is
        raised). An outage then costs the task time, not its inputs or its engine run."""
        retry = Retry(f"task {task.id} {what}", self._outages)
        loop = asyncio.get_running_loop()
        try:
            while True:
                run.check()
                try:
                    result = await operation()
                except Exception as exc:
                    until = loop.time() + retry.failed(exc)
                    while (left := until - loop.time()) > 0:
                        run.check()
                        await asyncio.sleep(min(left, ABORT_CHECK_SECONDS))
                    continue
                retry.succeeded()
                return result
        except BaseException:
            retry.abandon()
            raise
