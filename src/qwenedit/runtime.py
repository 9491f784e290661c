"""The wired-up server: one object holding the database, repositories, blob store and services
that the API, the workers and the reaper share."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.local import LocalBlobStore
from qwenedit.config import Settings
from qwenedit.media.guarded_client import GuardedClient
from qwenedit.media.resolver import Resolver
from qwenedit.metrics import Metrics
from qwenedit.services.callbacks import CallbackService
from qwenedit.services.edits import EditService
from qwenedit.services.presenter import TaskPresenter
from qwenedit.services.uploads import UploadService
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.files import FileRepo
from qwenedit.store.migrate import ensure_schema
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.tasks import TaskRepo
from qwenedit.store.workers import WorkerRepo

log = logging.getLogger(__name__)


@dataclass
class Runtime:
    settings: Settings
    db: Database
    accounts: AccountRepo
    tasks: TaskRepo
    workers: WorkerRepo
    blobs: BlobStore
    presenter: TaskPresenter
    edits: EditService
    uploads: UploadService
    outbox: OutboxRepo
    callbacks: CallbackService
    client: GuardedClient
    metrics: Metrics
    secret: bytes

    async def close(self) -> None:
        await self.client.aclose()
        await self.db.close()


def default_public_url(settings: Settings, host: str, port: int) -> str:
    if settings.public_url:
        return settings.public_url
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}"


async def open_runtime(
    settings: Settings, *, public_url: str, resolver: Resolver | None = None
) -> Runtime:
    """Connect, migrate (SQLite) or check the schema (PostgreSQL), and wire the services."""
    secret = settings.load_secret_key()
    url = settings.resolved_database_url
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
    except BaseException:
        await db.close()
        raise
    presenter = TaskPresenter(public_url=public_url, secret=secret, result_ttl=settings.result_ttl)
    tasks = TaskRepo(db, presenter.final_view)
    workers = WorkerRepo(db)
    blobs = LocalBlobStore(settings.data_dir / "blobs")
    client = GuardedClient(settings, resolver=resolver)
    uploads = UploadService(
        settings=settings, files=FileRepo(db), blobs=blobs, public_url=public_url
    )
    edits = EditService(
        settings=settings,
        tasks=tasks,
        workers=workers,
        presenter=presenter,
        uploads=uploads,
        url_checker=client,
    )
    outbox = OutboxRepo(db)
    return Runtime(
        settings=settings,
        db=db,
        accounts=AccountRepo(db),
        tasks=tasks,
        workers=workers,
        blobs=blobs,
        presenter=presenter,
        edits=edits,
        uploads=uploads,
        outbox=outbox,
        callbacks=CallbackService(settings=settings, tasks=tasks, outbox=outbox),
        client=client,
        metrics=Metrics(),
        secret=secret,
    )
