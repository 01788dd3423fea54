"""The enrollment ledger as the sender's billing and reconciliation read it: one of its members
with every coverage period (and the one in force on a date), and a policy's monthly view of
premium, APTC and CSR, prorated by days covered (JSON, and the same as CSV). A partner reads
only its own members and policies; anything else is a 404, like one that does not exist."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Query
from fastapi.responses import Response, StreamingResponse

from gateway.api.deps import ERRORS, BaseUrl, CurrentPartner, GatewayDep
from gateway.api.params import IsoDate
from gateway.api.schemas import ErrorOut, LedgerMemberOut, PolicyMonthsOut
from gateway.enrollment import views
from gateway.errors import GatewayError, NotFound
from gateway.web import download

router = APIRouter(prefix="/v1", tags=["ledger"])
MONTH = r"^[0-9]{4}-(0[1-9]|1[0-2])$"
BAD_SPAN: dict[int | str, dict[str, object]] = {
    400: {"model": ErrorOut, "description": "the months asked for are not a valid span"},
}


@router.get("/members/{member_key:path}", response_model=LedgerMemberOut, responses=ERRORS)
def get_member(
    member_key: str,
    partner: CurrentPartner,
    gw: GatewayDep,
    as_of: Annotated[
        IsoDate | None, Query(description="also give the terms in force on this date")
    ] = None,
) -> LedgerMemberOut:
    """One of your members in the enrollment ledger: each enrollment (policy, line, plan year)
    with its lifecycle state, dates and every coverage period. No names, SSNs, birth dates or
    addresses: the keys and terms a status or billing question needs."""
    with gw.reads() as session:
        member = views.member_of(session, partner.id, member_key)
        if member is None:
            raise NotFound("member")
        return LedgerMemberOut.model_validate(views.member_json(member, as_of))


def _span(first: str, last: str | None) -> list[tuple[int, int]]:
    try:
        return views.months(views.parse_month(first), views.parse_month(last or first))
    except ValueError as exc:
        raise GatewayError(str(exc), 400) from None


@router.get(
    "/policies/{policy:path}/months",
    response_model=PolicyMonthsOut,
    responses={**ERRORS, **BAD_SPAN},
)
def get_policy_months(
    policy: str,
    partner: CurrentPartner,
    gw: GatewayDep,
    base_url: BaseUrl,
    first: Annotated[str, Query(alias="from", pattern=MONTH, description="YYYY-MM")],
    last: Annotated[
        str | None, Query(alias="to", pattern=MONTH, description="YYYY-MM (default: from)")
    ] = None,
) -> PolicyMonthsOut:
    """For one of your policies (REF*1L) and a span of months (at most 36): each member's plan,
    CSR variant, premium, APTC and CSR amount in force each month — prorated by days where
    coverage starts, ends or changes mid-month (monthly amount * days / days in the month) —
    and the month's totals."""
    span = _span(first, last)
    with gw.reads() as session:
        if not views.policy_exists(session, partner.id, policy):
            raise NotFound("policy")
        rows = views.policy_months(session, partner.id, policy, span)
    return PolicyMonthsOut.model_validate(
        {
            "policy": policy,
            "months": [views.month_row_json(r) for r in rows],
            "totals": views.month_totals(rows),
            "csv_url": f"{base_url}/v1/policies/{quote(policy, safe='')}/months.csv?from={first}"
            + (f"&to={last}" if last else ""),
        }
    )


@router.get(
    "/policies/{policy:path}/months.csv",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
        **ERRORS,
        **BAD_SPAN,
    },
)
def get_policy_months_csv(
    policy: str,
    partner: CurrentPartner,
    gw: GatewayDep,
    first: Annotated[str, Query(alias="from", pattern=MONTH, description="YYYY-MM")],
    last: Annotated[str | None, Query(alias="to", pattern=MONTH)] = None,
) -> Response:
    """The monthly view as CSV."""
    span = _span(first, last)
    with gw.reads() as session:
        if not views.policy_exists(session, partner.id, policy):
            raise NotFound("policy")
        rows = views.policy_months(session, partner.id, policy, span)
    name = re.sub(r"[^A-Za-z0-9._-]", "_", policy[:40])
    return download(views.months_csv(rows), "text/csv", f"policy-{name}-months.csv")
