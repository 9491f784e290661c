"""How the task object links its result images (``QWENEDIT_RESULT_LINKS``)."""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.signing import signed_path


class ResultLinks(Protocol):
    def url(self, key: str, expires_at: datetime, now: datetime) -> str:
        """A link that downloads blob ``key`` without the bearer key until ``expires_at``."""
        ...


class SignedLinks:
    """This server's ``/v1/results`` route, signed with SECRET_KEY: the same link on every
    read and from every node that shares the key."""

    def __init__(self, public_url: str, secret: bytes) -> None:
        self._base = public_url.rstrip("/")
        self._secret = secret

    def url(self, key: str, expires_at: datetime, now: datetime) -> str:
        return self._base + signed_path(key, int(expires_at.timestamp()), self._secret)


class PresignedLinks:
    """The store's own presigned URLs: clients download from the bucket, not from us, so its
    endpoint must be one they can reach. Each read signs anew (SigV4 signs the time of
    signing), so the text changes while the expiry stays the results' expiry."""

    def __init__(self, blobs: BlobStore) -> None:
        self._blobs = blobs

    def url(self, key: str, expires_at: datetime, now: datetime) -> str:
        return self._blobs.presigned_url(key, expires_at - now)
