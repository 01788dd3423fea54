"""The operators' reject dashboard: its own FastAPI app on its own listener (never the partner
port). Server-rendered with Jinja2; operator sessions in the database; CSRF tokens on every form;
member data masked unless an admin reveals it, and every reveal or download of member data
audited. This module only assembles the routers (one per page or resource)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from gateway.context import Gateway
from gateway.dashboard import audit_log, auth, business, interchange, overview, rejects
from gateway.dashboard.deps import BadCsrf, Forbidden, NotLoggedIn
from gateway.dashboard.formatting import age, error_kind
from gateway.dashboard.segments import MASK
from gateway.enrollment import queries
from gateway.enrollment.codes import MAINTENANCE_NAMES
from gateway.web import add_routes
from validators.issues import meaning, remedy

HERE = Path(__file__).resolve().parent


def create_dashboard(gw: Gateway) -> FastAPI:
    app = FastAPI(title="edi834 reject dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    app.state.templates = _templates()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.middleware("http")(_headers)
    app.add_exception_handler(NotLoggedIn, _login_first)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadCsrf, _csrf)
    add_routes(
        app,
        auth.router,
        overview.router,
        rejects.router,
        business.router,
        interchange.router,
        audit_log.router,
    )
    return app


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        meaning=meaning,
        remedy=remedy,
        age=age,
        rule_title=queries.rule_title,
        rule_remedy=queries.rule_remedy,
        error_kind=error_kind,
        maintenance_types=MAINTENANCE_NAMES,
        mask=MASK,
    )
    return templates


async def _headers(request: Request, call_next: Any) -> Response:
    response: Response = await call_next(request)
    response.headers["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'; form-action 'self'"
    )
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Not "no-referrer": with it browsers send `Origin: null` on same-origin form posts,
    # which the CSRF check (rightly) refuses. "same-origin" still sends nothing elsewhere.
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers.setdefault("Cache-Control", "no-store")
    return response


async def _login_first(request: Request, _: Exception) -> Response:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?{urlencode({'next': target})}", 303)
    return HTMLResponse("Log in first.", 401)


async def _forbidden(_: Request, __: Exception) -> Response:
    return HTMLResponse("This needs the admin role.", 403)


async def _csrf(_: Request, __: Exception) -> Response:
    return HTMLResponse("The form expired or did not come from this dashboard. Reload.", 403)
