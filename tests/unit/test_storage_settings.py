"""Storage settings: the S3 endpoint and credentials keep the AWS SDK's names, storage URLs are
checked when the settings are read, and presigned links need a bucket."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from qwenedit.blobs.factory import open_blob_store, result_links
from qwenedit.blobs.links import PresignedLinks, SignedLinks
from qwenedit.blobs.local import LocalBlobStore
from qwenedit.config import Settings
from qwenedit.setting_groups import S3Location


def test_aws_names_are_read_without_the_prefix(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("QWENEDIT_STORAGE_URL", "s3://results-bucket/qwenedit/prod")
    monkeypatch.setenv("QWENEDIT_RESULT_LINKS", "presigned")
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:8333/")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "key-id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "key-secret")
    monkeypatch.setenv("AWS_REGION", "eu-central-1")
    settings = Settings(data_dir=tmp_path)
    assert settings.blob_location == S3Location(bucket="results-bucket", prefix="qwenedit/prod")
    assert settings.aws_endpoint_url == "http://127.0.0.1:8333"
    assert settings.aws_access_key_id == "key-id"
    assert settings.aws_secret_access_key is not None
    assert settings.aws_secret_access_key.get_secret_value() == "key-secret"
    assert "key-secret" not in repr(settings)
    assert settings.aws_region == "eu-central-1"
    assert settings.result_links == "presigned"


def test_the_default_store_is_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.blob_location == tmp_path / "blobs"
    store = open_blob_store(settings)
    assert isinstance(store, LocalBlobStore)
    assert store.location == (tmp_path / "blobs").as_uri()
    links = result_links(settings, store, public_url="http://api.example/", secret=b"s")
    assert isinstance(links, SignedLinks)


def test_a_file_url_names_the_directory(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, storage_url=(tmp_path / "my blobs").as_uri())
    assert settings.blob_location == tmp_path / "my blobs"


def test_presigned_links_come_from_the_store(tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        storage_url="s3://bucket-name",
        result_links="presigned",
        aws_access_key_id="id",
        aws_secret_access_key="secret",
    )
    store = open_blob_store(settings)
    try:
        assert store.location == "s3://bucket-name at AWS S3 (us-east-1)"
        links = result_links(settings, store, public_url="http://api.example", secret=b"s")
        assert isinstance(links, PresignedLinks)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"storage_url": "s3://B"}, "is not a bucket name"),
        ({"storage_url": "s3://bucket/a/../b"}, "invalid path segment"),
        ({"storage_url": "file://relative/path"}, "absolute path"),
        ({"storage_url": "gs://bucket"}, "must be file:///abs/path or s3://bucket"),
        ({"aws_endpoint_url": "127.0.0.1:8333"}, "AWS_ENDPOINT_URL must be an http"),
        ({"result_links": "presigned"}, "RESULT_LINKS=presigned needs QWENEDIT_STORAGE_URL=s3"),
        (
            {"storage_url": "s3://bucket", "result_links": "presigned", "result_ttl": 8 * 86400},
            "presigned URLs last at most 7 days",
        ),
    ],
)
def test_storage_settings_that_cannot_work_are_refused(
    tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        Settings(data_dir=tmp_path, **values)
