"""Uploaded input images (``POST /v1/files``): checked like fetched images, kept for
``UPLOAD_TTL`` (72 h), and usable in ``image_urls`` by their owner. The worker reads them from
the BlobStore, never over the network."""

from __future__ import annotations

import asyncio
import logging
import secrets
from datetime import UTC, datetime, timedelta

from qwenedit.blobs.base import BlobStore
from qwenedit.domain.wire import FileObject
from qwenedit.errors import InvalidRequest, NotFound, RequestTooLarge
from qwenedit.media.images import open_verified, sniff_format
from qwenedit.media.sources import upload_url
from qwenedit.setting_groups import LimitSettings, RetentionSettings
from qwenedit.store.accounts import Caller
from qwenedit.store.files import FileRepo, StoredFile

log = logging.getLogger(__name__)


def _new_file_id() -> str:
    return "file-" + secrets.token_hex(16)


class UploadService:
    def __init__(
        self,
        *,
        limits: LimitSettings,
        retention: RetentionSettings,
        files: FileRepo,
        blobs: BlobStore,
        public_url: str,
    ) -> None:
        self._limits = limits
        self._retention = retention
        self._files = files
        self._blobs = blobs
        self.public_url = public_url
        """The base of this server's links: ``media.sources`` recognises uploads by it."""

    @property
    def max_bytes(self) -> int:
        """The largest upload accepted."""
        return self._limits.max_image_bytes

    def url(self, file_id: str) -> str:
        return upload_url(self.public_url, file_id)

    async def upload(self, account: Caller, data: bytes) -> FileObject:
        limit = self._limits.max_image_bytes
        if len(data) > limit:
            raise RequestTooLarge(f"The file is larger than {limit} bytes", param="file")
        if not data:
            raise InvalidRequest("The file is empty", param="file")
        try:
            image = await asyncio.to_thread(open_verified, data, self._limits)
        except ValueError as exc:
            raise InvalidRequest(f"file: {exc}", param="file") from exc
        now = datetime.now(UTC)
        stored = StoredFile(
            id=_new_file_id(),
            account_id=account.id,
            blob_key="",
            bytes=len(data),
            mime_type=f"image/{sniff_format(data)}",
            width=image.width,
            height=image.height,
            created_at=now,
            expires_at=now + timedelta(seconds=self._retention.upload_ttl),
        )
        stored = StoredFile(**{**stored.__dict__, "blob_key": f"files/{stored.id}"})
        await self._blobs.put(stored.blob_key, data)
        await self._files.add(stored)
        log.info("file %s uploaded: %d bytes, %dx%d", stored.id, len(data), *image.size)
        return self.view(stored)

    async def owned(self, account: Caller, file_id: str) -> StoredFile:
        """The caller's unexpired upload, or 404 (another account's file does not exist)."""
        stored = await self._files.get(file_id)
        if (
            stored is None
            or stored.account_id != account.id
            or stored.expires_at <= datetime.now(UTC)
        ):
            raise NotFound(f"No such file: {file_id}")
        return stored

    async def download(self, account: Caller, file_id: str) -> tuple[bytes, str]:
        """The bytes and media type of the caller's upload (``NotFound`` otherwise)."""
        stored = await self.owned(account, file_id)
        data = await self._blobs.get(stored.blob_key)
        if data is None:
            raise NotFound(f"No such file: {file_id}")
        return data, stored.mime_type

    async def content(self, file_id: str) -> bytes | None:
        """The bytes of an unexpired upload, for the worker; ``None`` when it is gone."""
        stored = await self._files.get(file_id)
        if stored is None or stored.expires_at <= datetime.now(UTC):
            return None
        return await self._blobs.get(stored.blob_key)

    async def delete_expired(self) -> int:
        expired = await self._files.expired(datetime.now(UTC))
        for stored in expired:
            await self._blobs.delete_prefix(stored.blob_key)
            await self._files.remove(stored.id)
            log.info("file %s expired and was deleted", stored.id)
        return len(expired)

    def view(self, stored: StoredFile) -> FileObject:
        return FileObject(
            id=stored.id,
            url=self.url(stored.id),
            bytes=stored.bytes,
            mime_type=stored.mime_type,
            width=stored.width,
            height=stored.height,
            created_at=int(stored.created_at.timestamp()),
            expires_at=int(stored.expires_at.timestamp()),
        )
