"""The partner-facing HTTP API: intake (`POST /v1/interchanges`) and the status API. A partner
authenticates with its bearer API key and sees only its own interchanges: another partner's id
answers 404, exactly like an id that does not exist. This module only assembles the routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi.telemetry import TelemetryConfig

from gateway.api import acks, health, intake, interchanges, ledger, members, problems, webhooks
from gateway.api.apikeys import ApiKeyCache
from gateway.api.docs import router as docs_router
from gateway.api.health import create_health_app
from gateway.api.lean import add_threads, install_fast_path
from gateway.api.observe import RequestMetrics
from gateway.api.ratelimit import RateLimiter
from gateway.context import Gateway
from gateway.web import ApiHeaders, HeadAsGet, add_routes

__all__ = ["create_app", "create_health_app"]

# FastAPI's native OpenTelemetry off: the gateway's metrics are Prometheus' (RequestMetrics), no
# OpenTelemetry provider is configured, and asking for one on every request cost about a tenth
# of a status read's CPU (issue 19).
NO_OPENTELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}


def create_app(gw: Gateway, *, on_receipt: Callable[[], None] | None = None) -> FastAPI:
    app = FastAPI(
        title="edi834-gateway",
        summary="X12 834 (005010X220A1) intake and acknowledgement status, per trading partner",
        version="1",
        docs_url=None,  # gateway.api.docs serves /docs and /redoc without a CDN
        redoc_url=None,
        telemetry=NO_OPENTELEMETRY,
    )
    app.state.gateway = gw
    app.state.rate_limiter = RateLimiter(gw.settings.rate_limit_per_minute)
    app.state.api_keys = ApiKeyCache(gw.settings.api_key_cache_seconds)
    app.state.on_receipt = on_receipt
    problems.install(app)  # every error as application/problem+json
    webhooks.declare(app)  # the signed webhook, in the document only
    add_routes(
        app,
        intake.router,
        interchanges.router,
        acks.router,
        members.router,
        ledger.router,
        health.router,
    )
    add_routes(app, docs_router)
    # The hot routes' fast paths (issue 19); the routes stay as declared for every other request
    # and for the OpenAPI document.
    add_threads(app, gw.settings.api_threads)
    install_fast_path(app, intake.submit, intake.submit_fast)
    install_fast_path(app, interchanges.get_interchange, interchanges.get_interchange_fast)
    install_fast_path(app, interchanges.list_interchanges, interchanges.list_interchanges_fast)
    app.add_middleware(HeadAsGet)  # innermost: the metrics count a HEAD as a HEAD
    app.add_middleware(ApiHeaders)
    app.add_middleware(RequestMetrics)
    for route in app.routes:
        if isinstance(route, APIRoute) and route.operation_id is None:
            route.operation_id = _operation_id(route)
    return app


def _operation_id(route: APIRoute) -> str:
    """The route function's name (`get_ack`, `list_interchanges`): what a generated client
    calls, rather than FastAPI's path-and-method default. Each name is used once (the
    routers' routes are added as they are, so the app's generate_unique_id_function would
    not reach them)."""
    return route.name
