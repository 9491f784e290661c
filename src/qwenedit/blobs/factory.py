"""The blob store and the result links that the settings ask for."""

from __future__ import annotations

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.links import PresignedLinks, ResultLinks, SignedLinks
from qwenedit.blobs.local import LocalBlobStore
from qwenedit.blobs.s3 import DEFAULT_REGION, S3BlobStore, S3Target
from qwenedit.config import Settings
from qwenedit.errors import ConfigError
from qwenedit.setting_groups import S3Location, StorageSettings


def open_blob_store(settings: Settings) -> BlobStore:
    """The configured store, not contacted yet (``check`` does that); ``ConfigError`` when the
    settings cannot make one."""
    location = settings.blob_location
    if not isinstance(location, S3Location):
        return LocalBlobStore(location)
    if settings.aws_access_key_id is None or settings.aws_secret_access_key is None:
        raise ConfigError(
            f"QWENEDIT_STORAGE_URL={settings.storage_url} needs AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY"
        )
    return S3BlobStore(
        S3Target(
            bucket=location.bucket,
            prefix=location.prefix,
            endpoint=settings.aws_endpoint_url,
            region=settings.aws_region or DEFAULT_REGION,
            access_key_id=settings.aws_access_key_id,
            secret_access_key=settings.aws_secret_access_key,
            timeout=settings.storage_timeout,
        )
    )


def result_links(
    settings: StorageSettings, blobs: BlobStore, *, public_url: str, secret: bytes
) -> ResultLinks:
    if settings.result_links == "presigned":
        return PresignedLinks(blobs)
    return SignedLinks(public_url, secret)
