"""Business rejects: the ledger's rule findings, newest first, filtered by partner, rule,
severity, dates and (admins, audited) member ID, paged; member data masked unless an admin
reveals it (audited, one entry per file; redirect-after-POST)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from gateway.context import Gateway
from gateway.dashboard.deps import (
    AdminForm,
    CurrentViewer,
    GatewayDep,
    Viewer,
    render,
    reveal_token,
    revealed,
)
from gateway.dashboard.formatting import masked, member_id, parse_day, unreadable_days
from gateway.db import reports
from gateway.db.base import utcnow
from gateway.enrollment import queries
from gateway.enrollment.rules import RULES, Severity
from gateway.services import audit

PAGE = 50
SEVERITIES = (Severity.REJECT.value, Severity.WARN.value)
FILTERS = ("partner", "rule", "severity", "since", "until", "member", "before")
router = APIRouter()


@dataclass
class Listing:
    """What the address asks for, read once for the page and for its reveal."""

    q: dict[str, str]  # the filters kept (shown in the form and carried by links)
    f: queries.BusinessFilter
    before: int | None
    problems: list[str] = field(default_factory=list)


@router.get("/dashboard/business", response_class=HTMLResponse)
def business(
    request: Request,
    viewer: CurrentViewer,
    gw: GatewayDep,
    shown: Annotated[str | None, Query(alias="reveal")] = None,
) -> Response:
    listing = _listing(gw, viewer, request.query_params)
    reveal = revealed(viewer, _scope(listing.q), shown)
    return _page(request, viewer, gw, listing, reveal=reveal)


@router.post("/dashboard/business/reveal")
async def business_reveal(request: Request, viewer: AdminForm, gw: GatewayDep) -> Response:
    """Audited (one entry per file shown), then redirected to the same list pinned to the
    findings revealed (`before`), with member data shown: a reload neither posts again nor
    writes a second entry, and a finding that arrives later is not revealed by the link."""
    form = await request.form()  # already read (and cached) by the CSRF check
    return await run_in_threadpool(_reveal, viewer, gw, form)


def _reveal(viewer: Viewer, gw: Gateway, form: Mapping[str, Any]) -> Response:
    listing = _listing(gw, viewer, form)
    with gw.reads() as s:
        found = queries.business_findings(s, listing.f, before_id=listing.before, limit=PAGE)
    q = dict(listing.q)
    if found:
        audit.record_many(
            gw,
            viewer.username,
            "reveal_member_data",
            sorted({b.receipt_id for b in found}),
            "member data shown on the business rejects list",
        )
        q["before"] = str(found[0].finding.id + 1)
        q["reveal"] = reveal_token(viewer, _scope(q))
    return RedirectResponse(f"/dashboard/business?{urlencode(q)}#list-h", 303)


def _scope(q: Mapping[str, str]) -> str:
    """What a reveal token opens: this list, these filters, these findings."""
    kept = sorted((k, v) for k, v in q.items() if k in FILTERS)
    return "business?" + urlencode(kept)


def _listing(gw: Gateway, viewer: Viewer, params: Mapping[str, Any]) -> Listing:
    q = {k: str(params[k]).strip()[:120] for k in FILTERS if str(params.get(k) or "").strip()}
    problems = []
    if q.get("severity") not in SEVERITIES:
        q.pop("severity", None)
    before = q.get("before", "")
    if not (before.isascii() and before.isdigit() and len(before) <= 12):
        q.pop("before", None)
    if "member" in q and not viewer.is_admin:
        q.pop("member")  # a member id is member data: admins only
        problems.append("Searching by member ID needs the admin role.")
    problems += unreadable_days(q)
    partner_id = None
    if "partner" in q:
        with gw.reads() as s:
            # An unknown partner matches nothing (not everything).
            partner_id = reports.partner_id(s, q["partner"]) or -1
    f = queries.BusinessFilter(
        partner_id=partner_id,
        rule=q.get("rule"),
        severity=q.get("severity"),
        since=parse_day(q.get("since")),
        until=parse_day(q.get("until"), end=True),
        member=q.get("member"),
    )
    return Listing(q, f, int(q["before"]) if "before" in q else None, problems)


def _page(
    request: Request, viewer: Viewer, gw: Gateway, listing: Listing, *, reveal: bool
) -> Response:
    q = listing.q
    with gw.reads() as s:
        found = queries.business_findings(s, listing.f, before_id=listing.before, limit=PAGE + 1)
        total = queries.count_business_findings(s, listing.f)
        since = utcnow() - dt.timedelta(days=7)
        counts = queries.rule_counts(s, since=since)
        partners = reports.partner_names(s)
    shown = found[:PAGE]
    if listing.f.member:
        audit.record_search(
            gw, viewer.username, [b.receipt_id for b in shown], "business rejects by member ID"
        )
    rows = [
        {
            "b": b,
            "f": b.finding,
            "member_key": member_id(b.member_key, reveal, gw.settings.dashboard_member_id),
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
        total=total,
        problems=listing.problems,
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
