"""`/v1/interchanges/{id}/acks`: the acknowledgements sent for a file, as sent."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends
from fastapi.responses import Response

from gateway.api.deps import ERRORS, BaseUrl, GatewayDep, OwnedReceipt
from gateway.api.schemas import AckOut, from_row
from gateway.db import repositories as repo
from gateway.db.models import AckKind
from gateway.db.session import unit_of_work
from gateway.errors import NotFound
from gateway.web import download


async def known_kind(kind: str) -> AckKind:
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


@router.get(
    "/{kind}",
    # Not PlainTextResponse: its text/plain would be documented for the JSON 401/404 too.
    response_class=Response,
    responses={200: {"content": {"application/edi-x12": {}, "application/json": {}}}, **ERRORS},
)
def get_ack(receipt: OwnedReceipt, kind: KnownKind, gw: GatewayDep) -> Response:
    """The X12 text of the TA1, 999 or 824 (`kind` = ta1 | 999 | 824 | rejection). A file
    with several interchanges gets its acks of that kind one after another."""
    with gw.reads() as session:
        acks = [a for a in repo.acks_of(session, receipt.id) if a.kind == kind]
    if not acks:
        raise NotFound("acknowledgement")
    with unit_of_work(gw.sessions) as session:  # the partner picked them up (gateway.watch)
        repo.mark_acks_picked_up(session, [a.id for a in acks], via="api")
    return download(
        b"".join(a.content for a in acks),
        "application/json" if kind == AckKind.REJECTION else "application/edi-x12",
        acks[0].filename,
    )
