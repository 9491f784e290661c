"""Validation and defaults of ``POST /v1/images/generations`` (DESIGN §4.1).

Pure rules: only what can be decided from the body itself. Address checks that need the
network guard's rules happen in the service; image content is judged by the worker."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from qwenedit.domain.sizing import parse_size
from qwenedit.domain.task import MODEL_NAME
from qwenedit.errors import InvalidRequest, NotFound

PROMPT_MAX_CHARS = 2000
NEGATIVE_PROMPT_MAX_CHARS = 500
MAX_IMAGES = 3
MAX_IMAGE_URL_CHARS = 8192
N_MIN, N_MAX = 1, 6
SEED_MAX = 2_147_483_647
CALLBACK_URL_MAX_CHARS = 2048

_DATA_URI_PREFIX = re.compile(r"^data:image/[a-z0-9.+-]+;base64,", re.IGNORECASE)


@dataclass(frozen=True)
class EditRequest:
    """An accepted body with every default applied; ``seed`` is ``None`` when the server
    must draw one."""

    prompt: str
    image_urls: tuple[str, ...]
    n: int
    negative_prompt: str | None
    size: tuple[int, int] | None
    prompt_extend: bool
    watermark: bool
    seed: int | None
    callback_url: str | None


def parse_edit_request(body: object, *, allow_insecure_callbacks: bool) -> EditRequest:
    """Validate a decoded JSON body. JSON ``null`` counts as absent; unknown fields are ignored.

    Raises ``InvalidRequest`` (400) naming the offending field, or ``NotFound`` (404) for a
    model this server does not serve."""
    if not isinstance(body, Mapping):
        raise InvalidRequest("The request body must be a JSON object")
    fields: dict[str, Any] = {key: value for key, value in body.items() if value is not None}
    _check_model(fields.get("model"))
    requested_n = _integer(fields, "n", N_MIN, N_MAX)
    n = N_MIN if requested_n is None else requested_n
    size_text = _optional_string(fields, "size")
    size = None
    if size_text is not None:
        if n != 1:
            raise InvalidRequest("size can only be set when n is 1", param="size")
        try:
            size = parse_size(size_text)
        except ValueError as exc:
            raise InvalidRequest(str(exc), param="size") from exc
    negative = _optional_string(fields, "negative_prompt")
    return EditRequest(
        prompt=_prompt(fields.get("prompt")),
        image_urls=_image_urls(fields.get("image_urls")),
        n=n,
        negative_prompt=None if negative is None else negative[:NEGATIVE_PROMPT_MAX_CHARS],
        size=size,
        prompt_extend=_boolean(fields, "prompt_extend", default=True),
        watermark=_boolean(fields, "watermark", default=False),
        seed=_integer(fields, "seed", 0, SEED_MAX),
        callback_url=_callback_url(
            _optional_string(fields, "callback_url"), allow_insecure=allow_insecure_callbacks
        ),
    )


def _check_model(value: object) -> None:
    if value is None:
        return
    if not isinstance(value, str):
        raise InvalidRequest("model must be a string", param="model")
    if value != MODEL_NAME:
        raise NotFound(f"The model {value[:100]!r} does not exist", param="model")


def _prompt(value: object) -> str:
    if value is None:
        raise InvalidRequest("prompt is required", param="prompt")
    if not isinstance(value, str):
        raise InvalidRequest("prompt must be a string", param="prompt")
    _check_text(value, "prompt")
    if not value.strip():
        raise InvalidRequest("prompt must not be empty", param="prompt")
    if len(value) > PROMPT_MAX_CHARS:
        raise InvalidRequest(
            f"prompt must be at most {PROMPT_MAX_CHARS} characters", param="prompt"
        )
    return value


def _image_urls(value: object) -> tuple[str, ...]:
    if value is None:
        raise InvalidRequest("image_urls is required: a list of 1 to 3 images", param="image_urls")
    if not isinstance(value, list):
        raise InvalidRequest("image_urls must be an array of strings", param="image_urls")
    if not 1 <= len(value) <= MAX_IMAGES:
        raise InvalidRequest(
            f"image_urls must hold between 1 and {MAX_IMAGES} images", param="image_urls"
        )
    urls = []
    for index, url in enumerate(value, start=1):
        if not isinstance(url, str):
            raise InvalidRequest(f"image_urls[{index}] must be a string", param="image_urls")
        _check_text(url, "image_urls", shown=f"image_urls[{index}]")
        urls.append(_image_url(url, index))
    return tuple(urls)


def _image_url(url: str, index: int) -> str:
    if _DATA_URI_PREFIX.match(url):
        return url
    if len(url) > MAX_IMAGE_URL_CHARS:
        raise InvalidRequest(
            f"image_urls[{index}] is longer than {MAX_IMAGE_URL_CHARS} characters",
            param="image_urls",
        )
    if not _has_host(url, ("http", "https")):
        raise InvalidRequest(
            f"image_urls[{index}] must be an http(s) URL or a data:image/...;base64 URI",
            param="image_urls",
        )
    return url


def _callback_url(url: str | None, *, allow_insecure: bool) -> str | None:
    if url is None:
        return None
    if len(url) > CALLBACK_URL_MAX_CHARS:
        raise InvalidRequest(
            f"callback_url must be at most {CALLBACK_URL_MAX_CHARS} characters",
            param="callback_url",
        )
    schemes = ("https", "http") if allow_insecure else ("https",)
    if not _has_host(url, schemes):
        raise InvalidRequest("callback_url must be an https:// URL", param="callback_url")
    return url


def _has_host(url: str, schemes: tuple[str, ...]) -> bool:
    if any(character.isspace() for character in url):
        return False
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError:
        return False
    return parts.scheme.lower() in schemes and bool(parts.hostname)


def _optional_string(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is not None and not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", param=name)
    if value is not None:
        _check_text(value, name)
    return value


def _check_text(value: str, param: str, *, shown: str | None = None) -> None:
    """Text the server keeps must be storable and encodable: no NUL (PostgreSQL text cannot
    hold it) and no lone surrogate (JSON can spell ``"\ud800"``; UTF-8 cannot encode it)."""
    if "\x00" in value or not _is_utf8_encodable(value):
        raise InvalidRequest(
            f"{shown or param} must be Unicode text without NUL characters or lone surrogates",
            param=param,
        )


def _is_utf8_encodable(value: str) -> bool:
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _boolean(fields: dict[str, Any], name: str, *, default: bool) -> bool:
    value = fields.get(name, default)
    if not isinstance(value, bool):
        raise InvalidRequest(f"{name} must be true or false", param=name)
    return value


def _integer(fields: dict[str, Any], name: str, low: int, high: int) -> int | None:
    """An integer in ``[low, high]``, or ``None`` when absent; booleans, floats and numeric
    strings are refused."""
    value = fields.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(f"{name} must be an integer", param=name)
    if not low <= value <= high:
        raise InvalidRequest(f"{name} must be between {low} and {high}", param=name)
    return value
