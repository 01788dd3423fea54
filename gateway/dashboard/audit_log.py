"""The audit log (admins only): who saw which file's member data, who changed what; filtered
by action, operator, partner and dates, all in the address."""

from __future__ import annotations

from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from gateway.dashboard.deps import AdminViewer, GatewayDep, render
from gateway.dashboard.formatting import clamp, parse_day, unreadable_days
from gateway.db.repositories import AuditFilter
from gateway.services import audit

FILTERS = ("action", "operator", "partner", "since", "until")
router = APIRouter()


@router.get("/dashboard/audit", response_class=HTMLResponse)
def audit_log(request: Request, viewer: AdminViewer, gw: GatewayDep, page: int = 1) -> Response:
    page = clamp(page, 1, 100_000)  # page=0 is the first; no offset overflow
    q = {k: v for k in FILTERS if (v := request.query_params.get(k, "").strip()[:64])}
    problems = unreadable_days(q)
    f = AuditFilter(
        action=q.get("action"),
        operator=q.get("operator"),
        since=parse_day(q.get("since")),
        until=parse_day(q.get("until"), end=True),
    )
    found = audit.entries(gw, f, partner=q.get("partner"), page=page)
    return render(
        request,
        "audit.html",
        viewer,
        entries=found.rows,
        actions=found.actions,
        partners=found.partners,
        q=q,
        problems=problems,
        page=page,
        newer_url=f"/dashboard/audit?{urlencode({**q, 'page': page - 1})}" if page > 1 else None,
        older_url=f"/dashboard/audit?{urlencode({**q, 'page': page + 1})}" if found.more else None,
    )
