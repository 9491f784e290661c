from __future__ import annotations

from pathlib import Path

import pytest

from qwenedit.blobs.local import LocalBlobStore


async def test_put_get_delete_prefix(tmp_path: Path) -> None:
    store = LocalBlobStore(tmp_path)
    await store.put("t1/1/0.png", b"a")
    await store.put("t1/1/1.png", b"b")
    await store.put("t2/1/0.png", b"c")
    assert await store.get("t1/1/1.png") == b"b"
    assert await store.delete_prefix("t1/") == 2
    assert await store.get("t1/1/0.png") is None
    assert await store.get("t2/1/0.png") == b"c"
    assert await store.delete_prefix("missing/") == 0
    assert not [p for p in tmp_path.rglob(".tmp-*")]


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "a/b c", ""])
async def test_keys_cannot_leave_the_root(tmp_path: Path, key: str) -> None:
    store = LocalBlobStore(tmp_path / "root")
    with pytest.raises(ValueError, match="invalid blob key"):
        await store.put(key, b"x")
    assert await store.get(key) is None
