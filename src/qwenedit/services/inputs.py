"""A task's input images: accepted at create, read by the worker.

At create every entry of ``image_urls`` is classified (``media.sources``); an inline image is
decoded and checked in full (format, sides, pixels, corrupt data), so a bad image is a 400
before any credit is reserved. A small one then stays in the task row (``INLINE_MAX_BYTES``);
a larger one is written to the blob store and the task keeps a reference. Either way any worker
on any machine can read it, and it is deleted with the task."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Protocol

from qwenedit.blobs.base import BlobStore
from qwenedit.domain.task import is_task_id, task_id_second, task_ids_from
from qwenedit.errors import InputRejected, InvalidRequest, NotFound
from qwenedit.media.datauri import image_data_uri
from qwenedit.media.images import quick_png, sniff_format, verify_image
from qwenedit.media.sources import (
    INPUTS_ROOT,
    DataUriSource,
    InputSource,
    RemoteSource,
    StoredSource,
    UploadSource,
    classify_input,
    inputs_prefix,
    stored_input_key,
    stored_reference,
)
from qwenedit.services.uploads import UploadService
from qwenedit.setting_groups import LimitSettings, OutboundSettings
from qwenedit.store.accounts import Caller

INLINE_MAX_BYTES = 64 * 1024
"""An inline image up to this size is kept in the task row, as a data URI: it is then stored by
the create's own commit, and a create writes no file, which on a local disk is several system
calls, three fsyncs and a worker-thread round trip (a third of a small create's time,
bench/vs_cog.py). Larger images go to the blob store, so a row never
holds more than ``3 x INLINE_MAX_BYTES`` of them (the pattern of SQS's extended client, which
moves only large payloads to S3)."""


def _kept_inline(data: bytes) -> str | None:
    """The data URI a small image is kept as in the task row; ``None`` for a larger one."""
    kind = sniff_format(data)
    if kind is None or len(data) > INLINE_MAX_BYTES:
        return None
    return image_data_uri(data, kind)


class Fetcher(Protocol):
    async def fetch(self, url: str, *, max_bytes: int) -> bytes:
        """The body of ``url``; ``OutboundRefused`` when it may not or cannot be fetched."""
        ...


class TaskInputs:
    def __init__(
        self,
        *,
        limits: LimitSettings,
        outbound: OutboundSettings,
        uploads: UploadService,
        blobs: BlobStore,
        fetcher: Fetcher,
    ) -> None:
        self._limits = limits
        self._outbound = outbound
        self._uploads = uploads
        self._blobs = blobs
        self._fetcher = fetcher

    def _classify(self, url: str) -> InputSource:
        return classify_input(
            url,
            public_url=self._uploads.public_url,
            max_bytes=self._limits.max_image_bytes,
            allowance=self._outbound.private_network_allowance,
        )

    async def classify(self, account: Caller, image_urls: Sequence[str]) -> list[InputSource]:
        """What each entry is; ``InvalidRequest`` (param ``image_urls``) for what is
        decidable now: a bad data URI, a literal internal host, an upload not the caller's."""
        sources = []
        for index, url in enumerate(image_urls, start=1):
            try:
                source = self._classify(url)
            except InputRejected as exc:
                raise InvalidRequest(f"image_urls[{index}]: {exc}", param="image_urls") from exc
            if isinstance(source, UploadSource):
                try:
                    await self._uploads.owned(account, source.file_id)
                except NotFound as exc:
                    raise InvalidRequest(
                        f"image_urls[{index}]: no such upload, or it has expired",
                        param="image_urls",
                    ) from exc
            sources.append(source)
        return sources

    async def store(self, task_id: str, sources: Sequence[InputSource]) -> tuple[str, ...]:
        """Check every inline image in full, then write the large ones; what the task keeps.
        Nothing is written when an image is refused."""
        for index, source in enumerate(sources, start=1):
            if isinstance(source, DataUriSource):
                try:
                    if (png := quick_png(source.data)) is not None:
                        verify_image(source.data, self._limits, png)
                    else:
                        await asyncio.to_thread(verify_image, source.data, self._limits)
                except ValueError as exc:
                    message = f"image_urls[{index}]: {exc}"
                    raise InvalidRequest(message, param="image_urls") from exc
        references = []
        for index, source in enumerate(sources):
            match source:
                case DataUriSource(data=data) if (inline := _kept_inline(data)) is not None:
                    references.append(inline)
                case DataUriSource(data=data):
                    stored = StoredSource(stored_input_key(task_id, index))
                    await self._blobs.put(stored.key, data)
                    references.append(stored_reference(stored))
                case UploadSource() | StoredSource():
                    references.append(stored_reference(source))
                case RemoteSource(url=url):
                    references.append(url)
        return tuple(references)

    async def discard(self, task_id: str) -> None:
        """Delete the stored inputs of a task (never created, or past retention)."""
        await self._blobs.delete_prefix(inputs_prefix(task_id))

    async def stored_for(self, created_from: int, created_before: int) -> list[str]:
        """The ids that have stored inputs among tasks whose ids say they were made from the
        second ``created_from`` until before ``created_before``: whether each task exists is
        for the caller to ask."""
        names = await self._blobs.names_under(
            INPUTS_ROOT, after=task_ids_from(created_from), before=task_ids_from(created_before)
        )
        return [
            name
            for name in names
            if is_task_id(name) and created_from <= task_id_second(name) < created_before
        ]

    async def read(self, reference: str) -> bytes:
        """The bytes of one input, for the worker: from the blob store, inline (tasks from
        before inputs were stored), or over the network. ``InputRejected`` or
        ``OutboundRefused`` when it cannot be had."""
        match self._classify(reference):
            case DataUriSource(data=data):  # small, kept in the task row
                return data
            case StoredSource(key=key):
                stored = await self._blobs.get(key)
                if stored is None:
                    raise InputRejected("the stored input image is missing")
                return stored
            case UploadSource(file_id=file_id):
                upload = await self._uploads.content(file_id)
                if upload is None:
                    raise InputRejected("the uploaded file has expired or was deleted")
                return upload
            case RemoteSource(url=url):
                return await self._fetcher.fetch(url, max_bytes=self._limits.max_image_bytes)
