"""What the two HTTP faces (partner API, operators' dashboard) share: routers assembled flat on
an app, and file downloads."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Match, Route


def add_routes(app: FastAPI, *routers: APIRouter) -> None:
    """The routers' routes onto the app itself, as they are (a route's path, tags and
    dependencies are set where it is declared). FastAPI's include_router would keep each router
    as one lazy entry of `app.routes`; flat, the app lists every route it serves (the security
    tests walk them)."""
    for router in routers:
        app.router.routes.extend(router.routes)


def allowed_methods(request: Request) -> str:
    """A 405's `Allow` (RFC 9110 15.5.6): every method some route at the request's path takes.
    Starlette names only the first route whose path matched, so `DELETE` on a path served by a
    GET route and a POST route listed one of the two."""
    methods: set[str] = set()
    for route in request.app.router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(request.scope)
            if match is not Match.NONE:
                methods |= route.methods
    return ", ".join(sorted(methods))


def download(
    content: bytes | Iterator[bytes] | Iterator[str], media_type: str, filename: str
) -> Response:
    """An attachment: bytes at once, or an iterator streamed."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, bytes):
        return Response(content, media_type=media_type, headers=headers)
    return StreamingResponse(content, media_type=media_type, headers=headers)
