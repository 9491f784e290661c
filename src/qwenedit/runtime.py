"""The wired-up services of one process: the database, repositories, blob store and the use
cases that the API, the workers and the housekeeping loops share."""

from __future__ import annotations

from dataclasses import dataclass

from qwenedit.blobs.base import BlobStore
from qwenedit.blobs.factory import open_blob_store, result_links
from qwenedit.config import Settings
from qwenedit.media.guarded_client import GuardedClient
from qwenedit.media.resolver import Resolver
from qwenedit.metrics import Metrics
from qwenedit.services.callbacks import CallbackService
from qwenedit.services.callers import CallerService
from qwenedit.services.edits import EditService
from qwenedit.services.events import TaskEvents
from qwenedit.services.inputs import TaskInputs
from qwenedit.services.openai_edits import OpenAIEdits
from qwenedit.services.operations import LocalEngines, OperationsService
from qwenedit.services.presenter import TaskPresenter
from qwenedit.services.prompt_check import PromptChecker
from qwenedit.services.results import ResultService
from qwenedit.services.uploads import UploadService
from qwenedit.store.accounts import AccountRepo
from qwenedit.store.database import Database
from qwenedit.store.files import FileRepo
from qwenedit.store.migrate import ensure_schema
from qwenedit.store.outbox import OutboxRepo
from qwenedit.store.queue import QueueRepo
from qwenedit.store.retention import RetentionRepo
from qwenedit.store.task_stats import TaskStats
from qwenedit.store.tasks import TaskRepo
from qwenedit.store.workers import WorkerRepo


@dataclass
class Runtime:
    settings: Settings
    db: Database
    accounts: AccountRepo
    tasks: TaskRepo
    queue: QueueRepo
    stats: TaskStats
    retention: RetentionRepo
    workers: WorkerRepo
    outbox: OutboxRepo
    blobs: BlobStore
    client: GuardedClient
    metrics: Metrics
    engines: LocalEngines
    presenter: TaskPresenter
    prompts: PromptChecker
    """Worker loops hand it their engine, whose tokenizer then judges prompts at create."""
    edits: EditService
    events: TaskEvents
    openai_edits: OpenAIEdits
    inputs: TaskInputs
    uploads: UploadService
    callbacks: CallbackService
    callers: CallerService
    results: ResultService
    operations: OperationsService

    async def close(self) -> None:
        await self.client.aclose()
        await self.db.close()
        self.blobs.close()


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
    blobs = open_blob_store(settings)
    url = settings.resolved_database_url
    db = Database.connect(url)
    try:
        await ensure_schema(db, url)
    except BaseException:
        await db.close()
        blobs.close()
        raise
    presenter = TaskPresenter(
        links=result_links(settings, blobs, public_url=public_url, secret=secret),
        result_ttl=settings.result_ttl,
    )
    accounts = AccountRepo(db)
    tasks = TaskRepo(db)
    stats = TaskStats(db)
    workers = WorkerRepo(db)
    outbox = OutboxRepo(db)
    client = GuardedClient(settings, resolver=resolver)
    metrics = Metrics()
    engines = LocalEngines()
    prompts = PromptChecker()
    uploads = UploadService(
        limits=settings,
        retention=settings,
        files=FileRepo(db),
        blobs=blobs,
        public_url=public_url,
    )
    inputs = TaskInputs(
        limits=settings, outbound=settings, uploads=uploads, blobs=blobs, fetcher=client
    )
    edits = EditService(
        outbound=settings,
        billing=settings,
        limits=settings,
        retention=settings,
        queue=settings,
        steps=settings.steps,
        tasks=tasks,
        stats=stats,
        workers=workers,
        presenter=presenter,
        inputs=inputs,
        url_checker=client,
        prompts=prompts,
    )
    operations = OperationsService(
        db=db,
        stats=stats,
        workers=workers,
        metrics=metrics,
        engines=engines,
        worker_alive_seconds=3 * settings.heartbeat_seconds,
        metrics_token=settings.metrics_token,
    )
    return Runtime(
        settings=settings,
        db=db,
        accounts=accounts,
        callers=CallerService(accounts),
        tasks=tasks,
        queue=QueueRepo(db),
        stats=stats,
        retention=RetentionRepo(db),
        workers=workers,
        outbox=outbox,
        blobs=blobs,
        client=client,
        metrics=metrics,
        engines=engines,
        presenter=presenter,
        prompts=prompts,
        edits=edits,
        events=TaskEvents(streams=settings, edits=edits),
        openai_edits=OpenAIEdits(
            streams=settings,
            retention=settings,
            edits=edits,
            uploads=uploads,
            tasks=tasks,
            blobs=blobs,
        ),
        inputs=inputs,
        uploads=uploads,
        callbacks=CallbackService(retention=settings, tasks=tasks, outbox=outbox),
        results=ResultService(blobs=blobs, secret=secret),
        operations=operations,
    )
