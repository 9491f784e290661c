"""Input images in, result images out: strict, bounded decoding (DESIGN §6, §8)."""

from __future__ import annotations

import io
import warnings

from PIL import Image, ImageOps, UnidentifiedImageError

from qwenedit.domain.task import ErrorCode
from qwenedit.errors import TaskFailure
from qwenedit.media.png_check import PlainPng, image_data_intact, plain_png, png_pixels_intact
from qwenedit.media.png_encode import encode_rgb_png
from qwenedit.setting_groups import LimitSettings

MIN_SIDE = 384
MAX_SIDE = 3072
PILLOW_FORMATS = ("JPEG", "PNG", "BMP", "WEBP", "TIFF")
"""What Pillow may decode. Multi-picture JPEGs (MPO, many phone photos) come through the JPEG
plugin."""

Image.init()  # registers every plugin: ``open(formats=...)`` fails on one not yet loaded


def sniff_format(data: bytes) -> str | None:
    """The image format from its magic bytes, or ``None`` when it is not one we accept."""
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"BM"):
        return "bmp"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    return None


def open_checked(data: bytes, limits: LimitSettings) -> Image.Image:
    """Open (headers only) and check format, pixel count and side lengths before decoding.
    Raises ``ValueError`` with a message fit for the client."""
    if sniff_format(data) is None:
        raise ValueError("unsupported image format (use JPEG, PNG, BMP, WEBP or TIFF)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data), formats=PILLOW_FORMATS)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ValueError(f"the image has more than {limits.max_image_pixels} pixels") from None
    except UnidentifiedImageError:
        raise ValueError("the file could not be read as an image") from None
    except OSError as exc:
        raise ValueError(f"the file could not be read as an image ({exc})") from None
    width, height = image.size
    if width * height > limits.max_image_pixels:
        raise ValueError(f"{width}x{height} has more than {limits.max_image_pixels} pixels")
    if not (MIN_SIDE <= width <= MAX_SIDE and MIN_SIDE <= height <= MAX_SIDE):
        raise ValueError(f"{width}x{height}: each side must be {MIN_SIDE} to {MAX_SIDE} pixels")
    return image


QUICK_CHECK_BYTES = 64 * 1024
QUICK_CHECK_PIXELS = 512 * 512
QUICK_CHECK_CHUNKS = 64
"""Chunks at most: an encoder's image data chunks of 8 KiB or more fill 64 KiB with eight."""


def quick_png(data: bytes) -> PlainPng | None:
    """The layout of ``data`` when ``verify_image`` costs less than handing it to a thread
    does (~0.35 ms of the event loop's CPU, bench/vs_cog.py): a small plain PNG of few pixels
    and few chunks, of a kind ``png_pixels_intact`` reads. Opening it inflates nothing (no
    compressed chunks), and its check or, if the check fails, Pillow's decode handles at most
    about a megabyte. ``None`` for anything else."""
    if len(data) > QUICK_CHECK_BYTES:
        return None
    png = plain_png(data)
    if (
        png is None
        or png.samples is None
        or png.chunks > QUICK_CHECK_CHUNKS
        or png.width * png.height > QUICK_CHECK_PIXELS
    ):
        return None
    return png


def open_verified(data: bytes, limits: LimitSettings) -> Image.Image:
    """``open_checked``, then proven to decode in full, so a truncated or corrupt file is
    refused now: a plain PNG by ``png_pixels_intact``, anything else by decoding it. Raises
    ``ValueError`` with a message fit for the client."""
    image = open_checked(data, limits)
    if png_pixels_intact(data):
        return image
    try:
        image.load()
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ValueError("the image data is corrupt or truncated") from exc
    return image


def verify_image(data: bytes, limits: LimitSettings, png: PlainPng | None = None) -> None:
    """``open_verified``'s verdict, without opening the image where its layout (``png``, else
    read here) allows: a PNG with nothing but a sound header before its image data
    (``PlainPng.header_only``), of a size within ``limits`` and with intact image data, is
    one Pillow opens and decodes, and whose size ``open_checked`` accepts. Anything else,
    and every refusal with its message, is ``open_verified``'s."""
    if png is None:
        png = plain_png(data)
    if png is None or not _proven(png, limits):
        open_verified(data, limits)


def _proven(png: PlainPng, limits: LimitSettings) -> bool:
    """Whether Pillow opens and decodes ``png`` and ``open_checked`` accepts its size (within
    ``limits`` and under Pillow's own bomb warning)."""
    pixels = png.width * png.height
    bomb = Image.MAX_IMAGE_PIXELS
    return (
        png.header_only
        and MIN_SIDE <= png.width <= MAX_SIDE
        and MIN_SIDE <= png.height <= MAX_SIDE
        and pixels <= limits.max_image_pixels
        and (bomb is None or pixels <= bomb)
        and image_data_intact(png)
    )


def to_rgb(image: Image.Image) -> Image.Image:
    """First frame, EXIF orientation applied, transparency composited onto white."""
    image.seek(0)
    image.load()
    ImageOps.exif_transpose(image, in_place=True)  # no copy when there is nothing to turn
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")


def decode_input_image(data: bytes, index: int, limits: LimitSettings) -> Image.Image:
    """An input image as RGB, or ``TaskFailure(image_processing_error)`` naming it by position."""
    try:
        return to_rgb(open_checked(data, limits))
    except ValueError as exc:
        raise TaskFailure(ErrorCode.IMAGE_PROCESSING_ERROR, f"Image {index + 1}: {exc}") from exc
    except (OSError, SyntaxError, Image.DecompressionBombError) as exc:
        raise TaskFailure(
            ErrorCode.IMAGE_PROCESSING_ERROR, f"Image {index + 1}: the image data is corrupt"
        ) from exc


PILLOW_COMPRESS_LEVEL = 3
"""zlib level when Pillow encodes (an image not in RGB): at 1184x896, level 3 encodes in ~85 ms
against ~230 ms at Pillow's default 6, for files ~16% larger (bench/engine_overhead.py)."""


def encode_png(image: Image.Image) -> bytes:
    """A result as PNG: RGB (what engines return) by ``png_encode``, anything else by Pillow."""
    if image.mode == "RGB":
        return encode_rgb_png(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PILLOW_COMPRESS_LEVEL)
    return buffer.getvalue()
