"""Uploads: input images sent with the request instead of fetched from a URL."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response

from qwenedit.api.deps import AccountDep, UploadsDep
from qwenedit.api.openapi import UPLOAD_FIELD, UPLOAD_REQUEST_OPENAPI, errors
from qwenedit.api.upload_body import read_upload
from qwenedit.domain.wire import FileObject

router = APIRouter(prefix="/v1", tags=["files"])


@router.post(
    "/files",
    responses=errors(400, 401, 413),
    openapi_extra=UPLOAD_REQUEST_OPENAPI,
    summary="Upload an input image (usable in image_urls for 72 h)",
)
async def upload_file(request: Request, account: AccountDep, uploads: UploadsDep) -> FileObject:
    """The key is checked before a byte of the body is read."""
    data = await read_upload(request, field=UPLOAD_FIELD, max_bytes=uploads.max_bytes)
    return await uploads.upload(account, data)


@router.get("/files/{file_id}", responses=errors(401, 404), summary="An upload's metadata")
async def get_file(file_id: str, account: AccountDep, uploads: UploadsDep) -> FileObject:
    return uploads.view(await uploads.owned(account, file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses={
        200: {
            "description": "The bytes as uploaded",
            "content": {f"image/{kind}": {} for kind in ("png", "jpeg", "bmp", "webp", "tiff")},
        },
        **errors(401, 404),
    },
    summary="An upload's bytes (owner only)",
)
async def get_file_content(file_id: str, account: AccountDep, uploads: UploadsDep) -> Response:
    data, media_type = await uploads.download(account, file_id)
    return Response(data, media_type=media_type)
