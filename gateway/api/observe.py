"""HTTP request metrics for the partner API: count and time every request by its route template
(`/v1/interchanges/{interchange_id}`, never the id itself), method and status. Pure ASGI, so
streamed responses are timed to their end and nothing is buffered."""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.metrics import HTTP_REQUESTS, HTTP_SECONDS, UNAUTHORIZED


class RequestMetrics:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500  # unless a response starts: an exception escaped every handler

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        started = time.perf_counter()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            route = _route_of(scope)
            method = str(scope["method"])
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            HTTP_SECONDS.labels(route=route, method=method).observe(time.perf_counter() - started)
            if status == 401:
                UNAUTHORIZED.inc()


_PATHS: dict[int, dict[object, str]] = {}  # id(app) -> endpoint -> route path


def _route_of(scope: Scope) -> str:
    """The route's template (`/v1/members/{member_key:path}`), never the path as sent (it can
    hold member data). FastAPI's routes put themselves in the scope; the plain ones it adds
    (`/openapi.json`, `/docs`, `/redoc`) only their endpoint, looked up in the app's routes.
    None matched: "unmatched"."""
    found = getattr(scope.get("route"), "path", None)
    if found is not None:
        return str(found)
    app, endpoint = scope.get("app"), scope.get("endpoint")
    if app is None or endpoint is None:
        return "unmatched"
    paths = _PATHS.get(id(app))
    if paths is None:
        paths = {
            r.endpoint: str(r.path)
            for r in getattr(app, "routes", ())
            if getattr(r, "endpoint", None) is not None and getattr(r, "path", None)
        }
        _PATHS[id(app)] = paths
    return paths.get(endpoint, "unmatched")
