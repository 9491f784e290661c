"""Result images behind signed, expiring links (no bearer key, like a CDN link)."""

from __future__ import annotations

from fastapi import APIRouter, Response
from fastapi.responses import StreamingResponse

from qwenedit.api.deps import ResultsDep
from qwenedit.api.openapi import errors

router = APIRouter(prefix="/v1", tags=["results"])


@router.get(
    "/results/{key:path}",
    response_class=Response,
    responses={200: {"content": {"image/png": {}}}, **errors(403, 404)},
    summary="Download a result image",
)
async def get_result(
    key: str, expires: int, signature: str, results: ResultsDep
) -> StreamingResponse:
    image = await results.image(key, expires, signature)
    return StreamingResponse(
        image.chunks,
        media_type="image/png",
        headers={
            "Cache-Control": f"private, max-age={image.seconds_left}",
            "Content-Length": str(image.size),
        },
    )
