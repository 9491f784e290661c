"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, PlainTextResponse

from qwenedit.api.deps import OperationsDep
from qwenedit.api.openapi import errors

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


@router.get(
    "/metrics",
    response_class=PlainTextResponse,
    responses=errors(401, 403),
    summary="Prometheus metrics",
)
async def metrics(request: Request, operations: OperationsDep) -> PlainTextResponse:
    """Needs ``QWENEDIT_METRICS_TOKEN`` as a bearer token; without one set, nobody gets them."""
    operations.check_metrics_access(request.headers.get("authorization", ""))
    return PlainTextResponse(
        await operations.metrics_text(), media_type="text/plain; version=0.0.4"
    )
