"""What the two HTTP faces (partner API, operators' dashboard) share: routers assembled flat on
an app, and file downloads."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI
from fastapi.responses import Response, StreamingResponse


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """The routers' routes onto the app itself, as they are (a route's path, tags and
    dependencies are set where it is declared). FastAPI's include_router would keep each router
    as one lazy entry of `app.routes`; flat, the app lists every route it serves (the security
    tests walk them)."""
    for router in routers:
        app.router.routes.extend(router.routes)


def download(
    content: bytes | Iterator[bytes] | Iterator[str], media_type: str, filename: str
) -> Response:
    """An attachment: bytes at once, or an iterator streamed."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, bytes):
        return Response(content, media_type=media_type, headers=headers)
    return StreamingResponse(content, media_type=media_type, headers=headers)
