"""The quick PNG check: it proves a decode succeeds only where Pillow's decode does."""

from __future__ import annotations

import io
import os
import struct
import zlib

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from qwenedit.media.images import open_verified, quick_png, verify_image
from qwenedit.media.png_check import SIGNATURE, plain_png, png_pixels_intact
from qwenedit.setting_groups import LimitSettings


def saved(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def noise(mode: str, size: tuple[int, int]) -> Image.Image:
    return Image.frombytes(mode, size, os.urandom(size[0] * size[1] * len(mode)))


def chunk(kind: bytes, payload: bytes) -> bytes:
    checksum = zlib.crc32(payload, zlib.crc32(kind))
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", checksum)


def handmade(
    rows: bytes, *, width: int = 400, height: int = 400, interlace: int = 0, colour: int = 2
) -> bytes:
    """An RGB PNG whose filtered rows (each a filter byte and its pixels) are given raw."""
    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, interlace)
    return (
        SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def pillow_decodes(data: bytes) -> bool:
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except (OSError, SyntaxError, ValueError):
        return False
    return True


STRIDE = 1 + 400 * 3
GOOD_ROWS = b"".join(bytes([row % 5]) + bytes(400 * 3) for row in range(400))


@pytest.mark.parametrize(
    "data",
    [
        saved(Image.new("RGB", (384, 384), (90, 140, 200))),
        saved(Image.new("RGBA", (500, 400), (90, 140, 200, 10))),
        saved(noise("RGB", (600, 500))),  # several image data chunks
        handmade(GOOD_ROWS),  # every filter type
    ],
    ids=["solid-rgb", "rgba", "noise-many-chunks", "all-filters"],
)
def test_plain_pngs_are_proven_intact(data: bytes) -> None:
    assert pillow_decodes(data)
    assert png_pixels_intact(data)


@pytest.mark.parametrize(
    "image",
    [
        Image.new("L", (400, 400)),
        Image.new("P", (400, 400)),
        Image.new("I;16", (400, 400)),
        Image.new("LA", (400, 400)),
    ],
    ids=["grey", "palette", "16-bit", "grey-alpha"],
)
def test_other_kinds_are_left_to_pillow(image: Image.Image) -> None:
    assert not png_pixels_intact(saved(image))


def test_an_interlaced_png_is_left_to_pillow() -> None:
    assert not png_pixels_intact(handmade(GOOD_ROWS, interlace=1))


def damaged_stream() -> bytes:
    data = bytearray(handmade(GOOD_ROWS))
    start = data.index(b"IDAT") + 4
    data[start + 2 : start + 12] = b"\xff" * 10
    return bytes(data)


def interrupted() -> bytes:
    """The image data split in two chunks with another chunk between them: Pillow stops at
    the first run's end."""
    whole = zlib.compress(GOOD_ROWS)
    header = struct.pack(">IIBBBBB", 400, 400, 8, 2, 0, 0, 0)
    return (
        SIGNATURE
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", whole[:100])
        + chunk(b"tEXt", b"a\x00b")
        + chunk(b"IDAT", whole[100:])
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    "data",
    [
        handmade(GOOD_ROWS[:STRIDE] + b"\x05" + GOOD_ROWS[STRIDE + 1 :]),
        saved(noise("RGB", (400, 400)))[:-5000],
        damaged_stream(),
        interrupted(),
    ],
    ids=["unknown-filter", "cut-short", "damaged-stream", "interrupted"],
)
def test_damaged_pngs_are_not_proven_and_pillow_refuses_them(data: bytes) -> None:
    assert not png_pixels_intact(data)
    assert not pillow_decodes(data)
    with pytest.raises(ValueError, match="corrupt or truncated"):
        open_verified(data, LimitSettings())


def test_what_it_cannot_prove_is_pillows_to_judge() -> None:
    """A zlib stream that ends a row early: not proven here, yet Pillow decodes it (the last
    row left blank), so it is accepted."""
    short = handmade(GOOD_ROWS[: STRIDE * 399])
    assert not png_pixels_intact(short)
    assert open_verified(short, LimitSettings()).size == (400, 400)


SAMPLE = saved(Image.new("RGB", (400, 400), (30, 60, 90)).rotate(30))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    cut=st.integers(min_value=33, max_value=len(SAMPLE)),
    flips=st.lists(
        st.tuples(st.integers(min_value=33, max_value=len(SAMPLE) - 1), st.integers(0, 255)),
        max_size=4,
    ),
)
def test_whatever_it_proves_pillow_decodes(cut: int, flips: list[tuple[int, int]]) -> None:
    """Past the header, any bytes changed and any end cut off: ``True`` only where Pillow
    decodes it too."""
    data = bytearray(SAMPLE[:cut])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    if png_pixels_intact(bytes(data)):
        assert pillow_decodes(bytes(data))


@settings(max_examples=300, deadline=None)
@given(
    colour=st.sampled_from([2, 6]),
    filters=st.lists(st.sampled_from([0, 1, 2, 3, 4, 4, 5, 255]), min_size=0, max_size=20),
    extra=st.binary(max_size=8),
)
def test_whatever_rows_it_is_given_it_agrees_with_pillow(
    colour: int, filters: list[int], extra: bytes
) -> None:
    """Rows with any filter bytes, too few or too many of them: proven exactly when Pillow
    decodes them, except a stream that ends early (Pillow leaves the rest blank)."""
    width, height = 16, 16
    stride = 1 + width * (3 if colour == 2 else 4)
    rows = b"".join(bytes([kind]) + bytes(range(stride - 1)) for kind in filters) + extra
    data = handmade(rows, width=width, height=height, colour=colour)
    proven = png_pixels_intact(data)
    if proven:
        assert pillow_decodes(data)
    elif len(rows) >= stride * height:
        assert not pillow_decodes(data)


def test_the_layout_of_a_plain_png_is_read() -> None:
    png = plain_png(saved(Image.new("RGBA", (512, 384))))
    assert png is not None
    assert (png.width, png.height, png.samples) == (512, 384, 4)
    grey = plain_png(saved(Image.new("L", (400, 400))))
    assert grey is not None and grey.samples is None  # plain, but not a kind checked here
    assert plain_png(b"\xff\xd8\xff" + bytes(40)) is None
    assert plain_png(SIGNATURE + bytes(10)) is None


HEADER = chunk(b"IHDR", struct.pack(">IIBBBBB", 400, 400, 8, 2, 0, 0, 0))
DATA = chunk(b"IDAT", zlib.compress(GOOD_ROWS))
END = chunk(b"IEND", b"")


@pytest.mark.parametrize(
    "data",
    [
        SIGNATURE + HEADER + END + DATA + END,
        SIGNATURE
        + HEADER
        + chunk(b"IHDR", struct.pack(">IIBBBBB", 300, 400, 8, 2, 0, 0, 0))
        + DATA
        + END,
        SIGNATURE
        + HEADER
        + chunk(b"acTL", struct.pack(">II", 1, 0))
        + chunk(b"fcTL", struct.pack(">IIIIIHHBB", 0, 383, 400, 0, 0, 1, 1, 0, 0))
        + DATA
        + END,
        SIGNATURE
        + HEADER
        + chunk(b"iCCP", b"p\x00\x00" + zlib.compress(bytes(10**6)))
        + DATA
        + END,
        SIGNATURE + HEADER + DATA + chunk(b"gAMA", b"\x00") + END,
        SIGNATURE + HEADER + DATA,
        SIGNATURE + HEADER + chunk(b"gAMA", bytes(4)) * 2 + DATA + END,
    ],
    ids=[
        "end-before-data",
        "second-header",
        "animation",
        "colour-profile",
        "chunk-after-data",
        "no-end",
        "an-extra-twice",
    ],
)
def test_a_png_not_laid_out_plainly_is_left_to_pillow(data: bytes) -> None:
    """Pillow reads each of these differently from the plain layout (it may stop early, decode
    another size or frame, inflate a profile, or fail on a chunk after the data): only Pillow
    can judge them, on a thread."""
    assert plain_png(data) is None
    assert not png_pixels_intact(data)
    assert quick_png(data) is None


def test_data_after_the_end_chunk_is_not_read() -> None:
    assert pillow_decodes(SIGNATURE + HEADER + DATA + END + b"trailing")
    assert png_pixels_intact(SIGNATURE + HEADER + DATA + END + b"trailing")


def test_an_end_chunk_before_the_data_makes_pillow_fail() -> None:
    assert not pillow_decodes(SIGNATURE + HEADER + END + DATA + END)


@pytest.mark.parametrize(
    ("data", "quick"),
    [
        (saved(Image.new("RGB", (512, 512))), True),
        (saved(Image.new("RGB", (513, 512))), False),  # too many pixels
        (saved(noise("RGB", (400, 400))), False),  # too many bytes
        (b"\xff\xd8\xff" + bytes(100), False),  # not a PNG
        (SIGNATURE + HEADER + chunk(b"IDAT", b"") * 100 + DATA + END, False),  # many chunks
    ],
    ids=["small-png", "many-pixels", "many-bytes", "jpeg", "many-chunks"],
)
def test_only_small_pngs_are_checked_on_the_event_loop(data: bytes, quick: bool) -> None:
    assert (quick_png(data) is not None) is quick


def verdict(check: object, data: bytes) -> str:
    try:
        check(data, LimitSettings())  # type: ignore[operator]
    except ValueError as exc:
        return str(exc)
    return "accepted"


@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow], deadline=None)
@given(
    cut=st.just(len(SAMPLE)) | st.integers(min_value=8, max_value=len(SAMPLE)),
    flips=st.lists(
        st.tuples(st.integers(min_value=8, max_value=40), st.integers(0, 255)), max_size=3
    )
    | st.lists(
        st.tuples(st.integers(min_value=8, max_value=len(SAMPLE) - 1), st.integers(0, 255)),
        max_size=3,
    ),
)
def test_verify_image_says_what_open_verified_says(cut: int, flips: list[tuple[int, int]]) -> None:
    """The header included, any bytes changed and any end cut off: the same verdict and the
    same message as opening and decoding with Pillow."""
    data = bytearray(SAMPLE[:cut])
    for position, value in flips:
        if position < len(data):
            data[position] = value
    assert verdict(verify_image, bytes(data)) == verdict(open_verified, bytes(data))


def with_header(fields: bytes, checksum: int | None = None) -> bytes:
    header = chunk(b"IHDR", fields)
    if checksum is not None:
        header = header[:-4] + struct.pack(">I", checksum)
    return SIGNATURE + header + DATA + END


GOOD_FIELDS = struct.pack(">IIBBBBB", 400, 400, 8, 2, 0, 0, 0)


@pytest.mark.parametrize(
    ("data", "header_only"),
    [
        (with_header(GOOD_FIELDS), True),
        (saved(Image.new("RGB", (400, 400))), True),
        (with_header(GOOD_FIELDS, checksum=0), False),
        (with_header(struct.pack(">IIBBBBB", 400, 400, 8, 2, 1, 0, 0)), False),
        (with_header(struct.pack(">IIBBBBB", 400, 400, 8, 2, 0, 1, 0)), False),
        (SIGNATURE + HEADER + chunk(b"gAMA", bytes(4)) + DATA + END, False),
    ],
    ids=["handmade", "pillow", "bad-checksum", "compression-1", "filter-1", "an-extra"],
)
def test_a_header_only_png_has_a_sound_header_and_no_extras(data: bytes, header_only: bool) -> None:
    png = plain_png(data)
    assert png is not None
    assert png.header_only is header_only
    assert verdict(verify_image, data) == verdict(open_verified, data)


@pytest.mark.parametrize("size", [(383, 400), (400, 3073), (384, 384), (3072, 384)], ids=str)
def test_verify_image_refuses_sizes_as_open_checked_does(size: tuple[int, int]) -> None:
    rows = b"".join(b"\x00" + bytes(size[0] * 3) for _ in range(size[1]))
    data = handmade(rows, width=size[0], height=size[1])
    assert verdict(verify_image, data) == verdict(open_verified, data)
