"""Input decoding: formats by content, side limits, EXIF, alpha, bombs (DESIGN §8)."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from qwenedit.config import Settings
from qwenedit.errors import TaskFailure
from qwenedit.media.datauri import parse_image_data_uri
from qwenedit.media.images import decode_input_image, encode_png
from qwenedit.media.watermark import apply_watermark


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path)


def encoded(image: Image.Image, fmt: str, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "BMP", "WEBP", "TIFF"])
def test_accepted_formats_decode_to_rgb(fmt: str, settings: Settings) -> None:
    data = encoded(Image.new("RGB", (400, 500), (10, 200, 30)), fmt)
    image = decode_input_image(data, 0, settings)
    assert image.mode == "RGB"
    assert image.size == (400, 500)


@pytest.mark.parametrize("fmt", ["GIF", "ICO", "PPM"])
def test_other_formats_are_refused_by_content(fmt: str, settings: Settings) -> None:
    data = encoded(Image.new("RGB", (400, 400)), fmt)
    with pytest.raises(TaskFailure) as caught:
        decode_input_image(data, 1, settings)
    assert caught.value.code == "image_processing_error"
    assert caught.value.message.startswith("Image 2: unsupported image format")


@pytest.mark.parametrize(
    ("size", "ok"),
    [((384, 384), True), ((3072, 3072), True), ((383, 400), False), ((400, 3073), False)],
)
def test_side_limits(size: tuple[int, int], ok: bool, settings: Settings) -> None:
    data = encoded(Image.new("RGB", size), "PNG")
    if ok:
        assert decode_input_image(data, 0, settings).size == size
    else:
        with pytest.raises(TaskFailure, match="each side must be 384 to 3072"):
            decode_input_image(data, 0, settings)


def test_pixel_cap_is_checked_before_decoding(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, max_image_pixels=500 * 500)
    data = encoded(Image.new("RGB", (600, 600)), "PNG")
    with pytest.raises(TaskFailure, match="more than 250000 pixels"):
        decode_input_image(data, 0, settings)


def test_decompression_bomb_header_is_refused(settings: Settings) -> None:
    """A PNG that declares 100k x 100k pixels is refused from its header alone."""
    data = bytearray(encoded(Image.new("RGB", (400, 400)), "PNG"))
    data[16:24] = (100_000).to_bytes(4, "big") * 2
    with pytest.raises(TaskFailure) as caught:
        decode_input_image(bytes(data), 0, settings)
    assert caught.value.code == "image_processing_error"


def test_truncated_file_fails_cleanly(settings: Settings) -> None:
    data = encoded(Image.new("RGB", (400, 400), (1, 2, 3)), "JPEG")
    with pytest.raises(TaskFailure) as caught:
        decode_input_image(data[: len(data) // 3], 0, settings)
    assert caught.value.code == "image_processing_error"


def test_exif_orientation_is_applied(settings: Settings) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    data = encoded(Image.new("RGB", (600, 400)), "JPEG", exif=exif)
    assert decode_input_image(data, 0, settings).size == (400, 600)


def test_alpha_is_composited_on_white(settings: Settings) -> None:
    data = encoded(Image.new("RGBA", (400, 400), (255, 0, 0, 0)), "PNG")
    image = decode_input_image(data, 0, settings)
    assert image.getpixel((10, 10)) == (255, 255, 255)


def test_multi_picture_jpeg_uses_the_first_frame(settings: Settings) -> None:
    first = Image.new("RGB", (400, 400), (250, 0, 0))
    second = Image.new("RGB", (400, 400), (0, 0, 250))
    data = encoded(first, "MPO", save_all=True, append_images=[second])
    pixel = decode_input_image(data, 0, settings).getpixel((200, 200))
    assert isinstance(pixel, tuple)
    assert pixel[0] > 200
    assert pixel[2] < 50


def test_data_uri_round_trip_and_errors() -> None:
    payload = encoded(Image.new("RGB", (400, 400)), "PNG")
    uri = "data:image/png;base64," + base64.b64encode(payload).decode()
    assert parse_image_data_uri(uri, len(payload)) == payload
    with pytest.raises(ValueError, match="larger than"):
        parse_image_data_uri(uri, len(payload) - 1)
    with pytest.raises(ValueError, match="type must be"):
        parse_image_data_uri(uri.replace("image/png", "image/gif"), 10**6)
    with pytest.raises(ValueError, match="base64"):
        parse_image_data_uri("data:image/png,rawbytes", 10**6)
    with pytest.raises(ValueError, match="not valid base64"):
        parse_image_data_uri("data:image/png;base64,@@@@", 10**6)


def test_watermark_marks_the_bottom_right_corner_only() -> None:
    plain = Image.new("RGB", (800, 600), (40, 90, 160))
    marked = apply_watermark(plain)
    assert marked.size == plain.size

    def changed(box: tuple[int, int, int, int]) -> int:
        a, b = plain.crop(box).tobytes(), marked.crop(box).tobytes()
        return sum(1 for x, y in zip(a, b, strict=True) if x != y)

    assert changed((600, 540, 800, 600)) > 500
    assert changed((0, 0, 400, 300)) == 0
    assert changed((0, 540, 300, 600)) == 0


def test_watermark_scales_with_the_image() -> None:
    def marked_box(size: int) -> tuple[int, int, int, int]:
        plain = Image.new("RGB", (size, size), (0, 0, 0))
        box = ImageChops.difference(plain, apply_watermark(plain)).getbbox()
        assert box is not None
        return box

    small, large = marked_box(400), marked_box(1600)
    assert (large[2] - large[0]) > 2.5 * (small[2] - small[0])
    assert large[2] > 1500
    assert large[3] > 1500


def test_png_encoding_is_lossless() -> None:
    image = Image.new("RGB", (50, 40), (1, 2, 3))
    assert Image.open(io.BytesIO(encode_png(image))).tobytes() == image.tobytes()
