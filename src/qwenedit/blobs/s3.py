"""BlobStore on an S3 bucket: AWS S3, SeaweedFS, MinIO, R2 and the like.

The client is obstore, the Python binding of the Rust ``object_store`` crate. Why: one wheel of
about 16 MB with no Python dependencies (aiobotocore brings botocore's service models, aiohttp
and their stack), typed, with streaming reads, batched deletes (``DeleteObjects``, 1000 keys a
request), retries with backoff, and presigned URLs computed locally (``obstore.sign``).

obstore is async, but its coroutines hand their results to the event loop from Rust threads;
when a short command such as ``qwenedit doctor`` exits right after a call, such a thread can
re-enter the finalizing interpreter and the process dies with SIGABRT. So this store calls
obstore's blocking functions on a thread pool of its own: the Rust side still releases the GIL
while it waits, and the pool's threads are joined before the interpreter shuts down.

Configuration: obstore's ``S3Store`` starts from the ``AWS_*`` environment. Everything that
decides where and how we connect is passed explicitly from the settings, so they win: bucket,
prefix, region, endpoint, addressing style, signing, plain http, timeouts and retries. The
credentials come only from a provider that returns the settings' keys, never a session token,
profile or instance metadata that the library would otherwise find on its own.
"""

from __future__ import annotations

import asyncio
import functools
import math
import re
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, ParamSpec, TypeVar

import obstore
from obstore.exceptions import BaseError, GenericError
from obstore.store import S3Store
from pydantic import SecretStr

from qwenedit.blobs.base import CHUNK_BYTES, BlobStream, check_key, valid_key
from qwenedit.errors import ConfigError, StorageError, StorageUnavailable

if TYPE_CHECKING:
    from obstore import BytesStream, GetResult
    from obstore.store import S3Credential

P = ParamSpec("P")
T = TypeVar("T")

DEFAULT_REGION = "us-east-1"
POOL_THREADS = 16
"""Blocking obstore calls in flight at once (each waits on the network, not the CPU)."""
_ERRORS = (BaseError, OSError)
"""What obstore raises: its own errors, and ``FileNotFoundError`` for a missing object."""
_S3_CODE = re.compile(r"<Code>([A-Za-z]+)</Code>")
_HTTP_STATUS = re.compile(r"status code: (\d{3})")
_PASSING_STATUSES = frozenset({408, 429, *range(500, 600)})
"""Answers that say "not now": the store is slow, throttling or failing."""
_REFUSED_CREDENTIALS = frozenset({"InvalidAccessKeyId", "SignatureDoesNotMatch"})


@dataclass(frozen=True)
class S3Target:
    """Where the blobs are and who we are there."""

    bucket: str
    prefix: str
    endpoint: str | None
    """``None`` is AWS S3 itself (virtual-hosted requests); otherwise path-style requests."""
    region: str
    access_key_id: str
    secret_access_key: SecretStr
    timeout: float
    """Seconds for one request, retries included."""

    @property
    def location(self) -> str:
        url = f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"
        return f"{url} at {self.endpoint or f'AWS S3 ({self.region})'}"


class _SettingsCredentials:
    """obstore's credential provider: the configured keys and nothing else."""

    def __init__(self, access_key_id: str, secret_access_key: SecretStr) -> None:
        self._access_key_id = access_key_id
        self._secret_access_key = secret_access_key

    def __call__(self) -> S3Credential:
        return {
            "access_key_id": self._access_key_id,
            "secret_access_key": self._secret_access_key.get_secret_value(),
            "token": None,
            "expires_at": None,
        }


def _client(target: S3Target) -> S3Store:
    endpoint = target.endpoint or f"https://{target.bucket}.s3.{target.region}.amazonaws.com"
    timeout = timedelta(seconds=target.timeout)
    return S3Store(
        target.bucket,
        prefix=target.prefix or None,
        config={
            "endpoint": endpoint,
            "region": target.region,
            "virtual_hosted_style_request": target.endpoint is None,
            "skip_signature": False,
            "unsigned_payload": False,
            "request_payer": False,
        },
        client_options={
            "allow_http": endpoint.startswith("http://"),
            "timeout": timeout,
            "connect_timeout": min(timeout, timedelta(seconds=5)),
        },
        retry_config={
            "max_retries": 2,
            "retry_timeout": timeout,
            "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timeout / 4},
        },
        credential_provider=_SettingsCredentials(target.access_key_id, target.secret_access_key),
    )


def _describe_failure(exc: BaseException) -> str:
    """obstore's error, said in a few words (its own text is a multi-line debug dump)."""
    text = str(exc)
    code = _S3_CODE.search(text)
    if code is not None:
        name = code.group(1)
        if name == "NoSuchBucket":
            return "the bucket does not exist (NoSuchBucket)"
        if name in _REFUSED_CREDENTIALS:
            return f"the credentials were refused ({name})"
        if name == "AccessDenied":
            return "these credentials may not do this (AccessDenied)"
        return f"the store answered {name}"
    status = _HTTP_STATUS.search(text)
    if status is not None:
        return f"the store answered HTTP {status.group(1)}"
    lowered = text.lower()
    if "timed out" in lowered:
        return "no answer in time"
    if "error sending request" in lowered or "connect error" in lowered:
        return "cannot connect"
    return text.splitlines()[0][:200] if text else type(exc).__name__


def _next_chunk(stream: BytesStream) -> bytes | None:
    chunk = next(stream, None)
    return None if chunk is None else bytes(chunk)


class S3BlobStore:
    def __init__(self, target: S3Target) -> None:
        self._target = target
        self._store = _client(target)
        self._pool = ThreadPoolExecutor(max_workers=POOL_THREADS, thread_name_prefix="s3-blobs")

    @property
    def location(self) -> str:
        return self._target.location

    async def _call(self, function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._pool, functools.partial(function, *args, **kwargs))

    def _failure(self, action: str, key: str, exc: BaseException) -> StorageError:
        """``StorageUnavailable`` when no answer came (a connection or a timeout, which obstore
        reports as ``GenericError`` after its own retries) or the answer was a 5xx, a 408 or a
        429; any other answer (a 4xx, a bucket that is gone) is a refusal that waiting does not
        mend."""
        message = f"blob storage {self.location}: {action} {key}: {_describe_failure(exc)}"
        if isinstance(exc, ConnectionError | TimeoutError):
            return StorageUnavailable(message)
        if isinstance(exc, GenericError):
            status = _HTTP_STATUS.search(str(exc))
            if status is None or int(status.group(1)) in _PASSING_STATUSES:
                return StorageUnavailable(message)
        return StorageError(message)

    async def check(self) -> None:
        try:
            await self._call(self._list_one)
        except _ERRORS as exc:
            raise ConfigError(f"blob storage {self.location}: {_describe_failure(exc)}") from exc

    def _list_one(self) -> None:
        """Listing needs the bucket to exist and the credentials to be accepted: a HEAD of
        some object answers 404 for a missing bucket too."""
        next(obstore.list(self._store, chunk_size=1), None)

    async def put(self, key: str, data: bytes) -> None:
        check_key(key)
        try:
            await self._call(obstore.put, self._store, key, data)
        except _ERRORS as exc:
            raise self._failure("write", key, exc) from exc

    async def get(self, key: str) -> bytes | None:
        if not valid_key(key):
            return None
        try:
            return await self._call(self._get, key)
        except _ERRORS as exc:
            raise self._failure("read", key, exc) from exc

    def _get(self, key: str) -> bytes | None:
        try:
            return bytes(obstore.get(self._store, key).bytes())
        except FileNotFoundError:
            return None

    async def open(self, key: str) -> BlobStream | None:
        if not valid_key(key):
            return None
        try:
            result = await self._call(self._open, key)
        except _ERRORS as exc:
            raise self._failure("read", key, exc) from exc
        if result is None:
            return None
        stream = result.stream(min_chunk_size=CHUNK_BYTES)
        return BlobStream(size=result.meta["size"], chunks=self._chunks(key, stream))

    def _open(self, key: str) -> GetResult | None:
        """The object's headers are read here; its body as the chunks are consumed."""
        try:
            return obstore.get(self._store, key)
        except FileNotFoundError:
            return None

    async def _chunks(self, key: str, stream: BytesStream) -> AsyncIterator[bytes]:
        while True:
            try:
                chunk = await self._call(_next_chunk, stream)
            except _ERRORS as exc:
                raise self._failure("read", key, exc) from exc
            if chunk is None:
                return
            yield chunk

    async def names_under(self, prefix: str, *, after: str, before: str) -> list[str]:
        check_key(prefix.rstrip("/"))
        try:
            return await self._call(self._names_under, prefix, after, before)
        except _ERRORS as exc:
            raise self._failure("list", prefix, exc) from exc

    def _names_under(self, prefix: str, after: str, before: str) -> list[str]:
        """Listed from ``after`` on (S3's ``StartAfter``), so only the keys past it are read."""
        names: set[str] = set()
        listing = obstore.list(self._store, prefix.rstrip("/"), offset=prefix + after)
        for batch in listing:
            for meta in batch:
                name = meta["path"].removeprefix(prefix).split("/", 1)[0]
                if after < name < before:
                    names.add(name)
        return sorted(names)

    async def delete_prefix(self, prefix: str) -> int:
        base = prefix.rstrip("/")
        check_key(base)
        try:
            return await self._call(self._delete_prefix, base, prefix.endswith("/"))
        except _ERRORS as exc:
            raise self._failure("delete", prefix, exc) from exc

    def _delete_prefix(self, base: str, only_below: bool) -> int:
        """object_store lists by whole path segments: ``base`` finds ``base/…`` and never
        ``base`` itself or ``base2/…``; a prefix that names one blob is looked up alone."""
        paths = [meta["path"] for batch in obstore.list(self._store, base) for meta in batch]
        if not only_below:
            try:
                obstore.head(self._store, base)
                paths.append(base)
            except FileNotFoundError:
                pass
        if paths:
            obstore.delete(self._store, paths)
        return len(paths)

    def presigned_url(self, key: str, expires_in: timedelta) -> str:
        """Signed here, without a request (SigV4 query signing; at most 7 days)."""
        check_key(key)
        seconds = max(1, math.ceil(expires_in.total_seconds()))
        return obstore.sign(self._store, "GET", key, timedelta(seconds=seconds))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
