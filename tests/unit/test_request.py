"""Every §4.1 rule of the create body, and its error."""

from __future__ import annotations

from typing import Any

import pytest

from qwenedit.domain.request import parse_edit_request
from qwenedit.errors import ApiError, InvalidRequest, NotFound

URL = "https://example.com/a.png"


def body(**fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"prompt": "make it blue", "image_urls": [URL]}
    base.update(fields)
    return {key: value for key, value in base.items() if value is not ...}


def refused(payload: object, *, insecure: bool = False) -> ApiError:
    with pytest.raises(ApiError) as caught:
        parse_edit_request(payload, allow_insecure_callbacks=insecure)
    return caught.value


def test_defaults_are_applied() -> None:
    request = parse_edit_request(body(), allow_insecure_callbacks=False)
    assert request.prompt == "make it blue"
    assert request.image_urls == (URL,)
    assert request.n == 1
    assert request.negative_prompt is None
    assert request.size is None
    assert request.prompt_extend is True
    assert request.watermark is False
    assert request.seed is None
    assert request.callback_url is None


def test_null_counts_as_absent_and_unknown_fields_are_ignored() -> None:
    request = parse_edit_request(
        body(n=None, seed=None, size=None, model=None, extra={"x": 1}),
        allow_insecure_callbacks=False,
    )
    assert (request.n, request.seed, request.size) == (1, None, None)


@pytest.mark.parametrize("payload", [[], "text", 3, None])
def test_body_must_be_an_object(payload: object) -> None:
    error = refused(payload)
    assert isinstance(error, InvalidRequest)
    assert error.param is None


def test_other_model_is_not_found() -> None:
    error = refused(body(model="qwen-image-edit"))
    assert isinstance(error, NotFound)
    assert (error.status, error.param) == (404, "model")


def test_model_of_wrong_type_is_bad_request() -> None:
    error = refused(body(model=7))
    assert (error.status, error.param) == (400, "model")


@pytest.mark.parametrize("prompt", [..., "", "   \n", 5, "x" * 2001])
def test_bad_prompts(prompt: object) -> None:
    error = refused(body(prompt=prompt))
    assert (error.status, error.type, error.param) == (400, "invalid_request_error", "prompt")


def test_prompt_of_2000_characters_passes() -> None:
    request = parse_edit_request(body(prompt="é" * 2000), allow_insecure_callbacks=False)
    assert len(request.prompt) == 2000


@pytest.mark.parametrize(
    "urls",
    [
        ...,
        [],
        [URL] * 4,
        URL,
        [5],
        ["ftp://example.com/a.png"],
        ["example.com/a.png"],
        ["https://"],
        ["https://exa mple.com/a.png"],
        ["data:text/plain;base64,aGk="],
        ["https://example.com:99999/a.png"],
    ],
)
def test_bad_image_urls(urls: object) -> None:
    assert refused(body(image_urls=urls)).param == "image_urls"


def test_three_images_and_a_data_uri_pass() -> None:
    data = "data:image/png;base64,iVBORw0KGgo="
    request = parse_edit_request(
        body(image_urls=[URL, "http://example.org/b.jpg", data]), allow_insecure_callbacks=False
    )
    assert request.image_urls[2] == data


@pytest.mark.parametrize("n", [0, 7, True, "2", 2.0, -1])
def test_bad_n(n: object) -> None:
    assert refused(body(n=n)).param == "n"


@pytest.mark.parametrize("n", [1, 6])
def test_n_bounds_pass(n: int) -> None:
    assert parse_edit_request(body(n=n), allow_insecure_callbacks=False).n == n


def test_negative_prompt_is_truncated_silently() -> None:
    request = parse_edit_request(body(negative_prompt="y" * 700), allow_insecure_callbacks=False)
    assert request.negative_prompt == "y" * 500


def test_negative_prompt_of_wrong_type() -> None:
    assert refused(body(negative_prompt=["bad"])).param == "negative_prompt"


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ("1024x1024", (1024, 1024)),
        ("1030*1000", (1024, 1008)),
        ("512X2048", (512, 2048)),
        ("1032x1032", (1040, 1040)),
    ],
)
def test_size_is_rounded_to_sixteen(size: str, expected: tuple[int, int]) -> None:
    assert parse_edit_request(body(size=size), allow_insecure_callbacks=False).size == expected


@pytest.mark.parametrize("size", ["511x1024", "1024x2049", "1024", "axb", "1024x1024x3", 1024])
def test_bad_size(size: object) -> None:
    assert refused(body(size=size)).param == "size"


def test_size_needs_n_of_one() -> None:
    assert refused(body(size="1024x1024", n=2)).param == "size"


@pytest.mark.parametrize("name", ["prompt_extend", "watermark"])
@pytest.mark.parametrize("value", ["true", 1, 0])
def test_flags_must_be_booleans(name: str, value: object) -> None:
    assert refused(body(**{name: value})).param == name


@pytest.mark.parametrize("seed", [-1, 2_147_483_648, "5", 1.5, False])
def test_bad_seed(seed: object) -> None:
    assert refused(body(seed=seed)).param == "seed"


@pytest.mark.parametrize("seed", [0, 2_147_483_647])
def test_seed_bounds_pass(seed: int) -> None:
    assert parse_edit_request(body(seed=seed), allow_insecure_callbacks=False).seed == seed


def test_callback_must_be_https() -> None:
    assert refused(body(callback_url="http://example.com/hook")).param == "callback_url"


def test_insecure_callbacks_can_be_allowed() -> None:
    request = parse_edit_request(
        body(callback_url="http://example.com/hook"), allow_insecure_callbacks=True
    )
    assert request.callback_url == "http://example.com/hook"


def test_callback_length_limit() -> None:
    base = "https://example.com/"
    exact = base + "a" * (2048 - len(base))
    request = parse_edit_request(body(callback_url=exact), allow_insecure_callbacks=False)
    assert request.callback_url == exact
    assert refused(body(callback_url=exact + "a")).param == "callback_url"
