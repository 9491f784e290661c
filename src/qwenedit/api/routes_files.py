"""Uploads: input images sent with the request instead of fetched from a URL."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Response, UploadFile

from qwenedit.api.deps import AccountDep, RuntimeDep
from qwenedit.api.openapi import errors
from qwenedit.domain.wire import FileObject
from qwenedit.errors import NotFound

router = APIRouter(prefix="/v1", tags=["files"])


@router.post(
    "/files",
    responses=errors(400, 401, 413),
    summary="Upload an input image (usable in image_urls for 72 h)",
)
async def upload_file(
    file: Annotated[UploadFile, File(description="A JPEG, PNG, BMP, WEBP or TIFF image")],
    account: AccountDep,
    runtime: RuntimeDep,
) -> FileObject:
    data = await file.read(runtime.settings.max_image_bytes + 1)
    return await runtime.uploads.upload(account, data)


@router.get("/files/{file_id}", responses=errors(401, 404), summary="An upload's metadata")
async def get_file(file_id: str, account: AccountDep, runtime: RuntimeDep) -> FileObject:
    return runtime.uploads.view(await runtime.uploads.owned(account, file_id))


@router.get(
    "/files/{file_id}/content",
    response_class=Response,
    responses=errors(401, 404),
    summary="An upload's bytes (owner only)",
)
async def get_file_content(file_id: str, account: AccountDep, runtime: RuntimeDep) -> Response:
    stored = await runtime.uploads.owned(account, file_id)
    data = await runtime.blobs.get(stored.blob_key)
    if data is None:
        raise NotFound(f"No such file: {file_id}")
    return Response(data, media_type=stored.mime_type)
