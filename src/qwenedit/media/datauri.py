"""Inline images: ``data:image/<type>;base64,<payload>`` URIs in ``image_urls``."""

from __future__ import annotations

import base64
import binascii

DATA_URI_TYPES = frozenset({"jpeg", "jpg", "png", "bmp", "webp", "tiff"})


def parse_image_data_uri(uri: str, max_bytes: int) -> bytes:
    """The decoded bytes of an image data URI. Raises ``ValueError`` with a message fit for
    the client. The content itself is judged later, by decoding (magic bytes, not the type)."""
    header, comma, payload = uri.partition(",")
    if not comma or header[:5].lower() != "data:":
        raise ValueError("a data URI must look like data:image/png;base64,...")
    media_type, *parameters = header[len("data:") :].split(";")
    kind = media_type.strip().lower().removeprefix("image/")
    if not media_type.lower().startswith("image/") or kind not in DATA_URI_TYPES:
        raise ValueError(f"data URI type must be image/ one of {', '.join(sorted(DATA_URI_TYPES))}")
    if "base64" not in (parameter.strip().lower() for parameter in parameters):
        raise ValueError("a data URI must be base64-encoded")
    if len(payload) * 3 // 4 > max_bytes + 3:
        raise ValueError(f"the image is larger than {max_bytes} bytes")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("the data URI is not valid base64") from exc
    if len(data) > max_bytes:
        raise ValueError(f"the image is larger than {max_bytes} bytes")
    if not data:
        raise ValueError("the data URI is empty")
    return data


def image_data_uri(data: bytes, kind: str) -> str:
    """``data`` as a data URI of ``image/<kind>``."""
    return f"data:image/{kind};base64,{base64.b64encode(data).decode()}"
