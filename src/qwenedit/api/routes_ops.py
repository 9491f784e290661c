"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from qwenedit.api.deps import RuntimeDep
from qwenedit.errors import AuthenticationFailed, PermissionDenied
from qwenedit.metrics import Labels

router = APIRouter(tags=["operations"])
LOOPBACK_CLIENTS = frozenset({"127.0.0.1", "::1", "localhost"})


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and a worker or engine alive")
async def readyz(request: Request, runtime: RuntimeDep) -> JSONResponse:
    checks: dict[str, bool] = {}
    try:
        await runtime.db.ping()
        checks["database"] = True
    except Exception:
        checks["database"] = False
    engines_loaded: int = request.app.state.background.engines_loaded
    alive = 0
    if checks["database"]:
        alive = await runtime.workers.alive_count(3 * runtime.settings.heartbeat_seconds)
    checks["workers"] = engines_loaded > 0 or alive > 0
    ready = all(checks.values())
    return JSONResponse(
        {"status": "ready" if ready else "not_ready", "checks": checks},
        status_code=200 if ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(request: Request, runtime: RuntimeDep) -> PlainTextResponse:
    """Needs ``QWENEDIT_METRICS_TOKEN`` as a bearer token; without one set, loopback only."""
    token = runtime.settings.metrics_token
    if token is None:
        if request.client is None or request.client.host not in LOOPBACK_CLIENTS:
            raise PermissionDenied("Metrics are served to loopback unless a token is configured")
    else:
        given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
            raise AuthenticationFailed("A valid metrics token is required")
    counts = await runtime.tasks.counts_by_status()
    alive = await runtime.workers.alive_count(3 * runtime.settings.heartbeat_seconds)
    gauges: dict[str, dict[Labels, float]] = {
        "qwenedit_tasks": {(("status", status),): float(n) for status, n in counts.items()},
        "qwenedit_workers_alive": {(): float(alive)},
    }
    return PlainTextResponse(runtime.metrics.render(gauges), media_type="text/plain; version=0.0.4")
