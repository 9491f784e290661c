"""The host a URL's client connects to (``media.hosts``): what parsers disagree on is refused."""

from __future__ import annotations

import pytest

from qwenedit.errors import InputRejected
from qwenedit.media.hosts import INVALID_HOST_MESSAGE, connect_host


@pytest.mark.parametrize(
    ("url", "host"),
    [
        ("https://Example.COM/a", "example.com"),
        ("https://example.com./a", "example.com."),
        ("https://bücher.de/a", "xn--bcher-kva.de"),
        ("https://xn--bcher-kva.de/a", "xn--bcher-kva.de"),
        ("https://[::ffff:127.0.0.1]:8443/", "::ffff:127.0.0.1"),
        ("http://0x7f.1/", "0x7f.1"),
        ("https://user:secret@a_b.example/", "a_b.example"),
    ],
)
def test_the_host_is_the_ascii_form_the_client_sends(url: str, host: str) -> None:
    assert connect_host(url) == host


@pytest.mark.parametrize(
    "url",
    [
        "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/",
        "https://①②⑦.0.0.1/",
        "https://xn--zz.com/",
        "https://ex\u00adample.com/",
        "https://ex%41mple.com/",
        "https://exa mple.com/",
        "https://[fe80::zz]/",
        "https:///path-only",
    ],
)
def test_hosts_parsers_disagree_on_are_refused(url: str) -> None:
    with pytest.raises(InputRejected) as refused:
        connect_host(url)
    assert "127" not in str(refused.value)
    assert str(refused.value) in (INVALID_HOST_MESSAGE, "the URL has no host")
