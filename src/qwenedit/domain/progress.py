"""Progress phases of one task, as the percentage the wire shows.

Progress rises through the stages and, inside the engine, through the denoising steps; it
reaches 100 only when the task is completed."""

from __future__ import annotations

CLAIMED = 2
INPUTS_FETCHED = 8
DENOISE_START = 10
DENOISE_END = 92
STORED = 98
COMPLETED = 100


def denoising(done: int, total: int) -> int:
    """Progress after ``done`` of ``total`` denoising steps."""
    if total <= 0:
        return DENOISE_START
    fraction = min(max(done, 0), total) / total
    return DENOISE_START + int((DENOISE_END - DENOISE_START) * fraction)
