"""Operations: liveness, readiness and metrics."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse

from qwenedit.api.deps import OperationsDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import Readiness, ReadinessChecks

router = APIRouter(tags=["operations"])


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    response_model=Readiness,
    responses={503: {"model": Readiness, "description": "Not ready"}},
    summary="Readiness: database reachable and a worker or engine alive",
)
async def readyz(operations: OperationsDep) -> JSONResponse:
    readiness = await operations.readiness()
    report = Readiness(
        status="ready" if readiness.ready else "not_ready",
        checks=ReadinessChecks(database=readiness.database, workers=readiness.workers),
    )
    return JSONResponse(report.model_dump(), status_code=200 if readiness.ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {
            "description": "Prometheus text format",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **errors(401, 403),
    },
    summary="Prometheus metrics",
)
async def metrics(request: Request, operations: OperationsDep) -> PlainTextResponse:
    """Needs ``QWENEDIT_METRICS_TOKEN`` as a bearer token; without one set, nobody gets them."""
    operations.check_metrics_access(request.headers.get("authorization", ""))
    return PlainTextResponse(
        await operations.metrics_text(), media_type="text/plain; version=0.0.4"
    )
