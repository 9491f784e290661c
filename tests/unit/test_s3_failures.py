"""Which failures of the S3 store are an outage to wait out (``StorageUnavailable``) and which
are a refusal that waiting does not mend (a plain ``StorageError``). The store's own tests
against SeaweedFS cover a refused connection and a missing bucket; these cover the answers a
test server cannot easily be made to give."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from obstore.exceptions import GenericError, PermissionDeniedError
from pydantic import SecretStr

from qwenedit.blobs.s3 import S3BlobStore, S3Target
from qwenedit.errors import StorageUnavailable


@pytest.fixture
def store() -> Iterator[S3BlobStore]:
    target = S3Target(
        bucket="b",
        prefix="",
        endpoint="http://127.0.0.1:9",
        region="us-east-1",
        access_key_id="id",
        secret_access_key=SecretStr("secret"),
        timeout=3,
    )
    made = S3BlobStore(target)
    yield made
    made.close()


@pytest.mark.parametrize(
    ("error", "passing"),
    [
        (GenericError("Error performing put: error sending request"), True),
        (GenericError("Error performing put: Server returned status code: 503"), True),
        (GenericError("Error performing put: Server returned status code: 429"), True),
        (GenericError("Error performing put: Server returned status code: 400"), False),
        (PermissionDeniedError("Access Denied"), False),
        (FileNotFoundError("NoSuchBucket"), False),
        (ConnectionResetError(104, "reset"), True),
    ],
)
def test_an_outage_is_what_waiting_can_mend(
    store: S3BlobStore, error: BaseException, passing: bool
) -> None:
    assert isinstance(store._failure("write", "k", error), StorageUnavailable) is passing
