"""`POST /v1/interchanges`: a partner sends one 834 file as the raw request body. Its bytes are
durable (blob fsynced, receipt committed) before the answer; a disk or database failure answers
an error, never a receipt."""

from __future__ import annotations

import hashlib
import json
import re
from typing import Annotated

from fastapi import APIRouter, Header, Request
from fastapi.responses import Response

from gateway.api.apikeys import KeyOwner
from gateway.api.deps import (
    ERRORS,
    BaseUrl,
    CurrentPartner,
    GatewayDep,
    base_url_of,
    remembered_partner,
)
from gateway.api.lean import in_thread
from gateway.api.ratelimit import RateLimiter
from gateway.api.schemas import ErrorOut, ReceiptOut
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.errors import GatewayError, IdempotencyKeyReused
from gateway.faults import crashpoint
from gateway.intake.receive import check_idempotency_key, record_receipt
from gateway.logging import get_logger
from gateway.metrics import REJECTED_REQUESTS
from gateway.storage import StorageError, TooLarge
from parsers.charset import as_sent

log = get_logger(__name__)
ACCEPTED_TYPES = {"application/edi-x12", "text/plain", "application/octet-stream"}

router = APIRouter(tags=["intake"])
_RATE_HEADERS = {
    "RateLimit-Limit": {
        "description": "files a minute (this API process)",
        "schema": {"type": "string"},
    },
    "RateLimit-Remaining": {"description": "files left now", "schema": {"type": "string"}},
    "RateLimit-Reset": {
        "description": "seconds until the full quota is back",
        "schema": {"type": "string"},
    },
}
_RECEIPT_HEADERS = {
    "Location": {"description": "the interchange's status URL", "schema": {"type": "string"}},
    **_RATE_HEADERS,
}


@router.post(
    "/v1/interchanges",
    status_code=202,
    response_model=ReceiptOut,
    responses={
        200: {
            "model": ReceiptOut,
            "description": "these exact bytes were received before: the original receipt "
            "(also when the partner is over its rate)",
            "headers": _RECEIPT_HEADERS,
        },
        202: {"description": "received and durable", "headers": _RECEIPT_HEADERS},
        400: {"model": ErrorOut, "description": "the request body is empty"},
        413: {"model": ErrorOut},
        415: {"model": ErrorOut},
        422: {
            "model": ErrorOut,
            "description": "a malformed header, or an Idempotency-Key already used for other "
            "bytes (idempotency_key_reused)",
        },
        429: {
            "model": ErrorOut,
            "description": "over the partner's rate, and not bytes received before",
            "headers": {
                "Retry-After": {"description": "seconds", "schema": {"type": "string"}},
                **_RATE_HEADERS,
            },
        },
        503: {
            "model": ErrorOut,
            "description": "the database is unavailable: send it again",
            "headers": {"Retry-After": {"description": "seconds", "schema": {"type": "string"}}},
        },
        507: {"model": ErrorOut},
        **ERRORS,
    },
    openapi_extra={
        "requestBody": {
            "required": True,
            # One media type, so a generated client sends it (openapi-python-client, given
            # content_type_overrides, would otherwise send the last type it knows).
            "description": "the 834 file's bytes, as they are. text/plain and "
            "application/octet-stream are accepted too.",
            "content": {"application/edi-x12": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def submit(
    request: Request,
    partner: CurrentPartner,
    gw: GatewayDep,
    base_url: BaseUrl,
    x_filename: Annotated[
        str | None,
        Header(max_length=255, description="the file's name, kept for the ack names"),
    ] = None,
    idempotency_key: Annotated[
        str | None,
        Header(
            min_length=1,
            max_length=255,
            pattern=r"^[\x20-\x7e]+$",
            description="any string of yours (a UUID): for 24 hours the same key with the same "
            "bytes answers the original receipt, and with other bytes 422 "
            "idempotency_key_reused. Identical bytes are one receipt with or without a key.",
        ),
    ] = None,
) -> Response:
    """Send one 834 file as the raw request body. It is stored durably before the answer;
    its TA1/999 follow at `status_url` and in your SFTP outbound/."""
    return await receive_file(request, partner, gw, base_url, x_filename, idempotency_key)


_IDEMPOTENCY_KEY = re.compile(r"[\x20-\x7e]{1,255}")


async def submit_fast(request: Request) -> Response | None:
    """`submit` for a remembered key and headers its parameters take as they are (the first of
    each, as FastAPI reads them; X-Filename at most 255 characters, Idempotency-Key 1 to 255
    printable ASCII): the same work without FastAPI's dependency solving and parameter
    validation (gateway.api.lean). None for any other request: FastAPI answers it (a 401, the
    422 for a malformed header) exactly as declared."""
    partner = remembered_partner(request)
    if partner is None:
        return None
    x_filename = idempotency_key = None
    for name, value in request.scope["headers"]:
        if name == b"x-filename" and x_filename is None:
            x_filename = value.decode("latin-1")
            if len(x_filename) > 255:
                return None
        elif name == b"idempotency-key" and idempotency_key is None:
            idempotency_key = value.decode("latin-1")
            if not _IDEMPOTENCY_KEY.fullmatch(idempotency_key):
                return None
    gw: Gateway = request.app.state.gateway
    return await receive_file(
        request, partner, gw, base_url_of(request, gw), x_filename, idempotency_key
    )


async def receive_file(
    request: Request,
    partner: KeyOwner,
    gw: Gateway,
    base_url: str,
    x_filename: str | None,
    idempotency_key: str | None,
) -> Response:
    """What `submit` does, once its parameters are known."""
    limit = gw.settings.max_body_bytes
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype not in ACCEPTED_TYPES:
        REJECTED_REQUESTS.labels(reason="media_type").inc()
        raise GatewayError(f"send the file as one of {', '.join(sorted(ACCEPTED_TYPES))}", 415)
    coding = request.headers.get("content-encoding", "").strip().lower()
    if coding not in ("", "identity"):
        # RFC 9110 15.5.16: a coding we do not decode is 415, not a receipt of compressed
        # bytes later rejected as "binary data".
        REJECTED_REQUESTS.labels(reason="media_type").inc()
        raise GatewayError(
            f"Content-Encoding {coding[:40]!r} is not accepted: send the file uncompressed",
            415,
            {"Accept-Encoding": "identity"},
        )
    declared = request.headers.get("content-length")
    if declared and declared.isascii() and declared.isdigit() and int(declared) > limit:
        REJECTED_REQUESTS.labels(reason="too_large").inc()
        raise GatewayError(f"file larger than {limit} bytes", 413)
    limiter: RateLimiter = request.app.state.rate_limiter
    wait = limiter.take(partner.id)
    if wait:
        # Bytes received before get their original receipt, throttled or not: a partner that
        # retries what it already sent must not read a refusal.
        original = await _received_before(request, gw, partner.id, limit)
        if original is not None:
            return _receipt_response(original, False, base_url, limiter.headers(partner.id))
        REJECTED_REQUESTS.labels(reason="rate_limited").inc()
        raise GatewayError(
            "too many files; slow down",
            429,
            {"Retry-After": str(int(wait)), **limiter.headers(partner.id)},
        )
    try:
        pending_blob = gw.blobs.begin(limit=limit)
    except StorageError as exc:
        REJECTED_REQUESTS.labels(reason="storage").inc()
        log.error("blob_store_failed", partner_id=partner.id, stage="begin")
        raise GatewayError(f"could not store the file: {exc}", 507) from exc
    try:
        async for chunk in request.stream():
            pending_blob.write(chunk)
        crashpoint("body_received")
    except TooLarge as exc:
        pending_blob.discard()
        REJECTED_REQUESTS.labels(reason="too_large").inc()
        raise GatewayError(f"file larger than {limit} bytes", 413) from exc
    except StorageError as exc:
        pending_blob.discard()
        REJECTED_REQUESTS.labels(reason="storage").inc()
        log.error("blob_store_failed", partner_id=partner.id)
        raise GatewayError(f"could not store the file durably: {exc}", 507) from exc
    except BaseException:
        pending_blob.discard()  # client went away mid-body: nothing was promised
        raise
    if idempotency_key is not None:
        try:
            await in_thread(
                request,
                check_idempotency_key,
                gw,
                partner_id=partner.id,
                key=idempotency_key,
                sha256=pending_blob.sha256,
            )
        except IdempotencyKeyReused:
            pending_blob.discard()
            raise

    def store() -> tuple[repo.ReceiptRef, bool] | None:
        # fsync, rename, fsync the directory, then commit the row: one trip to the
        # threadpool, not two (each trip is CPU on the event loop, issue 6).
        blob = pending_blob.commit()
        if blob.size == 0:
            return None
        return record_receipt(
            gw,
            partner_id=partner.id,
            blob=blob,
            channel="http",
            # A header is read as Latin-1; a UTF-8 name (`résumé.834`) is kept as sent.
            filename=as_sent(x_filename),
            idempotency_key=idempotency_key,
        )

    try:
        stored = await in_thread(request, store)
    except StorageError as exc:
        pending_blob.discard()
        REJECTED_REQUESTS.labels(reason="storage").inc()
        log.error("blob_store_failed", partner_id=partner.id)
        raise GatewayError(f"could not store the file durably: {exc}", 507) from exc
    except IdempotencyKeyReused:  # lost a race for the key: the blob is kept, unreferenced
        raise
    except Exception as exc:
        REJECTED_REQUESTS.labels(reason="database").inc()
        log.error("receipt_commit_failed", partner_id=partner.id, error_type=type(exc).__name__)
        raise GatewayError(
            "the file could not be recorded (database unavailable); send it again",
            503,
            {"Retry-After": "10"},
        ) from exc
    if stored is None:
        REJECTED_REQUESTS.labels(reason="empty").inc()
        raise GatewayError("the request body is empty", 400, code="empty_body")
    receipt, created = stored
    on_receipt = request.app.state.on_receipt
    if created and on_receipt is not None:
        on_receipt()
    crashpoint("before_response")
    return _receipt_response(receipt, created, base_url, limiter.headers(partner.id))


def _receipt_response(
    receipt: repo.ReceiptRef, created: bool, base_url: str, rate: dict[str, str]
) -> Response:
    """ReceiptOut, encoded once (no model built and validated per file: issue 19)."""
    status_url = f"{base_url}/v1/interchanges/{receipt.id}"
    body = {
        "id": receipt.id,
        "sha256": receipt.sha256,
        "status": receipt.status,
        "status_url": status_url,
        "duplicate": not created,
    }
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        202 if created else 200,
        headers={"Location": status_url, **rate},
        media_type="application/json",
    )


async def _received_before(
    request: Request, gw: Gateway, partner_id: int, limit: int
) -> repo.ReceiptRef | None:
    """The partner's receipt for the body's exact bytes, if any (the body hashed, not kept)."""
    digest, size = hashlib.sha256(), 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        digest.update(chunk)
    if size == 0:
        return None

    def find() -> repo.ReceiptRef | None:
        with gw.reads() as session:
            found = repo.find_duplicate_receipt(session, partner_id, digest.hexdigest())
            return repo.ReceiptRef(found.id, found.sha256, found.status) if found else None

    return await in_thread(request, find)
