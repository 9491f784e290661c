"""Inputs stored for a create that never committed (cancelled, or its process died) are
deleted by the retention sweep once their task id is an hour old and no task has it; a task's
own inputs, and a create's still in progress, are never touched."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from qwenedit.domain.task import new_task_id
from qwenedit.errors import StorageUnavailable
from qwenedit.media.sources import inputs_prefix
from qwenedit.worker.reaper import ORPHAN_AGE_SECONDS, discard_orphaned_inputs, sweep_once
from support.app import make_settings, running_app
from support.images import data_uri, noise_png_bytes


def stored(blobs_root: Path, task_id: str) -> bool:
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
        # An id of nine digits (1975), which sorts as text among the ids the sweep looks at.
        short = new_task_id(int(str(int(created.timestamp()) - 1800)[:9]))
        for task_id in (orphan, recent, short):
            await blobs.put(f"{inputs_prefix(task_id)}0", b"png")
        root = settings.blob_location
        assert isinstance(root, Path)
        assert stored(root, task["id"])  # the create kept its large input as a blob

        await discard_orphaned_inputs(app.runtime, created)  # an hour has not passed
        assert stored(root, orphan)

        later = created + timedelta(seconds=ORPHAN_AGE_SECONDS + 60)
        await discard_orphaned_inputs(app.runtime, later)
        assert not stored(root, orphan)
        assert stored(root, task["id"])
        assert stored(root, recent)  # not an hour old at ``later``
        assert stored(root, short)  # outside the window, by its number if not by its text


async def test_an_orphan_pass_that_fails_is_retried_in_an_outage_and_logged_otherwise(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    settings = make_settings(db_url, tmp_path)
    async with running_app(settings, housekeeping=False) as app:
        failure: list[Exception] = []

        async def failing(*_args: object) -> list[str]:
            raise failure[0]

        monkeypatch.setattr(app.runtime.inputs, "stored_for", failing)
        failure.append(StorageUnavailable("list inputs/: cannot connect"))
        with pytest.raises(StorageUnavailable):  # the sweep's Retry waits the outage out
            await sweep_once(app.runtime)
        failure[0] = PermissionError(13, "Permission denied")
        await sweep_once(app.runtime)  # cleanup that fails is no reason to stop the reaper
    assert "orphaned inputs were not swept: PermissionError" in caplog.text
