"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from qwenedit.api.deps import OperationsDep

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="Readiness: database reachable and a worker or engine alive")
async def readyz(operations: OperationsDep) -> JSONResponse:
    readiness = await operations.readiness()
    return JSONResponse(
        {
            "status": "ready" if readiness.ready else "not_ready",
            "checks": {"database": readiness.database, "workers": readiness.workers},
        },
        status_code=200 if readiness.ready else 503,
    )


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
async def metrics(request: Request, operations: OperationsDep) -> PlainTextResponse:
    """Needs ``QWENEDIT_METRICS_TOKEN`` as a bearer token; without one set, loopback only."""
    client_host = request.client.host if request.client is not None else None
    operations.check_metrics_access(client_host, request.headers.get("authorization", ""))
    return PlainTextResponse(
        await operations.metrics_text(), media_type="text/plain; version=0.0.4"
    )
