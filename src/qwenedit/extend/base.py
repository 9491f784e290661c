"""The PromptExtender seam."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from PIL import Image


class PromptExtender(Protocol):
    """Rewrites an edit instruction, seeing the input images. Blocking (the worker runs it in a
    thread). Returns ``None`` on any failure: the task then goes on with the original prompt."""

    name: str

    def extend(self, prompt: str, images: Sequence[Image.Image]) -> str | None: ...

    def close(self) -> None: ...
