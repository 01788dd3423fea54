"""Logging in and out: a login form with its own CSRF cookie, argon2-checked passwords with
lockout (gateway.operators), and a server-side session in an HttpOnly, SameSite=Strict cookie."""

from __future__ import annotations

import hmac
import secrets
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from gateway.context import Gateway
from gateway.dashboard.deps import (
    COOKIE,
    LOGIN_CSRF,
    BadCsrf,
    FormViewer,
    GatewayDep,
    render,
)
from gateway.dashboard.formatting import safe_next
from gateway.db.models import Operator
from gateway.db.session import unit_of_work
from gateway.logging import get_logger
from gateway.operators import LoginRefused, authenticate, close_session, open_session
from gateway.services import audit

log = get_logger(__name__)
UNKNOWN_OPERATOR = "(not an operator)"
router = APIRouter()


@router.get("/login", response_class=HTMLResponse)
def login_page(
    request: Request, gw: GatewayDep, next: str = "/dashboard", ended: str = ""
) -> Response:
    token = secrets.token_hex(32)
    # Sent here from a page whose session had ended: say so, or the login looks like a fault.
    notice = (
        f"Your session ended (idle for {gw.settings.session_idle_minutes:g} minutes, or logged "
        "out elsewhere). Log in again to go back to the page."
        if ended
        else None
    )
    response = render(
        request, "login.html", None, csrf=token, next=safe_next(next), error=None, notice=notice
    )
    _set_cookie(response, request, gw, LOGIN_CSRF, token, max_age=3600)
    return response


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    gw: GatewayDep,
    username: Annotated[str, Form(max_length=64)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form()] = "",
    next: Annotated[str, Form()] = "/dashboard",
) -> Response:
    expected = request.cookies.get(LOGIN_CSRF, "")
    if not expected or not hmac.compare_digest(expected, csrf_token):
        raise BadCsrf
    refused: LoginRefused | None = None
    try:
        # Its own transactions: the failure count (lockout) is committed before the password
        # is verified.
        op_id = authenticate(
            gw.sessions, username, password, max_failures=gw.settings.login_max_failures
        )
        with unit_of_work(gw.sessions) as s:
            op = s.get(Operator, op_id)
            if op is None:  # removed in between
                raise LoginRefused("Invalid username or password.")
            token, _ = open_session(s, op)
    except LoginRefused as exc:
        refused = exc
    if refused is not None:
        log.info("operator_login_refused")
        # An operator's name, which an auditor needs; never what was typed for no operator (a
        # member's name, a password in the wrong box): the audit log is not for member data.
        who = username[:64] if refused.operator else UNKNOWN_OPERATOR
        audit.record(gw, who, "login_failed", None, refused.message[:200])
        response = render(
            request,
            "login.html",
            None,
            csrf=expected,
            next=safe_next(next),
            error=refused.message,
        )
        response.status_code = 401
        return response
    log.info("operator_logged_in", operator=username)
    audit.record(gw, username, "login", None, "")
    redirect = RedirectResponse(safe_next(next), 303)
    _set_cookie(redirect, request, gw, COOKIE, token, path="/")
    redirect.delete_cookie(LOGIN_CSRF)
    return redirect


@router.post("/logout")
def logout(viewer: FormViewer, gw: GatewayDep) -> Response:
    with unit_of_work(gw.sessions) as s:
        close_session(s, viewer.token)
    audit.record(gw, viewer.username, "logout", None, "")
    response = RedirectResponse("/login", 303)
    response.delete_cookie(COOKIE, path="/")
    return response


def _set_cookie(
    response: Response, request: Request, gw: Gateway, name: str, value: str, **scope: Any
) -> None:
    """HttpOnly, SameSite=Strict, and Secure when the dashboard is reached over TLS: its own
    certificate, or a TLS-terminating proxy's `X-Forwarded-Proto: https` from an address
    uvicorn trusts (`FORWARDED_ALLOW_IPS`, 127.0.0.1 unless set), which makes the scheme
    https."""
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=gw.settings.tls_cert is not None or request.url.scheme == "https",
        **scope,
    )
