"""Proof that a common PNG's pixel data decodes, without decoding it.

Every inline input is checked in full at create, so that a corrupt one is a 400 (DESIGN §8).
Pillow's decode of a PNG inflates the pixel data row by row, undoes each row's filter and
unpacks it: for a 384x384 input ~0.7 ms of CPU, most of a create's own work (bench/vs_cog.py).
A plain 8-bit RGB or RGBA PNG can only fail that decode in a few ways, all of which this
module looks for with one bulk inflate: its image data chunks are cut short, their zlib stream
is damaged or ends early, or a row names a filter that does not exist. The inflate is
zlib-ng's, which is several times faster than the zlib Python and Pillow carry on the
repetitive data of most pictures (0.04 against 0.3 ms for that input; bench/vs_cog.py prints
the cost).

The answer is one-sided. ``True`` means Pillow's decode would succeed; ``False`` means only
that this check does not apply or could not prove it, and the caller decodes the image to
know. So the check can never refuse an image Pillow accepts."""

from __future__ import annotations

import struct

from zlib_ng import zlib_ng

SIGNATURE = b"\x89PNG\r\n\x1a\n"
_HEADER = struct.Struct(">I4sIIBBBBB")
"""A PNG's first chunk, right after the signature: length, type, then IHDR's fields (width,
height, bit depth, colour type, compression, filter method, interlace)."""
_CHUNK = struct.Struct(">I4s")
_SAMPLES = {2: 3, 6: 4}
"""Samples per pixel of the colour types checked here: truecolour, truecolour with alpha."""
_LAST_FILTER = 4
"""Row filters are 0 (none) to 4 (Paeth)."""


def png_size(data: bytes) -> tuple[int, int] | None:
    """Width and height from a PNG's header; ``None`` when ``data`` does not start as one."""
    if not data.startswith(SIGNATURE) or len(data) < len(SIGNATURE) + _HEADER.size:
        return None
    _, kind, width, height, *_ = _HEADER.unpack_from(data, len(SIGNATURE))
    return (width, height) if kind == b"IHDR" else None


def png_pixels_intact(data: bytes) -> bool:
    """Whether the pixel data of a non-interlaced 8-bit RGB or RGBA PNG would decode, read as
    Pillow reads it: the image data chunks that follow each other from the first one. The
    chunks before those are Pillow's to check, when it opens the file."""
    if png_size(data) is None:
        return False
    _, _, width, height, depth, colour, _, _, interlace = _HEADER.unpack_from(data, len(SIGNATURE))
    samples = _SAMPLES.get(colour)
    if depth != 8 or samples is None or interlace != 0 or width == 0 or height == 0:
        return False
    stride = 1 + width * samples
    compressed = _image_data(data)
    if compressed is None:
        return False
    try:
        rows = zlib_ng.decompressobj().decompress(compressed, stride * height)
    except zlib_ng.error:  # type: ignore[misc]  # its stub declares the class an instance
        return False
    return len(rows) == stride * height and max(rows[::stride]) <= _LAST_FILTER


def _image_data(data: bytes) -> bytes | None:
    """The payloads of the run of IDAT chunks, joined; ``None`` when there is none or a chunk
    on the way is cut short."""
    parts: list[bytes] = []
    position = len(SIGNATURE)
    while position + _CHUNK.size <= len(data):
        length, kind = _CHUNK.unpack_from(data, position)
        start = position + _CHUNK.size
        end = start + length
        if end + 4 > len(data):  # the chunk, or its checksum, is cut short
            return None
        if kind == b"IDAT":
            parts.append(data[start:end])
        elif parts:
            break
        position = end + 4
    return b"".join(parts) if parts else None
