"""Result images behind signed, expiring links (no bearer key, like a CDN link)."""

from __future__ import annotations

import time

from fastapi import APIRouter, Response

from qwenedit.api.deps import RuntimeDep
from qwenedit.api.openapi import errors
from qwenedit.blobs.signing import verify
from qwenedit.errors import NotFound, PermissionDenied

router = APIRouter(prefix="/v1", tags=["results"])


@router.get(
    "/results/{key:path}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **errors(403, 404)},
    summary="Download a result image",
)
async def get_result(key: str, expires: int, signature: str, runtime: RuntimeDep) -> Response:
    if not verify(key, expires, signature, runtime.secret, int(time.time())):
        raise PermissionDenied("The link is invalid or has expired")
    data = await runtime.blobs.get(key)
    if data is None:
        raise NotFound("The result no longer exists")
    return Response(
        data,
        media_type="image/png",
        headers={"Cache-Control": f"private, max-age={max(0, expires - int(time.time()))}"},
    )
