"""Output size arithmetic (DESIGN §4.1): the engine is always given the exact size."""

from __future__ import annotations

import math
import re

SIZE_MIN = 512
SIZE_MAX = 2048
SIZE_MULTIPLE = 16
DEFAULT_AREA = 1024 * 1024
DEFAULT_MULTIPLE = 32

_SIZE_PATTERN = re.compile(r"^\s*(\d{1,5})\s*[x*]\s*(\d{1,5})\s*$", re.IGNORECASE)


def round_to_multiple(value: int, multiple: int) -> int:
    """Nearest multiple, halves rounded up: 1000 -> 1008, 1030 -> 1024 (for 16)."""
    return (value + multiple // 2) // multiple * multiple


def parse_size(text: str) -> tuple[int, int]:
    """``"WxH"`` or ``"W*H"``, each side 512-2048, rounded to a multiple of 16.

    Raises ``ValueError`` with a message fit for the client."""
    match = _SIZE_PATTERN.fullmatch(text)
    if match is None:
        raise ValueError("size must look like '1024x1024' (width x height)")
    width, height = int(match.group(1)), int(match.group(2))
    for side in (width, height):
        if not SIZE_MIN <= side <= SIZE_MAX:
            raise ValueError(f"each side of size must be between {SIZE_MIN} and {SIZE_MAX} pixels")
    return round_to_multiple(width, SIZE_MULTIPLE), round_to_multiple(height, SIZE_MULTIPLE)


def default_output_size(input_size: tuple[int, int]) -> tuple[int, int]:
    """The pipeline's own rule: about 1024² pixels with the input's aspect ratio, each side
    rounded to the nearest multiple of 32 (Python's ``round``, as diffusers does)."""
    width, height = input_size
    ratio = width / height
    out_width = math.sqrt(DEFAULT_AREA * ratio)
    out_height = out_width / ratio
    return (
        max(DEFAULT_MULTIPLE, round(out_width / DEFAULT_MULTIPLE) * DEFAULT_MULTIPLE),
        max(DEFAULT_MULTIPLE, round(out_height / DEFAULT_MULTIPLE) * DEFAULT_MULTIPLE),
    )


def output_size(requested: tuple[int, int] | None, last_input: tuple[int, int]) -> tuple[int, int]:
    """The size of every output image: the requested size, else the default rule applied to
    the LAST input image."""
    return requested if requested is not None else default_output_size(last_input)
