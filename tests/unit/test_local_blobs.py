"""What only the directory store can get wrong (the shared contract is in
tests/integration/test_blobs_contract.py): temp files left behind, writes outside the root."""

from __future__ import annotations

from pathlib import Path

import pytest

from qwenedit.blobs.local import LocalBlobStore
from qwenedit.errors import ConfigError


async def test_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("t1/1/0.png", b"a")
    await store.put("t1/1/0.png", b"b")
    assert [p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*") if p.is_file()] == [
        "t1/1/0.png"
    ]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs"])
async def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put(key, b"x")
    assert list(tmp_path.rglob("*")) == []


async def test_an_unwritable_root_fails_the_start_check(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"")
    store = LocalBlobStore(tmp_path / "file" / "blobs")
    with pytest.raises(ConfigError, match="blob storage file://"):
        await store.check()
