from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from qwenedit.blobs.signing import sign, signed_path, verify

SECRET = b"s3cret"


def test_signed_path_verifies_until_it_expires() -> None:
    path = signed_path("task/1/0.png", 2000, SECRET)
    parts = urlsplit(path)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    assert parts.path == "/v1/results/task/1/0.png"
    assert verify("task/1/0.png", int(query["expires"]), query["signature"], SECRET, now=1999)
    assert not verify("task/1/0.png", int(query["expires"]), query["signature"], SECRET, now=2000)


def test_tampering_is_detected() -> None:
    signature = sign("a/1/0.png", 2000, SECRET)
    assert not verify("a/1/1.png", 2000, signature, SECRET, now=0)
    assert not verify("a/1/0.png", 2001, signature, SECRET, now=0)
    assert not verify("a/1/0.png", 2000, signature, b"other", now=0)
    assert not verify("a/1/0.png", 2000, signature[:-1] + "A", SECRET, now=0)


def test_a_signature_that_is_not_ascii_is_just_wrong() -> None:
    from qwenedit.blobs.signing import verify

    assert not verify("task/1/0.png", 2_000_000_000, "\x02\u009f\U0003bce6", b"secret", 1)
