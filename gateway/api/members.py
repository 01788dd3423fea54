"""The enrollment ledger's view of a partner's file: what became of each member, and how an
audit or replace file compares with the ledger (JSON, and the same report as CSV)."""

from __future__ import annotations

import base64
import binascii
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from gateway.api.deps import ERRORS, BaseUrl, GatewayDep, OwnedReceipt
from gateway.api.schemas import (
    BusinessFindingOut,
    ErrorOut,
    MemberOut,
    MemberPage,
    ReconciliationItemOut,
    ReconciliationOut,
    from_row,
)
from gateway.enrollment import queries
from gateway.enrollment.rules import shown_to_sender
from gateway.errors import GatewayError, NotFound
from gateway.services import interchanges
from gateway.web import download

MAX_SEQ = 2**31 - 1  # `seq` columns are 32-bit INTEGER: a larger `after` is a 422, not a 500

router = APIRouter(prefix="/v1/interchanges/{interchange_id}", tags=["ledger"])


@router.get(
    "/members",
    response_model=MemberPage,
    responses={400: {"model": ErrorOut, "description": "invalid cursor"}, **ERRORS},
)
def list_members(
    receipt: OwnedReceipt,
    gw: GatewayDep,
    outcome: Annotated[
        str | None,
        Query(pattern="^(applied|rejected|audited|not_applied|would_apply|would_reject)$"),
    ] = None,
    cursor: Annotated[str | None, Query(max_length=64)] = None,
    after: Annotated[int, Query(ge=-1, le=MAX_SEQ, deprecated=True, description="use cursor")] = -1,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> MemberPage:
    """Each member of your 834 sets, in file order, with what became of it: applied to the
    enrollment ledger, rejected by a business rule (with the rule, the reason and the
    position), audited (an audit file is compared, not applied), not_applied (its set did
    not pass the gate: rejected by the TA1 or 999, a test interchange, … — `reason` says
    which), or would_apply / would_reject (a dry run of an onboarding sender's test file).
    Pass `next_cursor` back as `cursor` for the next page, as for the interchanges list."""
    if cursor is not None:
        after = _decode_cursor(cursor)
    with gw.reads() as session:
        results = queries.member_results(
            session, receipt.id, outcome=outcome, after=after, limit=limit + 1
        )
        counts = queries.outcome_counts(session, receipt.id)
    items = [
        from_row(
            MemberOut,
            m.event,
            policy=m.event.policy_key,
            relationship=m.event.relationship_code,
            reason=m.event.note,
            findings=[
                from_row(
                    BusinessFindingOut,
                    f,
                    title=queries.rule_title(f.rule),
                    remedy=queries.rule_remedy(f.rule),
                )
                for f in m.findings
                if shown_to_sender(f.rule, f.severity)
            ],
        )
        for m in results[:limit]
    ]
    return MemberPage(
        ledger_status=receipt.ledger_status,
        counts=counts,
        items=items,
        next_cursor=_encode_cursor(items[-1].seq) if len(results) > limit else None,
        next_after=items[-1].seq if len(results) > limit else None,
    )


def _encode_cursor(seq: int) -> str:
    return base64.urlsafe_b64encode(f"member|{seq}".encode()).decode()


def _decode_cursor(cursor: str) -> int:
    try:
        kind, seq = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        after = int(seq)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise GatewayError("invalid cursor", 400, code="invalid_cursor") from None
    if kind != "member" or not -1 <= after <= MAX_SEQ:
        raise GatewayError("invalid cursor", 400, code="invalid_cursor")
    return after


@router.get("/reconciliation", response_model=ReconciliationOut, responses=ERRORS)
def get_reconciliation(
    receipt: OwnedReceipt,
    gw: GatewayDep,
    base_url: BaseUrl,
    after: Annotated[int, Query(ge=-1, le=MAX_SEQ)] = -1,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> ReconciliationOut:
    """For an audit (BGN08 4, INS03 030) or replace (BGN08 RX) file: how it compares with
    the enrollment ledger — members missing on either side and field mismatches."""
    with gw.reads() as session:
        rec = queries.reconciliation_of(session, receipt.id)
        if rec is None:
            raise NotFound("reconciliation")
        items = queries.reconciliation_items(session, rec.id, after=after, limit=limit + 1)
    return from_row(
        ReconciliationOut,
        rec,
        items=[from_row(ReconciliationItemOut, i) for i in items[:limit]],
        next_after=items[limit - 1].seq if len(items) > limit else None,
        csv_url=f"{base_url}/v1/interchanges/{receipt.id}/reconciliation.csv",
    )


@router.get(
    "/reconciliation.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {"schema": {"type": "string"}}}}, **ERRORS},
)
def get_reconciliation_csv(receipt: OwnedReceipt, gw: GatewayDep) -> Response:
    """The reconciliation report as CSV."""
    rows = interchanges.reconciliation_csv(gw, receipt.id)
    if rows is None:
        raise NotFound("reconciliation")
    return download(rows, "text/csv", f"reconciliation-{receipt.id}.csv")
