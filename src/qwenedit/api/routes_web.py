"""The browser playground: static files from the package, served at ``/`` and ``/web/``."""

from __future__ import annotations

from importlib import resources

from fastapi import APIRouter
from fastapi.responses import Response

from qwenedit.errors import NotFound

router = APIRouter(include_in_schema=False)

FILES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
}
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data: https: http:; "
    "connect-src 'self'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def _file(name: str) -> Response:
    if name not in FILES:
        raise NotFound("Not found")
    content = resources.files("qwenedit.web").joinpath(name).read_bytes()
    return Response(content, media_type=FILES[name], headers=SECURITY_HEADERS)


@router.get("/")
async def playground() -> Response:
    return _file("index.html")


@router.get("/web/{name}")
async def static_file(name: str) -> Response:
    return _file(name)
