"""Every error of the partner API as an RFC 9457 problem (`application/problem+json`): the
gateway's own errors, request validation (FastAPI's 422), unknown routes and methods (Starlette's
404/405) and anything unexpected (500), each with a stable `code` and `type`. No `instance`: a
404 for another partner's id must read exactly like one for an id that does not exist. The
OpenAPI document declares that media type and schema for every error response."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException

from gateway.api.schemas import Problem
from gateway.db.session import database_trouble, is_transient
from gateway.errors import GatewayError, default_code
from gateway.logging import get_logger
from gateway.web import allowed_methods

log = get_logger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:edi834-gateway:problem:"
TITLES = {
    "bad_request": "Bad request",
    "empty_body": "The request body is empty",
    "invalid_cursor": "Invalid cursor",
    "unauthorized": "Missing or unknown API key",
    "forbidden": "Forbidden",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "too_large": "File too large",
    "unsupported_media_type": "Unsupported media type",
    "invalid_request": "Invalid request parameters",
    "idempotency_key_reused": "Idempotency-Key already used for another file",
    "rate_limited": "Too many files",
    "internal_error": "Internal error",
    "unavailable": "Temporarily unavailable",
    "not_ready": "Not ready",
    "storage_unavailable": "The file could not be stored",
}


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code,
        "title": TITLES.get(code, code.replace("_", " ").capitalize()),
        "status": status,
        "detail": detail,
        "code": code,
    }
    body.update(extra)
    return JSONResponse(body, status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


async def _gateway_error(_: Request, exc: GatewayError) -> JSONResponse:
    return problem(exc.status_code, exc.code, exc.message, headers=exc.headers)


async def _validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
    # Where and why, never the value sent (`input`): it may be member data.
    errors = [
        {"loc": [str(part) for part in e.get("loc", ())], "msg": str(e.get("msg", ""))}
        for e in exc.errors()
    ]
    return problem(
        422,
        "invalid_request",
        "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors),
        errors=errors,
    )


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    code = default_code(exc.status_code)
    detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(code, code)
    headers = dict(exc.headers or {})
    if exc.status_code == 405:
        headers["Allow"] = allowed_methods(request)
    return problem(exc.status_code, code, detail, headers=headers)


async def _database_error(request: Request, exc: DBAPIError) -> JSONResponse:
    """Locked past its busy timeout, unreachable: not a bug, the documented 503 (an ack's GET
    records its pick-up, a write, and waited out a long ledger transaction into a 500).
    Handled here, not by the catch-all: that one's exception goes on to the server, which
    drops the connection."""
    if not is_transient(exc):
        return await _unexpected(request, exc)
    log.warning(
        "request_database_unavailable",
        error_type=type(exc).__name__,
        reason=database_trouble(exc),
    )
    return problem(
        503,
        "unavailable",
        "the gateway's database is unavailable; try again",
        headers={"Retry-After": "5"},
    )


async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled_error", error_type=type(exc).__name__)
    return problem(500, "internal_error", "internal error")


def install(app: FastAPI) -> None:
    # Starlette types a handler as taking Exception; each of these gets only its own kind.
    app.add_exception_handler(GatewayError, _gateway_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _validation_error)  # type: ignore[arg-type]
    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(DBAPIError, _database_error)  # type: ignore[arg-type]
    app.add_exception_handler(Exception, _unexpected)
    generate: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = declare_problems(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def declare_problems(schema: dict[str, Any]) -> dict[str, Any]:
    """Every 4xx/5xx response of the document as `application/problem+json` with the Problem
    schema, FastAPI's own 422 (HTTPValidationError) included; a 500 on every operation, a 503
    (with Retry-After) on every authenticated one, and no 404 where the path has no id."""
    ref = {"$ref": "#/components/schemas/Problem"}
    for path, operations in schema.get("paths", {}).items():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "{" not in path:  # the route matched: no 404 can come from it
                responses.pop("404", None)
            if "401" in responses:  # the key is looked up in the database
                responses.setdefault(
                    "503",
                    {
                        "description": "the database is unavailable: try again",
                        "headers": {
                            "Retry-After": {"description": "seconds", "schema": {"type": "string"}}
                        },
                    },
                )
            responses.setdefault("500", {"description": "an internal error (a bug): reported"})
            for status, response in responses.items():
                if status[:1] in ("4", "5"):
                    response["content"] = {PROBLEM_MEDIA_TYPE: {"schema": ref}}
                    if status == "422":
                        response["description"] = "A parameter is missing or malformed"
    for operations in schema.get("webhooks", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            for status in [s for s in responses if s[:1] in ("4", "5")]:
                del responses[status]  # the partner's answers, not ours: any non-2xx is retried
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        components.pop(unused, None)
    components["Problem"] = Problem.model_json_schema(ref_template="#/components/schemas/{model}")
    return schema
