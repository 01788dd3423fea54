"""The operators' reject dashboard: its own FastAPI app on its own listener (never the partner
port). Server-rendered with Jinja2; operator sessions in the database; CSRF tokens on every form;
member data masked unless an admin reveals it, and every reveal or download of member data
audited. This module only assembles the routers (one per page or resource)."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import OperationalError
from starlette.exceptions import HTTPException

from gateway.context import Gateway
from gateway.dashboard import audit_log, auth, business, interchange, members, overview, rejects
from gateway.dashboard.codes import code_meaning
from gateway.dashboard.deps import BadCsrf, Forbidden, NotLoggedIn, PageError, error_page
from gateway.dashboard.formatting import age, duration, error_kind, safe_next
from gateway.dashboard.segments import MASK
from gateway.db.session import database_trouble
from gateway.enrollment import queries
from gateway.enrollment.codes import MAINTENANCE_NAMES
from gateway.logging import get_logger
from gateway.web import HSTS, HeadAsGet, add_routes, allowed_methods
from validators.issues import meaning, remedy

HERE = Path(__file__).resolve().parent
log = get_logger(__name__)


def create_dashboard(gw: Gateway) -> FastAPI:
    app = FastAPI(title="edi834 reject dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.state.gateway = gw
    app.state.templates = _templates()
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")
    app.add_middleware(HeadAsGet)
    app.middleware("http")(_headers)
    app.add_exception_handler(NotLoggedIn, _login_first)
    app.add_exception_handler(Forbidden, _forbidden)
    app.add_exception_handler(BadCsrf, _csrf)
    app.add_exception_handler(PageError, _page_error)
    app.add_exception_handler(RequestValidationError, _bad_request)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(OperationalError, _database_away)
    add_routes(
        app,
        auth.router,
        overview.router,
        rejects.router,
        business.router,
        interchange.router,
        members.router,
        audit_log.router,
    )
    return app


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=HERE / "templates")
    templates.env.globals.update(
        meaning=meaning,
        code_meaning=code_meaning,
        remedy=remedy,
        age=age,
        duration=duration,
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
    if request.url.scheme == "https":
        response.headers["Strict-Transport-Security"] = HSTS
    return response


async def _login_first(request: Request, exc: Exception) -> Response:
    if request.method == "GET":
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        ended = {"ended": "1"} if isinstance(exc, NotLoggedIn) and exc.ended else {}
        return RedirectResponse(f"/login?{urlencode({'next': target, **ended})}", 303)
    # A form sent after the session ended (idle, a logout elsewhere, a password change): a page
    # saying so, with the way to log in and come back to the form; it was a bare "Log in first."
    back = _referrer(request)
    login = "/login" + (f"?{urlencode({'next': back})}" if back else "")
    return error_page(
        request,
        401,
        "Session ended",
        "Your session ended (idle too long, or logged out), so this was not done. Log in "
        "again, then send the form again.",
        back=login,
        back_label="Log in again",
    )


async def _forbidden(request: Request, _: Exception) -> Response:
    return error_page(request, 403, "Not allowed", "This needs the admin role.")


async def _csrf(request: Request, _: Exception) -> Response:
    return error_page(
        request,
        403,
        "Form expired",
        "The form expired or did not come from this dashboard. Go back, reload the page and "
        "send it again.",
        back=_referrer(request),
        back_label="Back to the form",
    )


async def _page_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, PageError):  # registered for it alone
        raise exc
    return error_page(request, exc.status_code, exc.title, exc.message, back=_referrer(request))


async def _bad_request(request: Request, exc: Exception) -> Response:
    """A value in the address or a form this page cannot read (`page=abc`): which one, and the
    same page without it."""
    if not isinstance(exc, RequestValidationError):  # registered for it alone
        raise exc
    names = sorted({str(e["loc"][-1]) for e in exc.errors() if e.get("loc")})
    kept = [(k, v) for k, v in request.query_params.multi_items() if k not in names]
    back = request.url.path + (f"?{urlencode(kept)}" if kept else "")
    what = ", ".join(names) or "the request"
    return error_page(
        request,
        400,
        "Cannot read the address",
        f"This page cannot use the value given for {what}: a page number and a number of days "
        "are whole numbers, dates are YYYY-MM-DD.",
        back=back if request.method == "GET" else _referrer(request),
        back_label="The page without it" if request.method == "GET" else "Back",
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for it alone
        raise exc
    if exc.status_code == 404:
        return error_page(request, 404, "Not found", "There is no such page on this dashboard.")
    if exc.status_code == 405:
        page = error_page(request, 405, "Not allowed", "This address does not take that method.")
        page.headers["Allow"] = allowed_methods(request)
        return page
    return error_page(request, exc.status_code, "Error", "The request could not be answered.")


async def _database_away(request: Request, exc: Exception) -> Response:
    """The database went away (a restart, a failover): a page that says so, not a bare 500."""
    log.warning(
        "dashboard_database_unavailable",
        error_type=type(exc).__name__,
        reason=database_trouble(exc),
    )
    page = error_page(
        request,
        503,
        "Database unavailable",
        "The gateway's database does not answer right now. Nothing was changed; reload the "
        "page in a few seconds.",
        back=request.url.path if request.method == "GET" else _referrer(request),
        back_label="Reload" if request.method == "GET" else "Back",
    )
    page.headers["Retry-After"] = "5"
    return page


def _referrer(request: Request) -> str | None:
    """The page the operator came from, when it is one of ours (a local path only)."""
    referer = request.headers.get("referer")
    if not referer:
        return None
    parts = urlsplit(referer)
    if parts.netloc and parts.netloc != request.headers.get("host"):
        return None
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    return safe_next(target) if target.startswith("/") else None
