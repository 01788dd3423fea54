"""What the dashboard's routes depend on, each written once: the Gateway, the logged-in
operator (`CurrentViewer`), "admin only" (`AdminViewer`), the CSRF check on every form
(`FormViewer`, and `AdminForm` for an admin's form), and rendering a page."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from gateway.context import Gateway
from gateway.db.models import Role
from gateway.db.session import unit_of_work
from gateway.operators import find_session

COOKIE = "edi834_session"
LOGIN_CSRF = "edi834_login_csrf"


class NotLoggedIn(Exception):
    """No session; `ended` when the browser sent one that is no longer valid (idle too long,
    logged out elsewhere, a password change), so the login page can say why."""

    def __init__(self, *, ended: bool = False) -> None:
        super().__init__()
        self.ended = ended


class Forbidden(Exception):
    pass


class BadCsrf(Exception):
    pass


class PageError(Exception):
    """A page that cannot be shown as asked (no such file, a conflict): an HTML page saying
    why, with a way back."""

    def __init__(self, message: str, status_code: int = 404, *, title: str = "Not found") -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code
        self.title = title


class Viewer:
    """The logged-in operator for this request."""

    def __init__(self, username: str, role: str, csrf: str, token: str) -> None:
        self.username = username
        self.role = role
        self.csrf = csrf
        self.token = token

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN


async def get_gateway(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def current(request: Request, gw: GatewayDep) -> Viewer:
    token = request.cookies.get(COOKIE)
    if not token:
        raise NotLoggedIn
    with unit_of_work(gw.sessions) as s:
        row = find_session(s, token, idle_minutes=gw.settings.session_idle_minutes)
        if row is None:
            raise NotLoggedIn(ended=True)
        return Viewer(row.operator.username, row.operator.role, row.csrf_token, token)


CurrentViewer = Annotated[Viewer, Depends(current)]


async def admin(viewer: CurrentViewer) -> Viewer:
    return _admin_only(viewer)


AdminViewer = Annotated[Viewer, Depends(admin)]


def _same_origin(request: Request) -> bool:
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1] == host


async def csrf_ok(request: Request, viewer: CurrentViewer) -> Viewer:
    form = await request.form()
    sent = str(form.get("csrf_token", ""))
    if not sent or not hmac.compare_digest(sent, viewer.csrf) or not _same_origin(request):
        raise BadCsrf
    return viewer


FormViewer = Annotated[Viewer, Depends(csrf_ok)]


async def admin_form(viewer: FormViewer) -> Viewer:
    """An admin's form: logged in, then the CSRF check, then the role."""
    return _admin_only(viewer)


def _admin_only(viewer: Viewer) -> Viewer:
    if not viewer.is_admin:
        raise Forbidden
    return viewer


AdminForm = Annotated[Viewer, Depends(admin_form)]


REVEAL_SECONDS = 600  # how long a reveal's redirect shows member data (reload included)


def reveal_token(viewer: Viewer, scope: str, *, now: float | None = None) -> str:
    """What a reveal's POST redirects with (redirect-after-POST): valid for this operator's
    session only (keyed by its CSRF secret), for one page (`scope`), for REVEAL_SECONDS."""
    expires = int((time.time() if now is None else now) + REVEAL_SECONDS)
    mac = hmac.new(viewer.csrf.encode(), f"{scope}|{expires}".encode(), hashlib.sha256)
    return f"{expires}.{mac.hexdigest()[:32]}"


def revealed(viewer: Viewer, scope: str, token: str | None) -> bool:
    """An admin's valid, unexpired reveal token for this page."""
    if not token or not viewer.is_admin:
        return False
    expires, _, mac = token.partition(".")
    if not expires.isdigit() or int(expires) < time.time():
        return False
    want = hmac.new(viewer.csrf.encode(), f"{scope}|{expires}".encode(), hashlib.sha256)
    return hmac.compare_digest(mac, want.hexdigest()[:32])


def render(request: Request, name: str, viewer: Viewer | None, **ctx: Any) -> HTMLResponse:
    templates: Jinja2Templates = request.app.state.templates
    return templates.TemplateResponse(request, name, {"viewer": viewer, **ctx})


def error_page(
    request: Request,
    status_code: int,
    title: str,
    message: str,
    *,
    back: str | None = None,
    back_label: str = "Back",
) -> HTMLResponse:
    """Every error on the dashboard: a page (never FastAPI's JSON), with a way back."""
    response = render(
        request, "error.html", None, title=title, message=message, back=back, back_label=back_label
    )
    response.status_code = status_code
    return response
