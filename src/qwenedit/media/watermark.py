"""The interface's ``watermark`` option: "Qwen-Image" in the bottom-right corner."""

from __future__ import annotations

from PIL import Image, ImageDraw, ImageFont

WATERMARK_TEXT = "Qwen-Image"
HEIGHT_SHARE = 0.04
"""Text height as a share of the image's shorter side (at least ``MIN_FONT_SIZE`` px)."""
MIN_FONT_SIZE = 10


def apply_watermark(image: Image.Image) -> Image.Image:
    """A copy of ``image`` with the text drawn in white over a dark outline, so it is legible on
    any background, inset from the corner by half the text height."""
    marked = image.convert("RGB")
    size = max(MIN_FONT_SIZE, round(min(marked.size) * HEIGHT_SHARE))
    font = ImageFont.load_default(size=size)
    draw = ImageDraw.Draw(marked)
    stroke = max(1, size // 12)
    _, _, right, bottom = draw.textbbox((0, 0), WATERMARK_TEXT, font=font, stroke_width=stroke)
    margin = size // 2
    origin = (marked.width - right - margin, marked.height - bottom - margin)
    draw.text(
        origin,
        WATERMARK_TEXT,
        font=font,
        fill=(255, 255, 255),
        stroke_width=stroke,
        stroke_fill=(0, 0, 0),
    )
    return marked
