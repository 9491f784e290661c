"""Proof that a common PNG's pixel data decodes, without decoding it.

Every inline input is checked in full at create, so that a corrupt one is a 400 (DESIGN §8).
Pillow's decode of a PNG inflates the pixel data row by row, undoes each row's filter and
unpacks it: for a 384x384 input ~0.7 ms of CPU, most of a create's own work (bench/vs_cog.py).
A plain 8-bit RGB or RGBA PNG can only fail that decode in a few ways, all of which this
module looks for with one bulk inflate: its image data chunks are cut short, their zlib stream
is damaged or ends early, or a row names a filter that does not exist. The inflate is
zlib-ng's (as is Pillow's, inside its wheels), which is several times faster than Python's own
zlib on the repetitive data of most pictures (0.04 against 0.3 ms for that input;
bench/vs_cog.py prints the whole check's cost).

The answer is one-sided. ``True`` means Pillow's decode would succeed; ``False`` means only
that this check does not apply or could not prove it, and the caller decodes the image to
know. So the check can never refuse an image Pillow accepts."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER = struct.Struct(">I4sIIBBBBB")
"""A PNG's first chunk, right after the signature: length, type, then IHDR's fields (width,
height, bit depth, colour type, compression, filter method, interlace)."""
_HEADER_LENGTH = 13
_CHUNK = struct.Struct(">I4s")
_CHECKSUM = struct.Struct(">I")
_SAMPLES = {2: 3, 6: 4}
"""Samples per pixel of the colour types checked here: truecolour, truecolour with alpha."""
_LAST_FILTER = 4
"""Row filters are 0 (none) to 4 (Paeth)."""
_PLAIN_EXTRAS = frozenset({b"sRGB", b"gAMA", b"cHRM", b"pHYs", b"sBIT", b"bKGD", b"tIME", b"tRNS"})
"""The chunks a plain PNG may carry between its header and its image data: small, not
compressed, and read by Pillow when it opens the file. Anything else (a colour profile or
compressed text, which Pillow inflates; animation chunks, which change what it decodes; a
second header) makes the file not plain, and Pillow alone judges it."""


@dataclass(frozen=True)
class PlainPng:
    width: int
    height: int
    samples: int | None
    """Bytes per pixel of a non-interlaced 8-bit RGB or RGBA image, the kinds whose rows
    ``png_pixels_intact`` reads; ``None`` for any other kind."""
    image_data: bytes
    """The payloads of its IDAT chunks, joined."""
    chunks: int
    header_only: bool
    """Nothing but the header before the image data, and the header sound: its checksum
    matches and it names the only compression and filter methods there are. That is all
    Pillow reads when it opens such a file, so for one ``png_pixels_intact`` proves, Pillow's
    open and decode would both succeed."""


def plain_png(data: bytes) -> PlainPng | None:
    """The header and image data of a PNG laid out plainly, as encoders write photographs and
    screenshots: the header, a few of ``_PLAIN_EXTRAS``, one run of IDAT chunks, the end chunk,
    every chunk whole. ``None`` for anything else, including a file that is not a PNG."""
    if not data.startswith(SIGNATURE) or len(data) < len(SIGNATURE) + _HEADER.size + 4:
        return None
    length, kind, width, height, depth, colour, _, _, interlace = _HEADER.unpack_from(
        data, len(SIGNATURE)
    )
    if kind != b"IHDR" or length != _HEADER_LENGTH:
        return None
    parts: list[bytes] = []
    extras: set[bytes] = set()
    chunks = 1
    position = len(SIGNATURE) + _CHUNK.size + _HEADER_LENGTH + 4
    while position + _CHUNK.size <= len(data):
        length, kind = _CHUNK.unpack_from(data, position)
        start = position + _CHUNK.size
        end = start + length
        if end + 4 > len(data):  # the chunk, or its checksum, is cut short
            return None
        chunks += 1
        if kind == b"IDAT":
            parts.append(data[start:end])
        elif kind == b"IEND" and parts:
            checkable = depth == 8 and interlace == 0 and width * height > 0
            samples = _SAMPLES.get(colour) if checkable else None
            header_only = not extras and _header_sound(data)
            return PlainPng(width, height, samples, b"".join(parts), chunks, header_only)
        elif parts or kind not in _PLAIN_EXTRAS or kind in extras:
            return None  # each extra may come once (the PNG standard's rule for these)
        else:
            extras.add(kind)
        position = end + 4
    return None


def _header_sound(data: bytes) -> bool:
    """The checks Pillow makes of the header chunk when it opens a file: its checksum, and
    compression and filter methods 0."""
    start = len(SIGNATURE) + 4
    end = start + 4 + _HEADER_LENGTH
    (checksum,) = _CHECKSUM.unpack_from(data, end)
    methods = data[end - 3 : end - 1]
    return methods == b"\x00\x00" and zlib_ng.crc32(data[start:end]) == checksum


def png_pixels_intact(data: bytes) -> bool:
    """Whether the image data of a plain, checkable PNG (``plain_png``) would decode. The
    chunks before it are Pillow's to check, when it opens the file."""
    png = plain_png(data)
    return png is not None and image_data_intact(png)


def image_data_intact(png: PlainPng) -> bool:
    """``png_pixels_intact`` of a file already read by ``plain_png``."""
    if png.samples is None:
        return False
    stride = 1 + png.width * png.samples
    try:
        rows = zlib_ng.decompressobj().decompress(png.image_data, stride * png.height)
    except zlib_ng.error:  # type: ignore[misc]  # its stub declares the class an instance
        return False
    return len(rows) == stride * png.height and max(rows[::stride]) <= _LAST_FILTER
