"""`/v1/interchanges/{id}/acks`: the acknowledgements sent for a file, as sent."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from pydantic import WithJsonSchema

from gateway.api.deps import ERRORS, BaseUrl, GatewayDep, OwnedReceipt
from gateway.api.schemas import AckOut, ErrorOut, RejectionNotice, from_row
from gateway.context import Gateway
from gateway.db import repositories as repo
from gateway.db.models import AckKind, Receipt
from gateway.db.session import unit_of_work
from gateway.errors import GatewayError, NotFound
from gateway.web import download

# Documented as the list of kinds; any other text still answers 404, as a missing ack does.
KIND_SCHEMA = {"type": "string", "enum": [k.value for k in AckKind]}


async def known_kind(kind: Annotated[str, WithJsonSchema(KIND_SCHEMA)]) -> AckKind:
    """Any kind, the never-delivered 824-dry-run of an onboarding sender's test file too; the
    path parameter stays a string (an unknown kind is a 404, as for a missing ack)."""
    try:
        return AckKind(kind)
    except ValueError:
        raise NotFound("acknowledgement") from None


KnownKind = Annotated[AckKind, Depends(known_kind)]
router = APIRouter(prefix="/v1/interchanges/{interchange_id}/acks", tags=["status"])


@router.get("", response_model=list[AckOut], responses=ERRORS)
def list_acks(receipt: OwnedReceipt, gw: GatewayDep, base_url: BaseUrl) -> list[AckOut]:
    """The acknowledgements sent for this file (also in your SFTP outbound/)."""
    with gw.reads() as session:
        acks = repo.acks_of(session, receipt.id)
    root = f"{base_url}/v1/interchanges/{receipt.id}/acks"
    return [from_row(AckOut, a, url=f"{root}/{a.kind}") for a in acks]


# An ack's bytes never change; a reprocessed file gets new acks, so the same URL may answer
# other bytes later: cache, but ask again (If-None-Match) before using a copy.
_CACHE = "private, no-cache"
_ACK_HEADERS = {
    "ETag": {"description": "the acks' SHA-256, quoted", "schema": {"type": "string"}},
    "Cache-Control": {"description": _CACHE, "schema": {"type": "string"}},
}


_ACK_RESPONSES: dict[int | str, dict[str, object]] = {
    200: {
        "model": RejectionNotice,  # application/json: the `rejection` kind
        "content": {
            "application/edi-x12": {
                "schema": {
                    "type": "string",
                    "description": "the X12 text of the TA1, 999 or 824, as sent",
                }
            },
        },
        "description": "ta1, 999, 824: application/edi-x12; rejection: application/json",
        "headers": _ACK_HEADERS,
    },
    304: {"description": "If-None-Match matched: the copy you hold is current"},
    **ERRORS,
    410: {
        "model": ErrorOut,
        "description": "a 999 or 824 of a file purged under the insurer's retention policy",
    },
}


# Not PlainTextResponse: its text/plain would be documented for the JSON 401/404 too.
@router.get("/{kind}", response_class=Response, responses=_ACK_RESPONSES)
def get_ack(receipt: OwnedReceipt, kind: KnownKind, gw: GatewayDep, request: Request) -> Response:
    """The X12 text of the TA1, 999 or 824, or the rejection notice's JSON (`kind` = ta1 |
    999 | 824 | 824-dry-run | rejection). A file with several interchanges gets its acks of
    that kind one after another. If-None-Match with the ETag (or a weak one, or *) answers
    304."""
    return _ack_response(receipt, kind, gw, request)


@router.head("/{kind}", response_class=Response, responses=_ACK_RESPONSES)
def head_ack(receipt: OwnedReceipt, kind: KnownKind, gw: GatewayDep, request: Request) -> Response:
    """The headers `get_ack` would answer (ETag, Cache-Control), without the body."""
    return _ack_response(receipt, kind, gw, request)


def _ack_response(receipt: Receipt, kind: AckKind, gw: Gateway, request: Request) -> Response:
    with gw.reads() as session:
        acks = [a for a in repo.acks_of(session, receipt.id) if a.kind == kind]
    if not acks:
        raise NotFound("acknowledgement")
    content = b"".join(a.content for a in acks)
    if not content and receipt.purged_at is not None:  # 999s and 824s quote member data
        raise GatewayError(
            f"this file's {kind} was purged on {receipt.purged_at:%Y-%m-%d} under the "
            "insurer's retention policy, with the member data kept from the file",
            410,
            code="purged",
        )
    etag = f'"{hashlib.sha256(content).hexdigest()}"'
    headers = {"ETag": etag, "Cache-Control": _CACHE}
    if request.method == "GET":  # the partner picked them up (gateway.watch); a HEAD did not
        with unit_of_work(gw.sessions) as session:
            repo.mark_acks_picked_up(session, [a.id for a in acks], via="api")
    if _none_match(request.headers.get("if-none-match", ""), etag):
        return Response(status_code=304, headers=headers)
    response = download(
        content,
        "application/json" if kind == AckKind.REJECTION else "application/edi-x12",
        acks[0].filename,
    )
    response.headers.update(headers)
    return response


def _none_match(header: str, etag: str) -> bool:
    """RFC 9110 13.1.2: If-None-Match matches `*` (the ack exists) or, compared weakly (a W/
    prefix ignored), any entity tag it lists."""
    tags = [t.strip() for t in header.split(",") if t.strip()]
    return "*" in tags or etag in (t.removeprefix("W/") for t in tags)
