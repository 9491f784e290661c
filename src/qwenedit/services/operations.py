"""Operations: readiness of this node and the metrics it exposes."""

from __future__ import annotations

import hmac
import logging
from dataclasses import dataclass

from pydantic import SecretStr

from qwenedit.errors import AuthenticationFailed, PermissionDenied
from qwenedit.metrics import Labels, Metrics
from qwenedit.store.database import Database
from qwenedit.store.task_stats import TaskStats
from qwenedit.store.workers import WorkerRepo

log = logging.getLogger(__name__)


class LocalEngines:
    """How many engines this process has loaded; the worker loops count themselves in/out."""

    def __init__(self) -> None:
        self.loaded = 0


@dataclass(frozen=True)
class Readiness:
    database: bool
    workers: bool

    @property
    def ready(self) -> bool:
        return self.database and self.workers


class OperationsService:
    def __init__(
        self,
        *,
        db: Database,
        stats: TaskStats,
        workers: WorkerRepo,
        metrics: Metrics,
        engines: LocalEngines,
        worker_alive_seconds: float,
        metrics_token: SecretStr | None,
    ) -> None:
        self._db = db
        self._stats = stats
        self._workers = workers
        self._metrics = metrics
        self._engines = engines
        self._alive_seconds = worker_alive_seconds
        self._token = metrics_token

    async def readiness(self) -> Readiness:
        """The database answers, and this process has an engine or a worker beat recently."""
        try:
            await self._db.ping()
        except Exception as exc:
            log.warning("readiness: the database does not answer: %s", type(exc).__name__)
            return Readiness(database=False, workers=self._engines.loaded > 0)
        alive = self._engines.loaded > 0
        if not alive:
            alive = await self._workers.alive_count(self._alive_seconds) > 0
        return Readiness(database=True, workers=alive)

    def check_metrics_access(self, authorization: str) -> None:
        """The bearer token ``QWENEDIT_METRICS_TOKEN``; without one set, nobody (403). The
        client's address proves nothing: behind a proxy on the same host every client is
        loopback."""
        if self._token is None:
            raise PermissionDenied("Metrics are off: set QWENEDIT_METRICS_TOKEN to serve them")
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer":
            raise AuthenticationFailed("A valid metrics token is required")
        given = given.strip()
        if not hmac.compare_digest(given.encode(), self._token.get_secret_value().encode()):
            raise AuthenticationFailed("A valid metrics token is required")

    async def metrics_text(self) -> str:
        """The process's counters and the cluster's gauges, in Prometheus text format."""
        counts = await self._stats.counts_by_status()
        alive = await self._workers.alive_count(self._alive_seconds)
        gauges: dict[str, dict[Labels, float]] = {
            "qwenedit_tasks": {(("status", status),): float(n) for status, n in counts.items()},
            "qwenedit_workers_alive": {(): float(alive)},
        }
        return self._metrics.render(gauges)
