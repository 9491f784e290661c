"""Results to PNG: lossless, valid to any reader, and only RGB takes the fast way."""

from __future__ import annotations

import io
import os
import struct

import pytest
from PIL import Image
from zlib_ng import zlib_ng

from qwenedit.media.images import encode_png
from qwenedit.media.png_check import png_pixels_intact
from qwenedit.media.png_encode import encode_rgb_png


def noise(size: tuple[int, int]) -> Image.Image:
    return Image.frombytes("RGB", size, os.urandom(size[0] * size[1] * 3))


def gradient(size: tuple[int, int]) -> Image.Image:
    red = Image.linear_gradient("L").resize(size)
    green = red.rotate(90).resize(size)
    return Image.merge("RGB", (red, green, Image.new("L", size, 77)))


@pytest.mark.parametrize(
    "image",
    [
        noise((517, 389)),
        noise((1, 1)),
        noise((3, 700)),
        gradient((1184, 896)),
        Image.new("RGB", (512, 512), (255, 0, 1)),
    ],
    ids=["noise-odd-size", "one-pixel", "narrow", "gradient", "solid"],
)
def test_every_pixel_comes_back(image: Image.Image) -> None:
    data = encode_rgb_png(image)
    Image.open(io.BytesIO(data)).verify()  # chunk checksums and structure
    back = Image.open(io.BytesIO(data))
    assert (back.mode, back.size) == ("RGB", image.size)
    assert back.tobytes() == image.tobytes()
    assert png_pixels_intact(data)


def test_rows_are_up_filtered_and_smaller_than_unfiltered() -> None:
    """Every row carries filter 2 (Up), which is what makes a photograph compress."""
    image = gradient((600, 400))
    data = encode_rgb_png(image)
    back = Image.open(io.BytesIO(data))
    assert back.tobytes() == image.tobytes()
    length = struct.unpack(">I", data[33:37])[0]
    assert data[37:41] == b"IDAT"
    rows = zlib_ng.decompress(data[41 : 41 + length])
    assert set(rows[:: 1 + 600 * 3]) == {2}
    raw = image.tobytes()
    unfiltered = b"".join(b"\0" + raw[y * 1800 : (y + 1) * 1800] for y in range(400))
    assert length < len(zlib_ng.compress(unfiltered, 3))


@pytest.mark.parametrize("mode", ["RGBA", "L", "P"])
def test_other_modes_keep_their_mode_through_pillow(mode: str) -> None:
    image = noise((64, 48)).convert(mode)
    back = Image.open(io.BytesIO(encode_png(image)))
    assert back.mode == mode
    assert back.tobytes() == image.tobytes()
