"""Result PNG encoding: qwenedit's encoder (Up filter + zlib-ng, ``media/png_encode.py``) side
by side with Pillow's at the level it used before (3), on the same images in the same run: CPU
ms per image and bytes. Every output is decoded again and compared with its input.

    .venv/bin/python bench/png_encode.py [--rounds 10]
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import time
from collections.abc import Callable

from PIL import Image

from qwenedit.media.images import PILLOW_COMPRESS_LEVEL
from qwenedit.media.png_encode import encode_rgb_png


def photo_like(size: tuple[int, int]) -> Image.Image:
    """Smooth gradients with sensor-like noise: compresses as a photograph does, not as a flat
    test card or as pure noise."""
    red = Image.linear_gradient("L").resize(size)
    green = red.rotate(90).resize(size)
    blue = Image.radial_gradient("L").resize(size)
    smooth = Image.merge("RGB", (red, green, blue))
    grain = Image.effect_noise(size, 12).convert("RGB")
    return Image.blend(smooth, grain, 0.15)


def pillow(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PILLOW_COMPRESS_LEVEL)
    return buffer.getvalue()


def cpu_ms(encode: Callable[[Image.Image], bytes], image: Image.Image, rounds: int) -> float:
    encode(image)
    started = time.process_time()
    for _ in range(rounds):
        encode(image)
    return (time.process_time() - started) * 1000 / rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    images = {
        "solid 512x512 (bench/vs_cog.py's result)": Image.new("RGB", (512, 512), (90, 140, 200)),
        "photo-like 1024x1024": photo_like((1024, 1024)),
        "photo-like 1184x896": photo_like((1184, 896)),
        "noise 1024x1024": Image.frombytes("RGB", (1024, 1024), os.urandom(1024 * 1024 * 3)),
    }
    print(f"{sys.argv[0]} --rounds {args.rounds}; CPU ms per image, bytes")
    print(f"{'':<42}{'qwenedit':>20}{'Pillow level 3':>20}{'time ratio':>12}{'size ratio':>12}")
    for label, image in images.items():
        ours, theirs = encode_rgb_png(image), pillow(image)
        for data in (ours, theirs):
            assert Image.open(io.BytesIO(data)).tobytes() == image.tobytes()
        ours_ms = cpu_ms(encode_rgb_png, image, args.rounds)
        theirs_ms = cpu_ms(pillow, image, args.rounds)
        cells = (f"{ours_ms:.1f} / {len(ours)}", f"{theirs_ms:.1f} / {len(theirs)}")
        print(
            f"{label:<42}{cells[0]:>20}{cells[1]:>20}"
            f"{ours_ms / theirs_ms:>12.2f}{len(ours) / len(theirs):>12.2f}"
        )


if __name__ == "__main__":
    main()
