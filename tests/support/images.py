from __future__ import annotations

import base64
import io
import random

from PIL import Image


def png_bytes(
    width: int = 400, height: int = 384, color: tuple[int, int, int] = (30, 120, 200)
) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, format="PNG")
    return buffer.getvalue()


def data_uri(data: bytes, kind: str = "png") -> str:
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"


def noise_png_bytes(width: int = 512, height: int = 384, seed: int = 7) -> bytes:
    """A PNG of random pixels: it does not compress, so it is larger than a task row keeps
    inline (``services.inputs.INLINE_MAX_BYTES``) and goes to the blob store."""
    buffer = io.BytesIO()
    pixels = random.Random(seed).randbytes(width * height * 3)
    Image.frombytes("RGB", (width, height), pixels).save(buffer, format="PNG")
    return buffer.getvalue()
