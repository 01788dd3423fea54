"""`/v1/interchanges` and `/v1/interchanges/{id}`: a partner's files, their status, outcome,
counts, envelope ids and findings."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import AwareDatetime

from gateway.api.deps import ERRORS, BaseUrl, CurrentPartner, GatewayDep, OwnedReceiptStatus
from gateway.api.schemas import (
    Counts,
    EnvelopeOut,
    ErrorOut,
    FindingOut,
    GroupOut,
    InterchangeDetail,
    InterchangePage,
    InterchangeSummary,
    TransactionSetOut,
    from_row,
)
from gateway.db import repositories as repo
from gateway.db.models import Finding, Interchange, Receipt, Status
from gateway.errors import GatewayError
from gateway.gate import interchange_acknowledged
from validators.issues import meaning, remedy

MAX_PAGE = 200
FAILED = (
    "processing failed inside the gateway; the insurer's operators have been alerted and no "
    "acknowledgement was sent"
)
FILE_REMEDY = "Send a complete X12 interchange starting with a 106-byte ISA segment."

router = APIRouter(prefix="/v1/interchanges", tags=["status"])


@router.get(
    "",
    response_model=InterchangePage,
    responses={400: {"model": ErrorOut, "description": "invalid cursor"}, **ERRORS},
)
def list_interchanges(
    partner: CurrentPartner,
    gw: GatewayDep,
    status: Annotated[Status | None, Query()] = None,
    outcome: Annotated[
        str | None,
        Query(pattern="^(accepted|accepted_with_errors|partially_accepted|rejected)$"),
    ] = None,
    # With a zone (Z or +hh:mm): a time without one is refused, not guessed (422).
    since: AwareDatetime | None = None,
    until: AwareDatetime | None = None,
    isa13: Annotated[str | None, Query(max_length=16)] = None,
    gs06: Annotated[str | None, Query(max_length=16)] = None,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
) -> InterchangePage:
    """Your interchanges, newest first. Pass `next_cursor` back as `cursor` for the next
    page."""
    after = _decode_cursor(cursor) if cursor else None
    f = repo.ReceiptFilter(
        partner_id=partner.id,
        status=status.value if status else None,
        outcome=outcome,
        since=since,
        until=until,
        isa13=isa13,
        gs06=gs06,
    )
    with gw.reads() as session:
        rows = repo.list_receipts(session, f, limit=limit + 1, after=after)
        items = [summary_of(r) for r in rows[:limit]]
    next_cursor = (
        _encode_cursor(rows[limit - 1].received_at, rows[limit - 1].id)
        if len(rows) > limit
        else None
    )
    return InterchangePage(items=items, next_cursor=next_cursor)


@router.get("/{interchange_id}", response_model=InterchangeDetail, responses=ERRORS)
async def get_interchange(found: OwnedReceiptStatus, base_url: BaseUrl) -> InterchangeDetail:
    """Status, outcome, counts, envelope ids and every finding (first 1,000)."""
    # async: what is left is mapping what the dependency read, no I/O and no threadpool trip
    r = found.receipt
    root = f"{base_url}/v1/interchanges/{r.id}"
    return InterchangeDetail(
        **summary_of(r).model_dump(),
        interchanges=[_envelope_of(e) for e in r.envelopes],
        findings=_findings_of(r.envelopes, found.findings),
        findings_total=found.findings_total,
        error=FAILED if r.status == Status.FAILED else None,
        ledger_status=r.ledger_status,
        members_applied=r.members_applied,
        members_business_rejected=r.members_business_rejected,
        links={
            "self": root,
            "acks": f"{root}/acks",
            "members": f"{root}/members",
            "reconciliation": f"{root}/reconciliation",
        },
    )


def summary_of(r: Receipt) -> InterchangeSummary:
    return from_row(
        InterchangeSummary, r, isa13=[e.isa13 for e in r.envelopes], counts=from_row(Counts, r)
    )


def _envelope_of(e: Interchange) -> EnvelopeOut:
    # Under a TA1 rejection no 999 answered the groups: no AK9/IK5 to show.
    answered = interchange_acknowledged(e.ta1_code)
    return from_row(
        EnvelopeOut,
        e,
        sender=f"{e.sender_qualifier}:{e.sender_id}",
        receiver=f"{e.receiver_qualifier}:{e.receiver_id}",
        groups=[
            from_row(
                GroupOut,
                g,
                ack=g.ack_code if answered else None,
                sets_accepted=g.sets_accepted if answered else 0,
                transaction_sets=[
                    from_row(
                        TransactionSetOut,
                        t,
                        ack=t.ack_code if answered else None,
                        error_codes=[c for c in t.error_codes.split(",") if c],
                        members=t.member_count,
                        segments=t.segment_count,
                    )
                    for t in g.transaction_sets
                ],
            )
            for g in e.groups
        ],
    )


def _findings_of(envelopes: list[Interchange], findings: Sequence[Finding]) -> list[FindingOut]:
    """Each finding with the ISA13 / GS06 / ST02 of where it was found."""
    isa13_of = {e.id: e.isa13 for e in envelopes}
    gs06_of = {g.id: g.gs06 for e in envelopes for g in e.groups}
    st02_of = {t.id: t.st02 for e in envelopes for g in e.groups for t in g.transaction_sets}
    return [
        from_row(
            FindingOut,
            f,
            meaning=meaning(f.family, f.code) if f.family != "FILE" else f.message,
            remedy=remedy(f.family, f.code) if f.family != "FILE" else FILE_REMEDY,
            isa13=isa13_of.get(f.envelope_id) if f.envelope_id else None,
            gs06=gs06_of.get(f.group_id) if f.group_id else None,
            st02=st02_of.get(f.set_id) if f.set_id else None,
        )
        for f in findings
    ]


def _aware(moment: dt.datetime | None) -> dt.datetime | None:
    if moment is None:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=dt.UTC)


def _encode_cursor(at: dt.datetime, rid: str) -> str:
    return base64.urlsafe_b64encode(f"{at.isoformat()}|{rid}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[dt.datetime, str]:
    try:
        at, rid = base64.urlsafe_b64decode(cursor.encode()).decode().split("|", 1)
        return _aware(dt.datetime.fromisoformat(at)) or dt.datetime.now(dt.UTC), rid
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise GatewayError("invalid cursor", 400, code="invalid_cursor") from exc
