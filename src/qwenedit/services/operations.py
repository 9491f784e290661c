"""Operations: readiness of this node and the metrics it exposes."""

from __future__ import annotations

import asyncio
import hmac
import logging
from dataclasses import dataclass

from pydantic import SecretStr

from qwenedit.errors import AuthenticationFailed, PermissionDenied
from qwenedit.metrics import Labels, Metrics
from qwenedit.resilience import describe, is_transient
from qwenedit.store.database import Database
from qwenedit.store.task_stats import TaskStats
from qwenedit.store.workers import WorkerRepo

log = logging.getLogger(__name__)

READINESS_TIMEOUT = 2.0
"""Seconds the database gets to answer a readiness probe: a hung database is not ready."""


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
        """The database answers within ``READINESS_TIMEOUT``, and this process has an engine or
        a worker beat recently. An outage is not logged here: the background loops log it."""
        engine_loaded = self._engines.loaded > 0
        try:
            async with asyncio.timeout(READINESS_TIMEOUT):
                await self._db.ping()
                alive = engine_loaded or await self._workers.alive_count(self._alive_seconds) > 0
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.debug("readiness: the database does not answer: %s", describe(exc))
            return Readiness(database=False, workers=engine_loaded)
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
