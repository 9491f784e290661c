"""One BlobStore contract, run against every store: the local directory and S3 (a real SeaweedFS).
A store that passes it can hold results, uploads and inputs."""

from __future__ import annotations

import os
import secrets
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest

from qwenedit.blobs.base import CHUNK_BYTES, BlobStore
from qwenedit.blobs.factory import open_blob_store
from qwenedit.blobs.local import LocalBlobStore
from qwenedit.config import Settings
from support.seaweed import SeaweedS3

MakeStore = Callable[[str], BlobStore]
"""A store of the kind under test, rooted at the given name (a directory or a key prefix)."""


@pytest.fixture(params=["local", "s3"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeStore]:
    made: list[BlobStore] = []
    run = secrets.token_hex(4)

    def make(name: str) -> BlobStore:
        if request.param == "local":
            store: BlobStore = LocalBlobStore(tmp_path / name)
        else:
            s3: SeaweedS3 = request.getfixturevalue("seaweed")
            store = open_blob_store(Settings(data_dir=tmp_path, **s3.settings(f"{run}/{name}")))
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


@pytest.fixture
def blobs(make_store: MakeStore) -> BlobStore:
    return make_store("root")


async def collect(chunks: AsyncIterator[bytes]) -> list[bytes]:
    return [chunk async for chunk in chunks]


async def test_a_fresh_store_passes_its_start_check(blobs: BlobStore) -> None:
    await blobs.check()


async def test_put_then_get_and_overwrite(blobs: BlobStore) -> None:
    await blobs.put("t1/1/0.png", b"first")
    assert await blobs.get("t1/1/0.png") == b"first"
    await blobs.put("t1/1/0.png", b"second")
    assert await blobs.get("t1/1/0.png") == b"second"


async def test_a_missing_key_reads_as_none(blobs: BlobStore) -> None:
    assert await blobs.get("nothing/here.png") is None
    assert await blobs.open("nothing/here.png") is None
    await blobs.put("t1/1/0.png", b"x")
    assert await blobs.get("t1/1") is None
    assert await blobs.open("t1") is None


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "a/b c", ""])
async def test_invalid_keys_are_refused(blobs: BlobStore, key: str) -> None:
    with pytest.raises(ValueError, match="invalid blob key"):
        await blobs.put(key, b"x")
    assert await blobs.get(key) is None
    assert await blobs.open(key) is None


async def test_delete_prefix_counts_and_keeps_the_rest(blobs: BlobStore) -> None:
    for key in ("t1/1/0.png", "t1/1/1.png", "t1/2/0.png", "t10/1/0.png", "t2/1/0.png"):
        await blobs.put(key, key.encode())
    assert await blobs.delete_prefix("t1/1/") == 2
    assert await blobs.get("t1/2/0.png") == b"t1/2/0.png"
    assert await blobs.delete_prefix("t1/") == 1
    assert await blobs.get("t1/1/0.png") is None
    assert await blobs.get("t10/1/0.png") == b"t10/1/0.png"
    assert await blobs.get("t2/1/0.png") == b"t2/1/0.png"
    assert await blobs.delete_prefix("missing/") == 0


async def test_names_under_a_prefix_are_its_next_segments_in_a_range(blobs: BlobStore) -> None:
    for key in ("inputs/a/0", "inputs/b/0", "inputs/b/1", "inputs/c/0", "inputs2/b/0", "b/0"):
        await blobs.put(key, b"x")
    assert await blobs.names_under("inputs/", after="", before="z") == ["a", "b", "c"]
    assert await blobs.names_under("inputs/", after="a", before="c") == ["b"]
    assert await blobs.names_under("inputs/", after="c", before="z") == []
    assert await blobs.names_under("missing/", after="", before="z") == []


async def test_delete_prefix_naming_one_blob_deletes_just_that_one(blobs: BlobStore) -> None:
    await blobs.put("files/abc", b"a")
    await blobs.put("files/abcd", b"b")
    assert await blobs.delete_prefix("files/abc") == 1
    assert await blobs.get("files/abc") is None
    assert await blobs.get("files/abcd") == b"b"
    assert await blobs.delete_prefix("files/abc") == 0


async def test_open_streams_in_chunks(blobs: BlobStore) -> None:
    data = os.urandom(2 * CHUNK_BYTES + 1234)
    await blobs.put("inputs/task-1/0", data)
    stream = await blobs.open("inputs/task-1/0")
    assert stream is not None
    assert stream.size == len(data)
    chunks = await collect(stream.chunks)
    assert len(chunks) > 1
    assert b"".join(chunks) == data


async def test_a_stream_that_is_never_read_holds_nothing(blobs: BlobStore) -> None:
    await blobs.put("a/b", b"data")
    assert await blobs.open("a/b") is not None
    assert await blobs.delete_prefix("a/") == 1


async def test_stores_under_other_roots_do_not_see_each_other(make_store: MakeStore) -> None:
    first, second = make_store("one"), make_store("two")
    await first.put("t1/1/0.png", b"first")
    await second.put("t1/1/0.png", b"second")
    assert await first.get("t1/1/0.png") == b"first"
    assert await second.delete_prefix("t1/") == 1
    assert await first.get("t1/1/0.png") == b"first"
    assert await second.get("t1/1/0.png") is None
