"""What the partner API's routes depend on, each written once: the Gateway, the authenticated
partner (its bearer API key), and `OwnedReceipt`: the partner's own interchange or a 404, exactly
like one that does not exist."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from gateway.api.schemas import ErrorOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import Partner, Receipt
from gateway.db.session import db_retry
from gateway.errors import GatewayError, NotFound

bearer = HTTPBearer(auto_error=False, description="the partner's API key")
ERRORS: dict[int | str, dict[str, object]] = {
    401: {"model": ErrorOut, "description": "missing or unknown API key"},
    404: {"model": ErrorOut, "description": "no such interchange (or not yours)"},
}


async def get_gateway(request: Request) -> Gateway:
    # async (no I/O): a sync dependency would cost every request a threadpool trip (issue 6)
    gw: Gateway = request.app.state.gateway
    return gw


GatewayDep = Annotated[Gateway, Depends(get_gateway)]


def authenticate(
    gw: GatewayDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Partner:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise GatewayError("an API key is required", 401, {"WWW-Authenticate": "Bearer"})

    @db_retry
    def lookup() -> Partner | None:
        with gw.reads() as session:
            return repo.partner_by_api_key(session, credentials.credentials)

    try:
        partner = lookup()
    except Exception as exc:
        raise GatewayError(
            "the gateway's database is unavailable; try again", 503, {"Retry-After": "5"}
        ) from exc
    if partner is None:
        raise GatewayError("unknown or disabled API key", 401, {"WWW-Authenticate": "Bearer"})
    return partner


CurrentPartner = Annotated[Partner, Depends(authenticate)]


def _owned(
    load: Callable[[Session, str, int], Receipt | None],
) -> Callable[[str, Partner, Gateway], Receipt]:
    """The dependency for `{interchange_id}`: loaded by `load`, the partner's, or 404."""

    def owned(interchange_id: str, partner: CurrentPartner, gw: GatewayDep) -> Receipt:
        with gw.reads() as session:
            receipt = load(session, interchange_id, partner.id)
        if receipt is None:
            raise NotFound()
        return receipt

    return owned


OwnedReceipt = Annotated[Receipt, Depends(_owned(repo.receipt_row))]
"""The authenticated partner's receipt (the row), or 404."""
OwnedReceiptTree = Annotated[Receipt, Depends(_owned(repo.receipt_detail))]
"""The same, with its envelopes, groups and transaction sets loaded in the one query (the
status read's hot path, issue 6)."""


async def public_url(request: Request, gw: GatewayDep) -> str:
    """Where partners reach this API: the configured public URL, else the request's own."""
    return gw.settings.public_url.rstrip("/") or str(request.base_url).rstrip("/")


BaseUrl = Annotated[str, Depends(public_url)]
