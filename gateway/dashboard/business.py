"""Business rejects: the ledger's rule findings, newest first, filtered by partner, rule and
severity; member data masked unless an admin reveals it (audited, one entry per file)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.context import Gateway
from gateway.dashboard.deps import AdminForm, CurrentViewer, GatewayDep, Viewer, render
from gateway.dashboard.formatting import masked
from gateway.db import reports
from gateway.db.base import utcnow
from gateway.enrollment import queries
from gateway.enrollment.rules import RULES, Severity
from gateway.services import audit

PAGE = 50
SEVERITIES = (Severity.REJECT.value, Severity.WARN.value)
FILTERS = ("partner", "rule", "severity", "before")
router = APIRouter()


@router.get("/dashboard/business", response_class=HTMLResponse)
def business(request: Request, viewer: CurrentViewer, gw: GatewayDep) -> Response:
    return _page(request, viewer, gw, request.query_params, reveal=False)


@router.post("/dashboard/business/reveal", response_class=HTMLResponse)
async def business_reveal(request: Request, viewer: AdminForm, gw: GatewayDep) -> Response:
    form = await request.form()  # already read (and cached) by the CSRF check
    response = await run_in_threadpool(_page, request, viewer, gw, form, True)
    return response


def _page(
    request: Request, viewer: Viewer, gw: Gateway, params: Mapping[str, Any], reveal: bool
) -> Response:
    q = {k: str(params[k]).strip() for k in FILTERS if k in params and str(params[k]).strip()}
    if q.get("severity") not in SEVERITIES:
        q.pop("severity", None)
    before = q.get("before", "")
    if not (before.isascii() and before.isdigit() and len(before) <= 12):
        q.pop("before", None)
    with gw.reads() as s:
        partner_id = None
        if "partner" in q:
            # An unknown partner matches nothing (not everything).
            partner_id = reports.partner_id(s, q["partner"]) or -1
        found = queries.business_findings(
            s,
            partner_id=partner_id,
            rule=q.get("rule"),
            severity=q.get("severity"),
            before_id=int(q["before"]) if "before" in q else None,
            limit=PAGE + 1,
        )
        since = utcnow() - dt.timedelta(days=7)
        counts = queries.rule_counts(s, since=since)
        partners = reports.partner_names(s)
    shown = found[:PAGE]
    if reveal:
        audit.record_many(
            gw,
            viewer.username,
            "reveal_member_data",
            sorted({b.receipt_id for b in shown}),
            "member data shown on the business rejects list",
        )
    rows = [
        {
            "b": b,
            "f": b.finding,
            "member_key": masked(b.member_key, reveal),
            "message": masked(b.finding.message, reveal),
            # e.g. which other sender enrolled the same person: member keys, so masked too
            "operator_note": masked(b.finding.operator_note, reveal)
            if b.finding.operator_note
            else "",
        }
        for b in shown
    ]
    filters = {k: v for k, v in q.items() if k != "before"}
    summary = sorted(
        (
            (rule, severity, n, RULES[rule].snip if rule in RULES else None)
            for (rule, severity), n in counts.items()
        ),
        key=lambda c: (-c[2], c[0], c[1]),
    )
    return render(
        request,
        "business.html",
        viewer,
        rows=rows,
        q=q,
        filters=filters,
        partners=partners,
        rules=sorted(RULES.values(), key=lambda r: (r.snip, r.name)),
        severities=SEVERITIES,
        summary=summary,
        since=since,
        reveal=reveal,
        older_url=(
            "/dashboard/business?" + urlencode({**filters, "before": shown[-1].finding.id})
            if len(found) > PAGE
            else None
        ),
        newest_url="/dashboard/business?" + urlencode(filters) if "before" in q else None,
        filter_url=lambda **more: "/dashboard/business?" + urlencode(more),
    )
