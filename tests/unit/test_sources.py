"""How an ``image_urls`` entry is classified, and which hosts are refused without DNS
(DESIGN §6, §8): the one set of rules both the create call and the worker apply."""

from __future__ import annotations

import base64
import ipaddress

import pytest

from qwenedit.errors import InputRejected
from qwenedit.media.addresses import Allowance
from qwenedit.media.sources import (
    INTERNAL_MESSAGE,
    DataUriSource,
    InputSource,
    RemoteSource,
    UploadSource,
    classify_input,
    refuse_internal_host,
    upload_file_id,
    upload_url,
)

PUBLIC_URL = "http://127.0.0.1:8000/"
PAYLOAD = b"\x89PNG not really an image"


def classify(url: str, *, max_bytes: int = 1000, allowance: Allowance = False) -> InputSource:
    return classify_input(url, public_url=PUBLIC_URL, max_bytes=max_bytes, allowance=allowance)


def data_uri(payload: bytes = PAYLOAD, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(payload).decode()


def test_an_upload_url_round_trips_to_its_file_id() -> None:
    url = upload_url(PUBLIC_URL, "file-abc")
    assert url == "http://127.0.0.1:8000/v1/files/file-abc/content"
    assert upload_file_id(url, PUBLIC_URL) == "file-abc"
    assert upload_file_id(url, "http://127.0.0.1:8000") == "file-abc"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/v1/files/",
        "http://127.0.0.1:8000/v1/files//content",
        "http://127.0.0.1:9000/v1/files/file-abc/content",
        "https://images.example/v1/files/file-abc/content",
    ],
)
def test_other_urls_name_no_upload(url: str) -> None:
    assert upload_file_id(url, PUBLIC_URL) is None


def test_our_upload_is_recognised_although_our_address_is_internal() -> None:
    url = upload_url(PUBLIC_URL, "file-abc")
    assert classify(url) == UploadSource("file-abc")


@pytest.mark.parametrize("scheme", ["data", "DATA", "Data"])
def test_a_data_uri_is_decoded(scheme: str) -> None:
    uri = scheme + data_uri().removeprefix("data")
    assert classify(uri) == DataUriSource(PAYLOAD)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        (data_uri(b"x" * 1001), "larger than 1000 bytes"),
        (data_uri(media_type="image/gif"), "type must be"),
        ("data:image/png,raw", "base64-encoded"),
        ("data:image/png;base64,@@@@", "not valid base64"),
        ("data:image/png;base64,", "empty"),
    ],
)
def test_a_bad_data_uri_is_rejected_with_a_client_message(uri: str, message: str) -> None:
    with pytest.raises(InputRejected, match=message):
        classify(uri)


def test_a_public_url_is_remote() -> None:
    url = "https://images.example/cat.png"
    assert classify(url) == RemoteSource(url)


def test_a_name_is_left_to_the_guarded_client() -> None:
    url = "http://intranet.example/cat.png"
    assert classify(url) == RemoteSource(url)
    refuse_internal_host(url, False)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/a.png",
        "http://10.0.0.1/a.png",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/a.png",
        "http://[::ffff:127.0.0.1]/a.png",
        "http://0.0.0.0/a.png",
        "http://2130706433/a.png",
        "http://0x7f.1/a.png",
        "http://localhost/a.png",
        "http://LOCALHOST./a.png",
        "http://api.localhost:8080/a.png",
        "https://user@127.0.0.1:8443/hook",
    ],
)
def test_internal_literal_hosts_are_refused_without_naming_them(url: str) -> None:
    with pytest.raises(InputRejected) as caught:
        refuse_internal_host(url, False)
    assert str(caught.value) == INTERNAL_MESSAGE
    with pytest.raises(InputRejected):
        classify(url)


def test_allowing_private_networks_lets_literal_hosts_through() -> None:
    for url in ("http://127.0.0.1/a.png", "http://localhost/a.png", "http://10.0.0.1/a.png"):
        refuse_internal_host(url, True)
        assert classify(url, allowance=True) == RemoteSource(url)


def test_an_allowance_of_networks_covers_just_those() -> None:
    loopback: Allowance = (ipaddress.ip_network("127.0.0.0/8"),)
    refuse_internal_host("http://127.0.0.1/a.png", loopback)
    refuse_internal_host("http://localhost/a.png", loopback)
    with pytest.raises(InputRejected):
        refuse_internal_host("http://10.0.0.1/a.png", loopback)
    with pytest.raises(InputRejected):
        refuse_internal_host("http://169.254.169.254/", loopback)


def test_a_malformed_url_is_rejected() -> None:
    with pytest.raises(InputRejected, match="not a valid host name"):
        refuse_internal_host("http://[::1/a.png", False)
