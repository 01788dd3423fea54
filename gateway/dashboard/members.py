"""One member's enrollment ledger for operators: each enrollment (policy, line, plan year) with
its lifecycle state and every coverage period, what is in force on a date, and the member's
latest events with the rules they drew — what an operator needs to answer "why was this change
refused?" or "what does the insurer hold for this person?". No names, SSNs, birth dates or
addresses; the member's id as the dashboard shows it everywhere (`dashboard_member_id`), and so
its policy numbers to a viewer. Every view is in the audit log (`view_member`)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select

from gateway.dashboard.deps import CurrentViewer, GatewayDep, PageError, render
from gateway.dashboard.formatting import member_id, parse_day, unreadable_days
from gateway.db.models import BusinessFinding, LedgerMember, MemberEventRow, Partner, Receipt
from gateway.enrollment import views
from gateway.services import audit

EVENTS = 20
router = APIRouter()


@router.get("/dashboard/members/{ledger_id}", response_class=HTMLResponse)
def member_page(
    request: Request, ledger_id: str, viewer: CurrentViewer, gw: GatewayDep
) -> Response:
    q = {k: v for k in ("as_of",) if (v := request.query_params.get(k, "").strip()[:32])}
    problems = unreadable_days(q, ("as_of",))
    moment = parse_day(q.get("as_of"))
    as_of = (moment or gw.clock()).date()
    with gw.reads() as s:
        known = ledger_id.isascii() and ledger_id.isdigit() and len(ledger_id) <= 12
        member = s.get(LedgerMember, int(ledger_id)) if known else None
        if member is None:
            raise PageError("No such member in the ledger.")
        partner = s.scalar(select(Partner.name).where(Partner.id == member.partner_id))
        record = views.member_json(member, as_of)
        # A policy number (REF*1L) identifies the member as the member id does: a viewer sees
        # it as the member id is shown (`dashboard_member_id`), an admin whole.
        for e in record["enrollments"]:
            e["policy"] = member_id(e["policy"], viewer.is_admin, gw.settings.dashboard_member_id)
        events = s.execute(
            select(
                MemberEventRow.id,
                MemberEventRow.receipt_id,
                Receipt.filename,
                Receipt.received_at,
                MemberEventRow.maintenance_type,
                MemberEventRow.maintenance_reason,
                MemberEventRow.outcome,
            )
            .join(Receipt, Receipt.id == MemberEventRow.receipt_id)
            .where(
                MemberEventRow.partner_id == member.partner_id,
                MemberEventRow.member_key == member.member_key,
            )
            .order_by(MemberEventRow.id.desc())
            .limit(EVENTS)
        ).all()
        rules: dict[int, list[tuple[str, str]]] = {}
        for event_id, rule, severity in s.execute(
            select(BusinessFinding.event_id, BusinessFinding.rule, BusinessFinding.severity).where(
                BusinessFinding.event_id.in_([e.id for e in events])
            )
        ):
            if event_id is not None:
                rules.setdefault(event_id, []).append((rule, severity))
    # What the insurer holds for one member (coverage, premium, APTC): each view is audited,
    # by the ledger's own id (not member data) and the partner, so "who looked at this
    # member?" can be answered.
    audit.record(
        gw, viewer.username, "view_member", None, f"ledger member {member.id} of {partner}"
    )
    return render(
        request,
        "member.html",
        viewer,
        partner=partner,
        shown_id=member_id(record["member_key"], False, gw.settings.dashboard_member_id),
        record=record,
        as_of=as_of.isoformat(),
        problems=problems,
        events=events,
        rules=rules,
    )
