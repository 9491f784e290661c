"""Uploads: input images sent with the request instead of fetched from a URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from qwenedit.api.deps import AccountDep, UploadsDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import FileObject

router = APIRouter(prefix="/v1", tags=["files"])


@router.post(
    "/files",
    responses=errors(400, 401, 413),
    summary="Upload an input image (usable in image_urls for 72 h)",
)
async def upload_file(
    file: Annotated[UploadFile, File(description="A JPEG, PNG, BMP, WEBP or TIFF image")],
    account: AccountDep,
    uploads: UploadsDep,
) -> FileObject:
    data = await file.read(uploads.max_bytes + 1)
    return await uploads.upload(account, data)


@router.get("/files/{file_id}", responses=errors(401, 404), summary="An upload's metadata")
async def get_file(file_id: str, account: AccountDep, uploads: UploadsDep) -> FileObject:
    return uploads.view(await uploads.owned(account, file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses=errors(401, 404),
    summary="An upload's bytes (owner only)",
)
async def get_file_content(file_id: str, account: AccountDep, uploads: UploadsDep) -> Response:
    data, media_type = await uploads.download(account, file_id)
    return Response(data, media_type=media_type)
