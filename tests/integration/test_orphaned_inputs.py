"""Inputs stored for a create that never committed (cancelled, or its process died) are
deleted by the retention sweep once their task id is an hour old and no task has it; a task's
own inputs, and a create's still in progress, are never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from qwenedit.domain.task import new_task_id
from qwenedit.media.sources import inputs_prefix
from qwenedit.worker.reaper import ORPHAN_AGE_SECONDS, discard_orphaned_inputs
from support.app import make_settings, running_app
from support.images import data_uri, noise_png_bytes


async def stored(blobs_root: Path, task_id: str) -> bool:
    return (blobs_root / inputs_prefix(task_id)).is_dir()


async def test_inputs_without_a_task_are_deleted_an_hour_on(db_url: str, tmp_path: Path) -> None:
    settings = make_settings(db_url, tmp_path)
    async with running_app(settings, housekeeping=False) as app:
        key = await app.new_key("acme")
        edit = {"prompt": "make it blue", "image_urls": [data_uri(noise_png_bytes())]}
        task = (await app.create(key, edit)).json()
        created = datetime.now(UTC)
        blobs = app.runtime.blobs
        orphan = new_task_id(int(created.timestamp()))
        recent = new_task_id(int(created.timestamp()) + ORPHAN_AGE_SECONDS)
        for task_id in (orphan, recent):
            await blobs.put(f"{inputs_prefix(task_id)}0", b"png")
        root = settings.blob_location
        assert isinstance(root, Path)
        assert await stored(root, task["id"])  # the create kept its large input as a blob

        await discard_orphaned_inputs(app.runtime, created)  # an hour has not passed
        assert await stored(root, orphan)

        later = created + timedelta(seconds=ORPHAN_AGE_SECONDS + 60)
        await discard_orphaned_inputs(app.runtime, later)
        assert not await stored(root, orphan)
        assert await stored(root, task["id"])
        assert await stored(root, recent)  # not an hour old at ``later``
