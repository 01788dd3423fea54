"""What the partner API's routes depend on, each written once: the Gateway, the authenticated
partner (its bearer API key), and `OwnedReceipt`: the partner's own interchange or a 404, exactly
like one that does not exist."""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar

import anyio.to_thread
from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session
from starlette.datastructures import URL

from gateway.api.apikeys import ApiKeyCache, KeyOwner
from gateway.api.schemas import ErrorOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import Receipt
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


async def authenticate(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> KeyOwner:
    """The key's partner: remembered for `EDI834_API_KEY_CACHE_SECONDS` (gateway.api.apikeys),
    else looked up in a worker thread. async, so a remembered key costs no threadpool trip; the
    Gateway from the app, not from a dependency of its own (one dependency fewer to solve on
    every request, issue 19)."""
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise GatewayError("an API key is required", 401, {"WWW-Authenticate": "Bearer"})
    keys: ApiKeyCache = request.app.state.api_keys
    key_hash = repo.hash_api_key(credentials.credentials)
    owner = keys.get(key_hash)
    if owner is not None:
        return owner
    asked_at = keys.now()
    gw: Gateway = request.app.state.gateway
    try:
        found = await anyio.to_thread.run_sync(look_up_key, gw, key_hash)
    except Exception as exc:
        raise GatewayError(
            "the gateway's database is unavailable; try again", 503, {"Retry-After": "5"}
        ) from exc
    if found is None:
        raise GatewayError("unknown or disabled API key", 401, {"WWW-Authenticate": "Bearer"})
    owner = KeyOwner(*found)
    keys.put(key_hash, owner, looked_up_at=asked_at)
    return owner


CurrentPartner = Annotated[KeyOwner, Depends(authenticate)]


@db_retry
def look_up_key(gw: Gateway, key_hash: str) -> tuple[int, str] | None:
    with gw.reads() as session:
        return repo.key_owner(session, key_hash)


def remembered_partner(request: Request) -> KeyOwner | None:
    """What `authenticate` answers when it needs neither the database nor a refusal: the first
    Authorization header, read as HTTPBearer reads it, carrying a bearer key the cache
    remembers. None otherwise, and the route's own dependencies decide (401, a look-up, 503):
    the fast paths (gateway.api.lean) start here."""
    for name, value in request.scope["headers"]:
        if name == b"authorization":
            scheme, _, key = value.decode("latin-1").partition(" ")
            key = key.strip()
            if not key or scheme.lower() != "bearer":
                return None
            keys: ApiKeyCache = request.app.state.api_keys
            key_hash = repo.hash_api_key(key)
            owner = keys.get(key_hash)
            if owner is not None and keys.due(key_hash):
                _refresh_key(request.app, keys, key_hash)
            return owner
    return None


def _refresh_key(app: Any, keys: ApiKeyCache, key_hash: str) -> None:
    """Look a remembered key up again in the background, before its answer expires
    (ApiKeyCache.due), in the fast paths' threads."""
    gw: Gateway = app.state.gateway
    asked_at = keys.now()

    async def refresh() -> None:
        loop = asyncio.get_running_loop()
        try:
            found = await loop.run_in_executor(app.state.lean_threads, look_up_key, gw, key_hash)
        except Exception:
            keys.refreshed(key_hash, None, looked_up_at=None)
            return
        owner = KeyOwner(*found) if found is not None else None
        keys.refreshed(key_hash, owner, looked_up_at=asked_at)

    task = asyncio.get_running_loop().create_task(refresh())
    _REFRESHES.add(task)  # held until done: the loop keeps only a weak reference
    task.add_done_callback(_REFRESHES.discard)


_REFRESHES: set[asyncio.Task[None]] = set()


T = TypeVar("T")


def _owned(load: Callable[[Session, str, int], T | None]) -> Callable[[str, KeyOwner, Gateway], T]:
    """The dependency for `{interchange_id}`: loaded by `load` in one read session, the
    partner's, or 404."""

    def owned(interchange_id: str, partner: CurrentPartner, gw: GatewayDep) -> T:
        with gw.reads() as session:
            found = load(session, interchange_id, partner.id)
        if found is None:
            raise NotFound()
        return found

    return owned


OwnedReceipt = Annotated[Receipt, Depends(_owned(repo.receipt_row))]
"""The authenticated partner's receipt (the row), or 404."""


@dataclass(frozen=True, slots=True)
class OwnedStatus:
    rows: repo.ReceiptStatus
    base_url: str


def owned_status(request: Request, interchange_id: str, partner: CurrentPartner) -> OwnedStatus:
    """The status read's dependency: the partner's receipt with its envelope tree and first
    findings, as rows read on one Core connection (no Session: issues 6 and 19), or 404; and the
    base URL its links start with."""
    gw: Gateway = request.app.state.gateway
    found = read_status(gw, interchange_id, partner.id)
    if found is None:
        raise NotFound()
    return OwnedStatus(found, base_url_of(request, gw))


def read_status(gw: Gateway, interchange_id: str, partner_id: int) -> repo.ReceiptStatus | None:
    """The partner's receipt with its envelope tree and first findings, or None (not there, or
    another partner's)."""
    with gw.read_engine.connect() as conn:
        return repo.receipt_status(conn, interchange_id, partner_id)


OwnedReceiptStatus = Annotated[OwnedStatus, Depends(owned_status)]
"""The status read's rows for the partner's own interchange, or 404."""


def base_url_of(request: Request, gw: Gateway) -> str:
    """Where partners reach this API: the configured public URL, else the request's own base
    URL (Starlette's, from the scheme, Host header, server address and root path), remembered
    per distinct value of those: building the URL cost a tenth of a status read's CPU (issue
    19)."""
    if gw.settings.public_url:
        return gw.settings.public_url.rstrip("/")
    scope = request.scope
    host = next((value for key, value in scope["headers"] if key == b"host"), None)
    server = scope.get("server")
    return _base_url(
        scope.get("scheme", "http"),
        scope.get("app_root_path", scope.get("root_path", "")),
        host,
        tuple(server) if server is not None else None,
    )


@functools.lru_cache(maxsize=256)
def _base_url(
    scheme: str, root_path: str, host: bytes | None, server: tuple[str, int] | None
) -> str:
    scope = {
        "type": "http",
        "scheme": scheme,
        "server": server,
        "path": root_path if root_path.endswith("/") else f"{root_path}/",
        "query_string": b"",
        "root_path": root_path,
        "headers": [(b"host", host)] if host is not None else [],
    }
    return str(URL(scope=scope)).rstrip("/")


async def public_url(request: Request, gw: GatewayDep) -> str:
    """Where partners reach this API (base_url_of), as a dependency."""
    return base_url_of(request, gw)


BaseUrl = Annotated[str, Depends(public_url)]
