"""The Engine seam: what a worker asks of any model backend."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from PIL import Image

StepCallback = Callable[[int, int], None]
"""Called after each denoising step with ``(steps_done, steps_total)``. It may raise
``TaskCancelled`` (or any ``TaskFailure``) to stop the engine at that step."""


@dataclass(frozen=True)
class EditJob:
    """One edit, fully resolved: inputs decoded to RGB, output size computed by ``domain``."""

    prompt: str
    images: tuple[Image.Image, ...]
    n: int
    width: int
    height: int
    negative_prompt: str | None
    seed: int


@dataclass(frozen=True)
class EditOutput:
    images: tuple[Image.Image, ...]
    """Exactly ``job.n`` RGB images of exactly ``job.width`` x ``job.height``."""
    pipeline_seconds: float
    """Wall time spent inside the model call(s), for overhead accounting."""


class Engine(Protocol):
    """A loaded model. ``edit`` blocks (the worker runs it in a thread) and must never be
    entered twice at once on the same object; callers serialise.

    Failures are raised as ``TaskFailure`` with the DESIGN §8 code: ``resource_exhausted``
    for out-of-memory, ``invalid_parameters`` for a job the model rejects, ``service_error``
    for anything else."""

    name: str

    def edit(self, job: EditJob, on_step: StepCallback) -> EditOutput: ...

    def close(self) -> None: ...


@runtime_checkable
class TokenCounter(Protocol):
    """An engine that can say how long a prompt is for its model (``domain.prompt_fit``)."""

    def count_prompt_tokens(self, prompt: str) -> int:
        """Tokens the prompt takes in the model's text sequence, template included, images
        not. Safe to call from another thread while the engine edits."""
        ...
