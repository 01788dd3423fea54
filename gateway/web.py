"""What the two HTTP faces (partner API, operators' dashboard) share: routers assembled flat on
an app, and file downloads."""

from __future__ import annotations

from collections.abc import Iterator

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import Response, StreamingResponse
from starlette.routing import Match, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send


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
    if "GET" in methods:
        methods.add("HEAD")  # HeadAsGet
    return ", ".join(sorted(methods))


HSTS = "max-age=31536000"
"""`Strict-Transport-Security` on an answer over TLS (the server's own: `EDI834_TLS_CERT`);
behind nginx, its configuration adds it (deploy/)."""


class ApiHeaders:
    """What every API answer says unless its route said otherwise: `Cache-Control: no-store`
    (a status, a member's enrollment: PHI, kept in no browser's or proxy's cache; an ack and
    the docs say their own), `X-Content-Type-Options: nosniff`, and over TLS
    `Strict-Transport-Security`. A raw ASGI middleware: a few header tuples per answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        tls = scope.get("scheme") == "https"

        async def send_with(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", ()))
                if not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                headers.append((b"x-content-type-options", b"nosniff"))
                if tls:
                    headers.append((b"strict-transport-security", HSTS.encode()))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with)


class HeadAsGet:
    """HEAD wherever GET is answered (RFC 9110 9.3.2: the same header fields, no content).
    FastAPI's routes take only the methods declared (Starlette's own add HEAD to a GET), so a
    HEAD on a JSON read was 405. A HEAD that no route declares goes to the GET route as a GET,
    in a copy of the scope: the server still holds the request as HEAD and sends no body (as
    uvicorn does for every HEAD). Routes that declare their own HEAD (an ack download: a HEAD is
    not a pick-up) keep it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "HEAD" and _served_by_get(scope):
            scope = {**scope, "method": "GET"}
        await self.app(scope, receive, send)


def _served_by_get(scope: Scope) -> bool:
    """No route takes this HEAD as it is, and a GET route serves its path."""
    get = False
    for route in scope["app"].router.routes:
        if isinstance(route, Route) and route.methods:
            match, _ = route.matches(scope)
            if match is Match.FULL:
                return False
            get = get or (match is Match.PARTIAL and "GET" in route.methods)
    return get


def download(
    content: bytes | Iterator[bytes] | Iterator[str], media_type: str, filename: str
) -> Response:
    """An attachment: bytes at once, or an iterator streamed."""
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if isinstance(content, bytes):
        return Response(content, media_type=media_type, headers=headers)
    return StreamingResponse(content, media_type=media_type, headers=headers)
