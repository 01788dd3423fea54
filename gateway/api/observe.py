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
            # The router put the matched route into the scope; none matched: "unmatched".
            route = str(getattr(scope.get("route"), "path", "unmatched"))
            method = str(scope["method"])
            HTTP_REQUESTS.labels(route=route, method=method, status=str(status)).inc()
            HTTP_SECONDS.labels(route=route, method=method).observe(time.perf_counter() - started)
            if status == 401:
                UNAUTHORIZED.inc()
