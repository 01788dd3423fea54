"""The partner-facing HTTP API: intake (`POST /v1/interchanges`) and the status API. A partner
authenticates with its bearer API key and sees only its own interchanges: another partner's id
answers 404, exactly like an id that does not exist. This module only assembles the routers."""

from __future__ import annotations

from collections.abc import Callable

from fastapi import FastAPI

from gateway.api import acks, health, intake, interchanges, ledger, members, problems
from gateway.api.docs import router as docs_router
from gateway.api.health import create_health_app
from gateway.api.observe import RequestMetrics
from gateway.api.ratelimit import RateLimiter
from gateway.context import Gateway
from gateway.web import add_routes

__all__ = ["create_app", "create_health_app"]


def create_app(gw: Gateway, *, on_receipt: Callable[[], None] | None = None) -> FastAPI:
    app = FastAPI(
        title="edi834-gateway",
        summary="X12 834 (005010X220A1) intake and acknowledgement status, per trading partner",
        version="1",
        docs_url=None,  # gateway.api.docs serves /docs and /redoc without a CDN
        redoc_url=None,
    )
    app.state.gateway = gw
    app.state.rate_limiter = RateLimiter(gw.settings.rate_limit_per_minute)
    app.state.on_receipt = on_receipt
    problems.install(app)  # every error as application/problem+json
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
    app.add_middleware(RequestMetrics)
    return app
